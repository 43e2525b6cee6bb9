"""Test-side stand-ins for cloud services: emulators, an HTTP target, and their fixtures.

Each module documents its own fixtures; a test module imports the ones it
uses (or tests/conftest.py lists the module in `pytest_plugins`).
"""
