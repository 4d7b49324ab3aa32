"""Checkpoint I/O: point at a file and get a model.

Accepted files:
  * the authors' format: torch.save({'epoch': int, 'state_dict': model.state_dict()}) with keys `get_kernel.*`;
  * a bare state_dict (with or without the `get_kernel.` prefix, with or without DataParallel's `module.`);
  * an optional `config.txt` beside the file with `kernel_size: N` / `dilation: N` lines (AdaCoF-pytorch).
The variant and K are detected from keys and shapes; dilation comes from config.txt (it leaves no trace in the
weights), else 1. Explicit arguments override both. Loading is strict: keys and shapes must match exactly.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .errors import UserError
from .models import AdaCoFNet, canonical_variant
from .outputs import atomic_path

PREFIX = "get_kernel."
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "sf_adacof_default.pth"


@dataclass
class LoadedCheckpoint:
    model: AdaCoFNet
    variant: str
    kernel_size: int
    dilation: int
    path: Path
    sha256: str
    epoch: int | None


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_config_txt(ckpt_path: Path) -> dict[str, int]:
    """`kernel_size: N` / `dilation: N` from a config.txt beside the checkpoint (other lines ignored)."""
    cfg = ckpt_path.parent / "config.txt"
    out: dict[str, int] = {}
    if not cfg.is_file():
        return out
    for line in cfg.read_text(errors="replace").splitlines():
        m = re.match(r"\s*(kernel_size|dilation)\s*[:=]\s*(\d+)\s*$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def normalise_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Strip DataParallel's `module.` and add the `get_kernel.` prefix to bare kernel-estimator dicts."""
    out = {}
    for k, v in state.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if not k.startswith(PREFIX):
            k = PREFIX + k
        out[k] = v
    return out


def detect_variant(state: dict[str, Tensor]) -> str | None:
    keys = state.keys()
    first = state.get(PREFIX + "moduleConv1.0.weight")
    if first is None or first.dim() != 4:
        return None
    if PREFIX + "flowconv1_FD.0.weight" in keys:
        return "noshare" if PREFIX + "moduleConv1_1.0.weight" in keys else "sf_adacof"
    learned_pool = PREFIX + "modulePool1.weight" in keys
    if first.shape[1] == 6:
        return "cp" if learned_pool else "adacof"
    if first.shape[1] == 3:
        return "rwtdcp" if learned_pool else "rwtd"
    return None


def detect_kernel_size(state: dict[str, Tensor]) -> int | None:
    w = state.get(PREFIX + "moduleWeight1.7.weight")
    if w is None:
        return None
    k = math.isqrt(int(w.shape[0]))
    return k if k * k == w.shape[0] else None


def _describe_mismatch(model: AdaCoFNet, state: dict[str, Tensor]) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            parts.append(f"{len(items)} {label} ({shown})")
    return "; ".join(parts) or "no differences"


def safe_torch_load(path: str | os.PathLike) -> object:
    """torch.load with weights_only=True (tensors and plain containers only: never code from the file); a file that
    needs more is refused in one line that does not suggest the unsafe weights_only=False."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(e))
        if found is None:  # not an object reference: just a corrupt or foreign file
            raise UserError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)[:200]})") from None
        # torch's message goes on to suggest weights_only=False, i.e. running the file's code: not repeated here
        raise UserError(f"{path}: holds a Python object ({found.group(1)}) besides tensors and plain containers; "
                        "refused, since loading it could run code from the file") from None
    except Exception as e:  # torch raises many types for corrupt/foreign files
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)[:200]})") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _read_state(path: Path) -> tuple[dict[str, Tensor], int | None]:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    obj = safe_torch_load(path)
    epoch = None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a state_dict or {{'epoch', 'state_dict'}} checkpoint")
    return normalise_state_dict(obj), epoch


def load_checkpoint(path: str | os.PathLike | None = None, variant: str | None = None,
                    kernel_size: int | None = None, dilation: int | None = None) -> LoadedCheckpoint:
    """Load a checkpoint (default: the shipped one) into an AdaCoFNet in eval mode, strictly."""
    p = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if path is None and not p.is_file():
        raise UserError(f"{p}: the default checkpoint is missing; pass --checkpoint")
    state, epoch = _read_state(p)
    cfg = read_config_txt(p)
    try:
        v = canonical_variant(variant) if variant else detect_variant(state)
    except ValueError as e:
        raise UserError(str(e)) from None
    if v is None:
        raise UserError(f"{p}: keys match no known variant (first keys: {', '.join(list(state)[:3])}); "
                        "pass --variant to see which keys are missing")
    for name, value in (("kernel size", kernel_size), ("dilation", dilation)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"{p}: {name} must be a positive integer, got {value!r}")
    k = kernel_size if kernel_size is not None else cfg.get("kernel_size") or detect_kernel_size(state) or 5
    d = dilation if dilation is not None else cfg.get("dilation") or 1
    try:
        model = AdaCoFNet(v, k, d)
    except ValueError as e:
        raise UserError(f"{p}: {e}") from None
    expected = model.state_dict()
    if set(expected) != set(state) or any(tuple(state[n].shape) != tuple(t.shape) for n, t in expected.items()):
        raise UserError(f"{p}: does not match variant {v} K={k}: {_describe_mismatch(model, state)}")
    model.load_state_dict({n: t.float() for n, t in state.items()}, strict=True)
    model.eval()
    return LoadedCheckpoint(model, v, k, d, p, file_sha256(p), epoch)


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same directory, then rename over `path` (sfadacof.outputs.atomic_path)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | os.PathLike, model: AdaCoFNet, epoch: int = 0, half: bool = False,
                    extra: dict | None = None) -> None:
    """Write the authors' format {'epoch', 'state_dict'} (plus optional extra keys), atomically.

    `half` stores fp16 weights (half the size; loading converts back to fp32)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in model.state_dict().items()}
    obj = {"epoch": int(epoch), "state_dict": sd}
    if extra:
        obj.update(extra)
    atomic_torch_save(obj, path)
