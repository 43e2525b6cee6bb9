"""Adapters: one port per cloud capability, a real and a local implementation each."""
