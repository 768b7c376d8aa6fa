"""Bulk offline work beyond one machine: `cnnx predict --ray` and `cnnx eval --ray` on a Ray cluster, with the
same artifact and the same answers as in one process.

    from cnnx.bulk import RayOptions, evaluate, predict
    summary = predict("export/resnet50-int8.onnx", ["s3://bucket/photos/"], "photos.parquet",
                      options=RayOptions(address="auto", actors=8))       # summary.images, .failed, .failures
    report = evaluate(["export/resnet50-fp32.onnx", "export/resnet50-int8.onnx"], labeled_images("val"),
                      options=RayOptions())                              # a cnnx.eval.EvalReport

Ray Data runs the job: a dataset of image files in blocks, `map_batches` with a pool of actors that each load
the artifact once with `cnnx.load` (checking its manifest on their node) and run the preprocessing recorded in
it. The driver checks the artifact first, before anything is scheduled, and keeps each input exactly once,
also when an actor dies and Ray retries its batches (run_blocks in bulk/cluster.py). Ray is an extra
(`pip install 'cnnx[ray]'`) and is imported only when a job runs; without it a job is BackendUnavailable
(exit 3). Without Ray, `cnnx predict` uses the same file listing (files.py), classification (classify.py) and
output files (output.py).
"""

from __future__ import annotations

from .cluster import RayOptions
from .evaluation import evaluate
from .prediction import PredictSummary, RayPredictions, predict, predictions

__all__ = ["RayOptions", "evaluate", "predict", "predictions", "PredictSummary", "RayPredictions"]
