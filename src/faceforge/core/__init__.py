"""What both sides of the process boundary share: plain types and errors, settings, the embedding
space, the recognition model (``core.model``), file helpers. Imports nothing of ours outside ``core``."""
