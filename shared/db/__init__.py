"""Database layer: tables, engine, migrations, unit of work, statements."""
