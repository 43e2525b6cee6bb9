"""The state package every function imports."""
