"""On-device model files, all derived from the same PyTorch embedding network and recognition head."""
