"""Local development stack: a PostgreSQL it starts itself, every function on 127.0.0.1."""
