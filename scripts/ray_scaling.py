"""Images/s of `cnnx predict --ray` with 1, 2 and N actors against `cnnx predict` in one process, on the same
files, side by side; and what one image costs per stage, from which the rate of an added node follows on paper.

    python scripts/ray_scaling.py [--model resnet18] [--images 400] [--actors 1,2,4] [--batch 16] [--rounds 2]
                                  [--write]

The files: the shipped photos and scikit-image's, re-encoded as 640x480 JPEGs (quality 90) and repeated to
--images files, in one folder (the page cache holds them after the first run: reading is from memory).
One process: what `cnnx predict FOLDER --output FILE.csv` runs (cnnx.load with ONNX Runtime's default threads,
the folder listed, classify_sources per batch of --batch, the CSV writer), in this process. Ray: cnnx.bulk's
`predictions` on one local Ray instance started by this script with as many logical CPUs as the most actors
asked for (so that an over-subscribed run shows where the machine's cores run out), each actor with one
thread, the same CSV writer. Every case is a fresh job (actors started and the artifact loaded each time, as
for a user), after one untimed warm-up job; the cases are interleaved for --rounds rounds and the medians
reported: end to end (what a user waits for), the fixed cost (the same job on one batch of files: connecting,
starting the actors, loading the artifact, one batch) and the marginal rate (the images beyond that batch per
second beyond that cost: what more files cost once the job runs). The load average before and after is
printed with the table: on a machine shared with other work, only the ratios within one run mean much.

Stage costs, in this process on one thread: reading a file, decoding it to RGB, preprocessing (resize, crop,
normalise), and inference per image at --batch. With --write, the tables replace the RAY block of
docs/results/ray.md; without, they are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import cnnx
from cnnx.bulk import RayOptions, predictions
from cnnx.bulk.classify import classify_sources
from cnnx.bulk.files import list_images
from cnnx.bulk.output import prediction_writer
from cnnx.data import load_image, preprocess, sample_images
from cnnx.export.pipeline import ExportOptions, export_model
from docs_blocks import publish, stamp


def make_folder(folder: Path, count: int) -> None:
    import skimage.data

    photos = [*sample_images(), *sorted(Path(skimage.data.__file__).parent.glob("*.png"))]
    images = [Image.open(p).convert("RGB").resize((640, 480)) for p in photos]
    folder.mkdir(parents=True)
    for i in range(count):
        images[i % len(images)].save(folder / f"img{i:05d}.jpg", quality=90)


def timed(run) -> dict:
    """Run `run(progress)` (which writes every answer): its seconds, and the images it answered."""
    start = time.perf_counter()
    seen = {"images": 0}
    run(lambda count, total: seen.update(images=count))
    return {"seconds": time.perf_counter() - start, **seen}


def one_process(artifact: Path, folder: Path, out: Path, batch: int):
    def run(progress) -> None:
        predictor = cnnx.load(artifact)
        sources = list_images([folder])
        with prediction_writer(out, 5) as write:
            for start in range(0, len(sources), batch):
                write(classify_sources(predictor, sources[start:start + batch], 5))
                progress(min(start + batch, len(sources)), len(sources))
    return run


def on_ray(artifact: Path, folder: Path, out: Path, batch: int, actors: int):
    def run(progress) -> None:
        job = predictions(artifact, [folder], options=RayOptions(actors=actors, batch=batch, threads=1))
        with prediction_writer(out, 5) as write:
            for entries in job.run(progress):
                write(entries)
    return run


def stage_costs(artifact: Path, folder: Path, batch: int) -> dict[str, float]:
    """Milliseconds per image of each stage, on one thread."""
    files = sorted(folder.iterdir())[:64]
    predictor = cnnx.load(artifact, threads=1)
    start = time.perf_counter()
    encoded = [f.read_bytes() for f in files]
    read = time.perf_counter() - start
    start = time.perf_counter()
    images = [load_image(data) for data in encoded]
    decode = time.perf_counter() - start
    start = time.perf_counter()
    tensors = np.stack([preprocess(image, predictor.preprocess) for image in images])
    prepare = time.perf_counter() - start
    predictor(tensors[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(tensors), batch):
        predictor(tensors[i:i + batch])
    infer = time.perf_counter() - start
    size = sum(len(data) for data in encoded) / len(encoded)
    per = {name: 1000 * value / len(files) for name, value in
           (("read", read), ("decode", decode), ("preprocess", prepare), ("inference", infer))}
    return {**per, "kilobytes": size / 1000}


def markdown(args, cases: list[tuple[str, int, list[dict], list[dict]]], costs: dict[str, float],
             load: tuple[float, float]) -> str:
    rows = []
    base = None
    for name, workers, runs, one_batch in cases:
        seconds = statistics.median(r["seconds"] for r in runs)
        fixed = statistics.median(r["seconds"] for r in one_batch)
        marginal = statistics.median((args.images - args.batch) / max(r["seconds"] - b["seconds"], 1e-9)
                                     for r, b in zip(runs, one_batch))
        rate = args.images / seconds
        base = base or rate
        rows.append(f"| {name} | {workers} | {fixed:.1f} | {marginal:.1f} | {seconds:.1f} | {rate:.1f} | "
                    f"{rate / base:.2f}x |")
    per_image = costs["decode"] + costs["preprocess"] + costs["inference"]
    cores = os.cpu_count() or 1
    lines = [
        f"{stamp()} Load average {load[0]:.1f} before, {load[1]:.1f} after (other work shared the machine).",
        "",
        f"`python scripts/ray_scaling.py --model {args.model} --images {args.images} --actors {args.actors} "
        f"--batch {args.batch} --rounds {args.rounds}`: {args.model} fp32 on ONNX Runtime, {args.images} JPEGs of "
        f"640x480 ({costs['kilobytes']:.0f} KB on average), top-5 written to a CSV file; medians of "
        f"{args.rounds} interleaved rounds.",
        "",
        "| run | CPUs used (actors x threads) | fixed cost s (one batch) | marginal img/s | end to end s | "
        "img/s end to end | vs one process |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Per image, on one thread: read {costs['read']:.2f} ms (from the page cache), decode "
        f"{costs['decode']:.1f} ms, preprocess {costs['preprocess']:.1f} ms, inference "
        f"{costs['inference']:.1f} ms (batch {args.batch}): {per_image:.1f} ms, so a one-thread actor classifies "
        f"at most {1000 / per_image:.1f} img/s, this machine's {cores} cores at most "
        f"{cores * 1000 / per_image:.1f} img/s, and each added node of C cores about C x "
        f"{1000 / per_image:.1f} img/s more.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--actors", default=f"1,2,{2 * (os.cpu_count() or 1)}")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="replace the RAY block of docs/results/ray.md")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.actors.split(",")})

    import ray

    with tempfile.TemporaryDirectory(prefix="cnnx-ray-scaling-") as tmp:
        tmp = Path(tmp)
        [result] = export_model(ExportOptions(args.model, out_dir=tmp / "export", target="onnx", check=False))
        folder, small = tmp / "photos", tmp / "one-batch"
        make_folder(folder, args.images)
        make_folder(small, args.batch)
        costs = stage_costs(result.path, folder, args.batch)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", num_cpus=max(counts), include_dashboard=False, logging_level="warning",
                 log_to_driver=False)
        try:
            timed(on_ray(result.path, folder, tmp / "warm-up.csv", args.batch, 1))
            cases = [("`cnnx predict` in one process", os.cpu_count(), one_process, {}),
                     *[(f"`--ray`, {n} actor{'s' * (n > 1)}", n, on_ray, {"actors": n}) for n in counts]]
            results: list[list[dict]] = [[] for _ in cases]
            one_batch: list[list[dict]] = [[] for _ in cases]
            load = os.getloadavg()[0]
            for round_ in range(args.rounds):
                for i in [*range(round_ % len(cases), len(cases)), *range(round_ % len(cases))]:
                    name, _, make, extra = cases[i]
                    one_batch[i].append(timed(make(result.path, small, tmp / "answers.csv", args.batch, **extra)))
                    results[i].append(timed(make(result.path, folder, tmp / "answers.csv", args.batch, **extra)))
                    print(f"round {round_ + 1}: {name}: {results[i][-1]['seconds']:.1f} s, one batch "
                          f"{one_batch[i][-1]['seconds']:.1f} s", flush=True)
        finally:
            ray.shutdown()
    table = markdown(args, [(name, workers, runs, small_runs) for (name, workers, _, _), runs, small_runs
                            in zip(cases, results, one_batch)], costs, (load, os.getloadavg()[0]))
    publish("results/ray.md", "RAY", table, args.write)


if __name__ == "__main__":
    main()
