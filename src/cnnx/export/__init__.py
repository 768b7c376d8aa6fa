"""PyTorch -> ONNX -> simplified -> precision variants. `pipeline.export_model` runs the whole chain."""
