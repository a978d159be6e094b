"""Plain types and typed errors shared by every layer."""
