"""Storage: engine (SQLite default, PostgreSQL), tables, migrations and keyword-only data access."""
