"""Photo in, faces out: decode, detect, crop, embed, through ONNX Runtime. No database, no HTTP,
no PyTorch."""
