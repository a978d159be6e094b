"""What an API process runs: the vision runtime (ONNX Runtime), the services, the HTTP API, the dashboard,
and the wiring that builds the services. Never imports PyTorch, the converters or ``faceforge.building``
(import-linter contracts in pyproject.toml)."""
