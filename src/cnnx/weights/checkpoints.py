"""State dicts: reading torchvision / timm checkpoint files, loading them into a zoo model (or saying exactly why
they do not fit), and deterministic seeded initialisation for models without a checkpoint."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError, first_line
from ..models.registry import ModelSpec

# Wrappers that training scripts put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")
_TOLERATED_MISSING_SUFFIX = "num_batches_tracked"  # absent from older torchvision / timm files


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a .pth/.pt/.bin (torch.save) or .safetensors file.

    torch files are opened with weights_only=True: a file that needs to run code to load is refused."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint '{path}' does not exist", "pass the path of a .pth or .safetensors file")
    obj: object  # whatever the file holds, checked below
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UsageError(f"'{path}' is not a readable safetensors file ({exc})") from None
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # torch's weights-only unpickler refused something
            needed = re.search(r"GLOBAL (\S+)", str(exc))
            if needed:
                raise UsageError(f"refused to load '{path}': it holds Python objects or code ({needed[1]}), "
                                 "not just tensors",
                                 "save only the weights: torch.save(model.state_dict(), 'weights.pth')") from None
            raise UsageError(f"'{path}' is not a readable PyTorch checkpoint: corrupt, or a pickle that needs "
                             "code to load (refused)",
                             "pass a file written by torch.save(model.state_dict(), ...)") from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise UsageError(f"'{path}' is not a readable PyTorch checkpoint ({exc.__class__.__name__}: "
                             f"{first_line(exc)})",
                             "pass a file written by torch.save(model.state_dict(), ...)") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"'{path}' does not contain a state dict (a mapping of names to tensors)",
                         "save it with torch.save(model.state_dict(), ...)")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel/DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def aux_head_names(model: nn.Module) -> list[str]:
    """Names of the model's auxiliary heads (training-only; empty for models without them)."""
    aux_heads = getattr(model, "aux_heads", None)  # the zoo models with auxiliary heads define it
    heads = aux_heads() if aux_heads is not None else []
    return [name for name, module in model.named_children() if any(module is head for head in heads)]


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], spec: ModelSpec, source: str) -> None:
    """Load a state dict, or explain precisely why it does not fit this architecture."""
    expected = model.state_dict()
    aux_prefixes = tuple(name + "." for name in aux_head_names(model))
    missing = [k for k in expected if k not in state_dict
               and not k.endswith(_TOLERATED_MISSING_SUFFIX) and not k.startswith(aux_prefixes)]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                 for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or misshaped:
        lines = [f"checkpoint '{source}' does not fit model '{spec.name}' ({spec.variant})"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys) - 5} more)" if len(keys) > 5 else "")
                lines.append(f"  {len(keys)} {title} keys: {shown}")
        hint = (f"'{spec.name}' loads {spec.checkpoint} state dicts" if spec.checkpoint
                else f"no public checkpoint has the layout of '{spec.name}'; see `cnnx list` for the "
                     "models that load torchvision/timm weights")
        raise UsageError("\n".join(lines), hint)
    model.load_state_dict(state_dict, strict=False)


def initialize(model: nn.Module, spec: ModelSpec, seed: int) -> None:
    """Deterministic weights for a model without a checkpoint, with realistic BatchNorm statistics.

    Convs and FCs get He-normal weights (variance-preserving through ReLU) and zero biases, drawn from
    `seed`. BatchNorm layers then get running mean/variance measured on the shipped sample photos
    (one train-mode pass without gradients), so each BN normalises what it really sees in eval mode and
    deep networks neither explode nor collapse. The logits are not meaningful classes; they are a
    faithful numerical workload for parity and speed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not batchnorms:
        return
    from ..data import load_batch, sample_images  # local import: data pulls in PIL

    images = torch.from_numpy(load_batch(sample_images(), spec.preprocess))
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: running stats equal the statistics of this pass
    model.train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()  # dropout noise would distort the measured statistics
    with torch.no_grad():
        model(images)
    for bn in batchnorms:
        bn.momentum = 0.1
    model.eval()


def head_keys(spec: ModelSpec) -> list[str]:
    """The state-dict keys of the classifier heads (main and auxiliary): those whose shape depends on the number
    of classes (fc, classifier.6, classif, logits, NiN's last conv, aux1.fc2, AuxLogits.fc, ...). Found by
    building the model twice on the meta device, which allocates nothing."""
    with torch.device("meta"):
        two, three = spec.builder(num_classes=2).state_dict(), spec.builder(num_classes=3).state_dict()
    return [key for key in two if two[key].shape != three[key].shape]


def num_classes_of(state_dict: dict[str, torch.Tensor], spec: ModelSpec, source: str) -> int | None:
    """The number of classes a checkpoint's classifier outputs (None when it has no head keys of this
    architecture: load_into then names the missing keys). Heads that disagree are a UsageError."""
    found = {key: int(state_dict[key].shape[0]) for key in head_keys(spec)
             if key in state_dict and state_dict[key].ndim >= 1}
    if len(set(found.values())) > 1:
        shown = ", ".join(f"{key}: {n}" for key, n in found.items())
        raise UsageError(f"checkpoint '{source}' has classifier heads with different numbers of classes ({shown})",
                         "save the checkpoint of one model, whose heads all have the same number of outputs")
    return next(iter(found.values()), None)
