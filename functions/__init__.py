"""One module per deployed Cloud Function; `main.py` re-exports their entry points."""
