"""The domain: statuses, transitions, commands and messages. Pure Python, no I/O."""
