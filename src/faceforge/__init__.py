"""faceforge: self-hosted face recognition with versioned, exportable models."""

__version__ = "0.1.0"
