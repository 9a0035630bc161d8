"""The classifier: loading (hub name or directory), forward pass, ONNX int8, the fold ensemble, demo model."""
