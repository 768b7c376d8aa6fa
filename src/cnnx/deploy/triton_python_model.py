"""cnnx's model for Triton's python backend. `cnnx triton --python` copies this file, unchanged, to
REPO/<name>/1/model.py, where Triton's python backend runs it in an environment with cnnx, pillow and onnxruntime
(or openvino), no torch; Triton 2.51's python backend also needs numpy < 2.

Each request sends one of two inputs, a batch of either:
  <input> (e.g. images)  FP32 [3, H, W]  already preprocessed, exactly as for the onnxruntime_onnx model
  image_bytes            BYTES [1]       an encoded image file (JPEG, PNG, ...), decoded and preprocessed here
                                         with the artifact's own preprocessing (from its manifest)
and gets <output> (e.g. logits, FP32 [classes]), `labels` (BYTES [k]) and `probabilities` (FP32 [k]): the top
k classes, best first, with their softmax probabilities, exactly as `cnnx predict` reports them.

The dynamic batcher hands execute() several requests at once: their images run as one batch. A request
whose data cannot be used (an unreadable image, both inputs or neither) gets its own INVALID_ARG error;
the other requests of the batch are answered as usual.
"""

import json
from pathlib import Path

import numpy as np

import cnnx

try:
    import triton_python_backend_utils as pb_utils  # exists only inside the server
except ImportError:  # cnnx.deploy.triton imports this module for the names below
    pb_utils = None

BYTES_INPUT = "image_bytes"
LABELS_OUTPUT = "labels"
PROBABILITIES_OUTPUT = "probabilities"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config["parameters"].items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        # cnnx.load checks the artifact against its manifest (1/model.json) before running anything
        self.predictor: cnnx.Predictor | None = cnnx.load(version_dir / params["artifact"], params["runtime"])
        self.topk = int(params["topk"])

    def _batch(self, request) -> np.ndarray:
        """The request's images as one preprocessed float32 NCHW batch; raises on unusable data."""
        assert self.predictor is not None  # Triton calls execute() only between initialize() and finalize()
        tensor = pb_utils.get_input_tensor_by_name(request, self.predictor.input_name)
        encoded = pb_utils.get_input_tensor_by_name(request, BYTES_INPUT)
        if (tensor is None) == (encoded is None):
            raise ValueError(f"send either '{self.predictor.input_name}' (preprocessed float32 images) or "
                             f"'{BYTES_INPUT}' (encoded image files), not both and not neither")
        if tensor is not None:
            return tensor.as_numpy()
        images = []
        for i, data in enumerate(encoded.as_numpy().reshape(-1)):
            try:
                images.append(self.predictor.prepare(data))
            except cnnx.UsageError as exc:
                raise ValueError(f"{BYTES_INPUT}[{i}]: {exc.message}") from None
        return np.stack(images)

    def execute(self, requests):
        responses = [None] * len(requests)
        batches = {}  # request index -> its images
        for i, request in enumerate(requests):
            try:
                batches[i] = self._batch(request)
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with one request's data fails it alone
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=error)
        if batches:
            assert self.predictor is not None  # Triton calls execute() only between initialize() and finalize()
            logits = self.predictor(np.concatenate(list(batches.values())))
            top = self.predictor.top_predictions(logits, self.topk)
            start = 0
            for i, images in batches.items():
                rows = slice(start, start + len(images))
                start += len(images)
                labels = np.array([[p.label.encode() for p in preds] for preds in top[rows]], dtype=np.object_)
                probabilities = np.array([[p.probability for p in preds] for preds in top[rows]], np.float32)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(self.predictor.output_name, logits[rows]),
                    pb_utils.Tensor(LABELS_OUTPUT, labels),
                    pb_utils.Tensor(PROBABILITIES_OUTPUT, probabilities)])
        return responses

    def finalize(self):
        self.predictor = None
