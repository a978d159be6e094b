"""Model versions: the manifest (the contract with every app), the store (publish, open, prune, the
current pointer; no PyTorch) and the builder (fit, export, verify, stage; the worker's only)."""
