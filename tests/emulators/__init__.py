"""Test-side stand-ins for cloud services: a Cloud Tasks emulator, an HTTP target, a private queue database.

The fixtures live in `tests.emulators.fixtures`; a test module imports the
ones it uses (or the root conftest lists the module in `pytest_plugins`).
"""
