"""PyTorch -> ONNX -> simplified -> precision variants. `pipeline.export_model` runs the whole chain."""

# torch's exporters that export/onnx.py drives ("auto": TorchScript's where it exports the model, else dynamo);
# here, so that the CLI's choices need no torch
EXPORTERS = ("auto", "torchscript", "dynamo")
# --target: "auto" builds a TensorRT engine where TensorRT and a GPU are usable, "tensorrt" requires one, "onnx"
# writes ONNX artifacts only (export/engines.py)
TARGETS = ("auto", "tensorrt", "onnx")
