"""Model versions on disk: artefacts, checksums and atomic publication."""
