"""Storage: engine (SQLite default, PostgreSQL), tables, migrations and keyword-only data access; photo
files; the version store (publish, open, prune, the current pointer). No PyTorch."""
