"""One module per deployed Cloud Function; `main.py` serves each entry point, importing only the one asked for."""
