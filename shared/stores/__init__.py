"""Store connectors (DESIGN.md section 4b): one module per store, registered in one table."""
