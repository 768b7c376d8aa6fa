"""Accuracy on labeled images: top-1 / top-5 of artifacts (and the eager model) side by side, with verdicts.

    report = evaluate(["export/resnet50-fp32.onnx", "export/resnet50-int8.onnx"], "imagenet/val")
    report.rows[1].top1, report.rows[1].retained, report.passed

Labeled data (`labeled_images`):
- class subfolders: DATA/<class>/<image>, the folder named by an ImageNet synset id (n01440764), a class index
  (0, 1, ...) or a class name (the artifact's labels, or ImageNet's names for 1000 classes);
- a flat folder plus a labels file: `file,label` CSV rows (a header row is ignored; ImageNet's
  LOC_val_solution.csv works as it is: a file name without its extension matches, and a label that starts with
  a synset id followed by box coordinates counts as that synset), or `file label` lines (Caffe's val.txt).

Each model's reference is its eager PyTorch model when given, else its fp32 artifact. Every other row of that
model gets its top-1/top-5 delta against the reference, the share of the reference top-1 it retains, a
verdict (retained >= min_retained; MLPerf Inference's closed-division rule is 0.99), and the images whose
top-1 changed.

Memory stays flat in the number of images: images are decoded in parallel threads a bounded number of batches
ahead, and each batch is dropped once every model has seen it; only counts and the changed images are kept.
This module needs no torch unless an eager model is evaluated (`eager_candidate`).
"""

from __future__ import annotations

import csv
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data import IMAGE_SUFFIXES, Preprocess, imagenet_labels, imagenet_synsets, load_image, preprocess, read_lines
from .errors import CnnxError, UsageError
from .manifest import Manifest, PlanManifest, class_names
from .parity import sqnr_db

DEFAULT_BATCH = 32
DEFAULT_MIN_RETAINED = 0.99  # MLPerf Inference, closed division: the quantized model keeps 99% of fp32 top-1
PREFETCH_BATCHES = 2  # batches decoded ahead of inference: bounds memory, keeps the decoder threads busy
EXAMPLES = 5  # offending entries named in an error message
SYNSET = re.compile(r"n\d{8}")
EAGER = "eager PyTorch"
LABELS_HINT = ("put each class's images in a subfolder named by its ImageNet synset id (n01440764), class index "
               "or class name, or pass a flat folder with --labels FILE ('file,label' CSV or 'file label' lines)")
Progress = Callable[[int, int, dict], None]  # (images done, images in all, running top-1 per row name)


@dataclass
class Candidate:
    """One thing to evaluate: an artifact on a backend, or the eager model."""

    name: str  # the artifact's path, or EAGER
    model: str
    precision: str
    backend: str
    run: Callable[[np.ndarray], np.ndarray]  # preprocessed NCHW float32 -> logits
    preprocess: Preprocess
    num_classes: int
    class_names: list[str] | None  # None: unknown (only indices can label its classes)
    max_batch: int | None = None  # a TensorRT plan's profile maximum


def artifact_candidate(path: str | Path, backend: str | None = None, threads: int | None = None) -> Candidate:
    """An exported artifact (checked against its manifest) on `backend` (ONNX files; plans run on TensorRT)."""
    from .runtime import load

    path = Path(path)
    predictor = load(path, _onnx_backend(path, backend), threads=threads)
    return _artifact(path, predictor.manifest, predictor.backend, predictor)


def manifest_candidate(path: str | Path, backend: str | None = None) -> Candidate:
    """What artifact_candidate knows of an artifact, from its manifest (checked against the artifact), without
    opening `backend`: enough for check_evaluation and summarize, for a driver whose workers run the artifact
    (cnnx.bulk on Ray), where the backend may be unusable (a TensorRT plan from a CPU-only head node). It does
    not run."""
    from .runtime import checked_artifact

    path = Path(path)
    chosen, manifest = checked_artifact(path, _onnx_backend(path, backend))  # cnnx.load's checks and errors
    return _artifact(path, manifest, chosen.name, _not_loaded)


def _onnx_backend(path: Path, backend: str | None) -> str | None:
    return backend if path.suffix.lower() == ".onnx" else None  # a plan runs on TensorRT, whatever is asked


def _artifact(path: Path, manifest: Manifest, backend: str, run: Callable[[np.ndarray], np.ndarray]) -> Candidate:
    from .runtime import classifier_io

    output, preprocess = classifier_io(path, manifest)
    return Candidate(name=str(path), model=manifest.model, precision=manifest.precision or "?", backend=backend,
                     run=run, preprocess=preprocess, num_classes=int(output.shape[-1]),
                     class_names=class_names(manifest),
                     max_batch=manifest.max_batch if isinstance(manifest, PlanManifest) else None)


def _not_loaded(batch: np.ndarray) -> np.ndarray:
    raise RuntimeError("a candidate read from its manifest does not run: load it with artifact_candidate")


def eager_candidate(model: str, *, input_size: int | None = None, resize: int | None = None,
                    preprocess: Preprocess | None = None, **weights) -> Candidate:
    """The eager PyTorch fp32 model (`weights` as resolve_weights takes them: a checkpoint, published weights,
    a seed; and num_classes), at `input_size`/`resize` (after the transform published weights bring), or with
    `preprocess` (that of its artifacts) when neither is given."""
    from .backends.torch import TorchRunner
    from .models.stages import classes_at_input_size
    from .weights import resolve_weights

    num_classes = weights.pop("num_classes", None)
    resolved = resolve_weights(model, **weights)
    spec = resolved.spec
    spec = (spec.at_input_size(input_size, resize) if input_size or resize or preprocess is None
            else spec.with_preprocess(preprocess))
    network = resolved.build(num_classes)
    classes = classes_at_input_size(network, spec)
    return Candidate(name=EAGER, model=spec.name, precision="fp32", backend="torch", run=TorchRunner(network),
                     preprocess=spec.preprocess, num_classes=classes,
                     class_names=imagenet_labels() if classes == 1000 else None)


# ---------------------------------------------------------------------------------------------------------------
# Labeled images


@dataclass
class LabeledData:
    """The images to evaluate and their raw labels (folder names or labels-file values), sorted by path."""

    root: Path
    layout: str  # "class folders" or "labels file"
    images: list[Path]
    labels: list[str]
    unmatched_entries: int = 0  # labels-file rows whose image is not in the folder (a subset of a data set)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _examples(items) -> str:
    items = list(items)
    return ", ".join(map(str, items[:EXAMPLES])) + (f", ... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES
                                                     else "")


def read_ground_truth(path: str | Path) -> list[tuple[str, str, int]]:
    """(file, label, line) entries of a labels file: `file,label` CSV, or `file label` lines (see module doc)."""
    path = Path(path)
    text = read_lines(path, "pass a UTF-8 text file of 'file,label' rows or 'file label' lines")
    lines = [(n, line) for n, line in enumerate(text, 1) if line.strip() and not line.startswith("#")]
    # CSV when named so, or when the first line's first word holds a comma ("a.jpg,3"; not "a.jpg tabby, tabby cat")
    is_csv = path.suffix.lower() == ".csv" or bool(lines and "," in lines[0][1].split()[0])
    entries, bad = [], []
    for n, line in lines:
        fields = next(csv.reader([line])) if is_csv else line.split(None, 1)
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            bad.append(f"line {n}: {line.strip()!r}")
            continue
        label = fields[1].strip()
        first = label.split()[0]
        if SYNSET.fullmatch(first) and label != first:  # LOC_val_solution.csv: "n01751748 111 22 333 444 ..."
            label = first
        entries.append((fields[0].strip(), label, n))
    if bad:
        raise UsageError(f"labels file '{path}' has {len(bad)} lines without a file and a label: {_examples(bad)}",
                         "write one 'file,label' row (CSV) or 'file label' line per image")
    return entries


def labeled_images(data: str | Path, labels_file: str | Path | None = None) -> LabeledData:
    """The labeled images under `data` (class subfolders, or a flat folder with `labels_file`); see module doc."""
    root = Path(data)
    if not root.is_dir():
        raise UsageError(f"data folder '{root}' does not exist or is not a folder", LABELS_HINT)
    if labels_file is not None:
        return _flat_with_labels(root, Path(labels_file))
    loose = _image_files(root)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for folder in classes:
        files = _image_files(folder)
        images += files
        labels += [folder.name] * len(files)
    if loose and images:
        examples = _examples(p.name for p in loose)
        raise UsageError(f"'{root}' mixes class subfolders with {len(loose)} loose images ({examples})",
                         "move each loose image into its class folder, or remove it")
    if loose:
        raise UsageError(f"'{root}' holds images but no class subfolders, and no labels file was given", LABELS_HINT)
    if not images:
        raise UsageError(f"no labeled images in '{root}' (no class subfolder holds image files)", LABELS_HINT)
    return LabeledData(root=root, layout="class folders", images=images, labels=labels)


def _flat_with_labels(root: Path, labels_file: Path) -> LabeledData:
    files = _image_files(root)
    if not files:
        raise UsageError(f"no images in '{root}'", f"put the images that '{labels_file}' labels into it")
    by_name = {p.name: p for p in files}
    by_stem: dict[str, Path] = {}
    for p in files:
        by_stem.setdefault(p.stem, p)
    label_of: dict[Path, str] = {}
    conflicts, unmatched = [], 0
    for name, label, line in read_ground_truth(labels_file):
        path = by_name.get(name) or by_name.get(Path(name).name) or by_stem.get(name)
        if path is None:
            unmatched += 1  # a header row, or an image of the full set that this folder does not hold
            continue
        if label_of.setdefault(path, label) != label:
            conflicts.append(f"{name} (line {line}: {label!r}, earlier {label_of[path]!r})")
    if conflicts:
        raise UsageError(f"labels file '{labels_file}' gives some images two different labels: {_examples(conflicts)}",
                         "keep one label per image")
    missing = [p.name for p in files if p not in label_of]
    if missing and len(missing) == len(files):
        raise UsageError(f"labels file '{labels_file}' labels none of the {len(files)} images in '{root}' "
                         f"(e.g. {_examples(p.name for p in files[:3])})",
                         "each row starts with an image's file name (with or without its extension)")
    if missing:
        raise UsageError(f"{len(missing)} images in '{root}' have no label in '{labels_file}': {_examples(missing)}",
                         "add a row for each image, or move the unlabeled images out of the folder")
    return LabeledData(root=root, layout="labels file", images=files, labels=[label_of[p] for p in files],
                       unmatched_entries=unmatched)


def resolve_labels(data: LabeledData, num_classes: int, class_names: list[str] | None) -> np.ndarray:
    """The class index of every image. A raw label is a class name (of `class_names`), an ImageNet synset id
    (1000 classes), or a class index; an unknown label, or one beyond the model's classes, is a UsageError
    that names examples."""
    names = {name: i for i, name in enumerate(class_names or [])}
    synsets = {s: i for i, s in enumerate(imagenet_synsets())} if num_classes == 1000 else {}
    where: dict[str, Path] = {}
    for path, raw in zip(data.images, data.labels):
        where.setdefault(raw, path)
    index, unknown, unfit = {}, [], []
    for raw, path in where.items():
        example = f"{raw!r} ({path.relative_to(data.root)})"
        if raw in names:
            index[raw] = names[raw]
        elif raw in synsets:
            index[raw] = synsets[raw]
        elif SYNSET.fullmatch(raw):
            unfit.append(f"{example}: an ImageNet synset id, but the model has {num_classes} classes, not 1000")
        elif raw.isdigit():
            if int(raw) < num_classes:
                index[raw] = int(raw)
            else:
                unfit.append(f"{example}: class index {int(raw)}, but the model has {num_classes} classes "
                             f"(0..{num_classes - 1})")
        else:
            unknown.append(example)
    if unfit:
        raise UsageError(f"{len(unfit)} labels do not fit the model's {num_classes} classes: {_examples(unfit)}",
                         "evaluate the artifact trained for these classes, or label the images with its classes")
    if unknown:
        known = (f"the model's class names (e.g. {_examples(repr(n) for n in list(names)[:3])}), " if names
                 else "")
        raise UsageError(f"{len(unknown)} labels are not classes of the model: {_examples(unknown)}",
                         f"label images by {known}ImageNet synset ids (1000-class models) or class indices "
                         f"0..{num_classes - 1}; export with --labels FILE to give a fine-tuned model its names")
    return np.array([index[raw] for raw in data.labels], dtype=np.int64)


def spread_subset(count: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over `count` sorted images, so that every class folder is represented."""
    if limit is None or limit >= count:
        return list(range(count))
    return [i * count // limit for i in range(limit)]


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class EvalRow:
    name: str
    model: str
    precision: str
    backend: str
    images: int = 0
    top1: float = 0.0
    top5: float = 0.0
    reference: str | None = None  # the row this one is judged against (None: it is a reference, or has none)
    delta_top1: float | None = None
    delta_top5: float | None = None
    retained: float | None = None  # top1 / reference top1
    passed: bool | None = None  # None: a reference, or no fp32 reference to judge against
    changed: int = 0  # images whose top-1 differs from the reference's
    became_wrong: int = 0  # ... that the reference classified correctly
    became_right: int = 0  # ... that the reference got wrong and this row gets right
    changed_images: list[dict] = field(default_factory=list)
    sqnr_db: float | None = None  # of the logits against the reference's, over all images
    seconds: float = 0.0
    _correct1: int = 0
    _correct5: int = 0
    _signal: float = 0.0
    _noise: float = 0.0

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class EvalReport:
    data: str
    layout: str
    images: int  # readable images every row was evaluated on
    listed: int  # images found (before --limit)
    unreadable: list[dict]  # {"image", "error"}: reported, counted, left out
    unmatched_entries: int
    num_classes: int
    batch: int
    min_retained: float
    rows: list[EvalRow]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(row.passed is not False for row in self.rows)

    @property
    def failed(self) -> list[EvalRow]:
        return [row for row in self.rows if row.passed is False]

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "rows"}
        return {**data, "passed": self.passed, "rows": [row.to_dict() for row in self.rows]}


def _references(candidates: list[Candidate]) -> dict[str, int]:
    """Per model, the index of its reference: the eager model if given, else its first fp32 artifact."""
    refs: dict[str, int] = {}
    for i, c in enumerate(candidates):
        if c.name == EAGER:
            refs[c.model] = i
    for i, c in enumerate(candidates):
        if c.precision == "fp32":
            refs.setdefault(c.model, i)
    return refs


def _classes(candidates: list[Candidate]) -> tuple[int, list[str] | None]:
    counts = {c.num_classes for c in candidates}
    if len(counts) > 1:
        raise UsageError("the models have different numbers of classes: " + ", ".join(
            f"{c.name}: {c.num_classes}" for c in candidates), "evaluate artifacts of the same classifier together")
    recorded = [c for c in candidates if c.class_names is not None and c.class_names != imagenet_labels()]
    if any(c.class_names != recorded[0].class_names for c in recorded):
        raise UsageError("the artifacts record different class names: " + ", ".join(c.name for c in recorded),
                         "evaluate artifacts of the same classifier together")
    names = recorded[0].class_names if recorded else next((c.class_names for c in candidates if c.class_names), None)
    return counts.pop(), names


def _decode(path: Path, transforms: list[Preprocess]) -> list[np.ndarray] | str:
    """The image through each distinct preprocessing, or why it could not be read."""
    try:
        image = load_image(path)
        return [preprocess(image, pre) for pre in transforms]
    except CnnxError as exc:
        return exc.message


def _top5(logits: np.ndarray) -> np.ndarray:
    k = min(5, logits.shape[1])
    ranked = np.where(np.isfinite(logits), logits, -np.inf)  # NaN/Inf never wins
    return np.argsort(-ranked, axis=1, kind="stable")[:, :k]  # ties: the lower class index first


def _run(candidate: Candidate, batch: np.ndarray) -> np.ndarray:
    step = candidate.max_batch or len(batch)
    return np.concatenate([np.asarray(candidate.run(batch[i:i + step])) for i in range(0, len(batch), step)])


def evaluate(candidates: list[Candidate], data: LabeledData, *, batch: int = DEFAULT_BATCH,
             limit: int | None = None, workers: int | None = None, min_retained: float = DEFAULT_MIN_RETAINED,
             progress: Progress = lambda done, total, running: None) -> EvalReport:
    """Top-1/top-5 of every candidate on the labeled images, verdicts against each model's reference."""
    start = time.perf_counter()
    check_evaluation(candidates, data, batch=batch, min_retained=min_retained)
    part = score_images(candidates, data, spread_subset(len(data.images), limit), batch=batch, workers=workers,
                        progress=progress)
    return summarize(candidates, data, [part], batch=batch, min_retained=min_retained,
                     seconds=time.perf_counter() - start)


def check_evaluation(candidates: list[Candidate], data: LabeledData, *, batch: int, min_retained: float) -> None:
    """Refuse an evaluation that cannot succeed (no candidates, a bad batch size or share, labels that do not fit
    the models), before any image is decoded."""
    if not candidates:
        raise UsageError("nothing to evaluate", "name artifacts (FILE.onnx), or an eager model with --model NAME")
    if not isinstance(batch, int) or batch < 1:
        raise UsageError(f"the batch size must be a positive integer, not {batch!r}")
    if not 0 < min_retained <= 1:
        raise UsageError(f"the minimum retained share of the fp32 top-1 must be in (0, 1], not {min_retained}")
    num_classes, names = _classes(candidates)
    resolve_labels(data, num_classes, names)  # every label problem fails here, before any inference


@dataclass
class EvalPart:
    """The counts of some of the images (all of them in one process; one shard of them on a Ray worker, see
    cnnx.bulk): one row per candidate, not yet judged, and the images that could not be read."""

    rows: list[EvalRow]
    unreadable: list[dict]
    images: int  # images this part covers, readable or not


def _reference_of(candidates: list[Candidate]) -> list[int | None]:
    """Per candidate, the index of the candidate it is judged against (None: it is a reference, or has none)."""
    refs = _references(candidates)
    return [refs.get(c.model) if refs.get(c.model) != i else None for i, c in enumerate(candidates)]


def score_images(candidates: list[Candidate], data: LabeledData, chosen: list[int], *, batch: int = DEFAULT_BATCH,
                 workers: int | None = None, progress: Progress | None = None) -> EvalPart:
    """Run every candidate on the images `chosen` (indices into data.images) and count its answers."""
    num_classes, names = _classes(candidates)
    targets = resolve_labels(data, num_classes, names)
    transforms = list(dict.fromkeys(c.preprocess for c in candidates))
    which = [transforms.index(c.preprocess) for c in candidates]
    ref_of = _reference_of(candidates)
    rows = [EvalRow(c.name, c.model, c.precision, c.backend) for c in candidates]
    for row, r in zip(rows, ref_of):
        row.reference = candidates[r].name if r is not None else None
    unreadable: list[dict] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = iter(range(0, len(chosen), batch))
        pending: deque = deque()

        def submit_next() -> None:
            begin = next(chunks, None)
            if begin is not None:
                indices = chosen[begin:begin + batch]
                pending.append((indices, [pool.submit(_decode, data.images[i], transforms) for i in indices]))

        for _ in range(PREFETCH_BATCHES):
            submit_next()
        while pending:
            indices, futures = pending.popleft()
            submit_next()
            decoded = [f.result() for f in futures]
            ok = [j for j, d in enumerate(decoded) if not isinstance(d, str)]
            unreadable += [{"image": str(data.images[indices[j]]), "error": d}
                           for j, d in enumerate(decoded) if isinstance(d, str)]
            done += len(indices)
            if ok:
                _score_batch(candidates, rows, ref_of, which, data, [indices[j] for j in ok],
                             [decoded[j] for j in ok], targets, names)
            if progress:
                progress(done, len(chosen), {row.name: row._correct1 / row.images for row in rows if row.images})
    return EvalPart(rows=rows, unreadable=unreadable, images=len(chosen))


def _add_counts(total: EvalRow, part: EvalRow) -> None:
    total.images += part.images
    total._correct1 += part._correct1
    total._correct5 += part._correct5
    total._signal += part._signal
    total._noise += part._noise
    total.changed += part.changed
    total.became_wrong += part.became_wrong
    total.became_right += part.became_right
    total.changed_images += part.changed_images
    total.seconds += part.seconds


def summarize(candidates: list[Candidate], data: LabeledData, parts: list[EvalPart], *, batch: int,
              min_retained: float, seconds: float) -> EvalReport:
    """The report of the parts' counts added up (in the order given): accuracy per row, and each row judged
    against its reference."""
    num_classes, _ = _classes(candidates)
    rows = [EvalRow(c.name, c.model, c.precision, c.backend) for c in candidates]
    for part in parts:
        for row, counted in zip(rows, part.rows):
            row.reference = counted.reference
            _add_counts(row, counted)
    unreadable = [entry for part in parts for entry in part.unreadable]
    evaluated = rows[0].images
    if not evaluated:
        raise UsageError(f"none of the {sum(part.images for part in parts)} images in '{data.root}' could be read "
                         f"(e.g. {_examples(u['image'] for u in unreadable)})", "check the image files")
    for row in rows:
        row.top1, row.top5 = row._correct1 / row.images, row._correct5 / row.images
        row.seconds = round(row.seconds, 2)
    for row, r in zip(rows, _reference_of(candidates)):
        if r is None:
            continue
        ref = rows[r]
        row.delta_top1, row.delta_top5 = row.top1 - ref.top1, row.top5 - ref.top5
        row.sqnr_db = sqnr_db(row._signal, row._noise) if np.isfinite(row._noise) else None  # NaN/Inf: no number
        row.retained = row.top1 / ref.top1 if ref.top1 > 0 else None  # None: a reference right on no image
        row.passed = None if row.retained is None else row.retained >= min_retained
    return EvalReport(data=str(data.root), layout=data.layout, images=evaluated, listed=len(data.images),
                      unreadable=unreadable, unmatched_entries=data.unmatched_entries, num_classes=num_classes,
                      batch=batch, min_retained=min_retained, rows=rows, seconds=round(seconds, 2))


def _score_batch(candidates, rows, ref_of, which, data: LabeledData, indices: list[int], decoded: list,
                 targets: np.ndarray, names: list[str] | None) -> None:
    truth = targets[indices]
    tops, outputs = [], []
    for c, row, t in zip(candidates, rows, which):
        started = time.perf_counter()
        logits = _run(c, np.stack([d[t] for d in decoded])).astype(np.float64)
        row.seconds += time.perf_counter() - started
        top = _top5(logits)
        outputs.append(logits)
        row.images += len(indices)
        row._correct1 += int((top[:, 0] == truth).sum())
        row._correct5 += int((top == truth[:, None]).any(axis=1).sum())
        tops.append(top[:, 0])
    label = (lambda k: names[k]) if names else str
    for i, (row, r) in enumerate(zip(rows, ref_of)):
        if r is None:
            continue
        row._signal += float((outputs[r] ** 2).sum())
        row._noise += float(((outputs[r] - outputs[i]) ** 2).sum())
        for j in np.flatnonzero(tops[i] != tops[r]):
            right_before, right_now = tops[r][j] == truth[j], tops[i][j] == truth[j]
            row.changed += 1
            row.became_wrong += int(right_before and not right_now)
            row.became_right += int(right_now and not right_before)
            row.changed_images.append({"image": str(data.images[indices[j]].relative_to(data.root)),
                                       "label": label(int(truth[j])), "reference": label(int(tops[r][j])),
                                       "top1": label(int(tops[i][j]))})
