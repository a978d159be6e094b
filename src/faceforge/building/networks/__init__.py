"""The PyTorch ports of the networks (FaceNet, dlib's ResNet, MTCNN's ONet) and the fused embedding
network, for conversion and export only: an API process runs their ONNX graphs."""
