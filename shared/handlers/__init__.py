"""Use cases: one function per input, each one transaction."""
