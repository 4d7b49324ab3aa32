"""Checkpoint I/O: point at a file and get a model.

Accepted files:
  * the authors' format: torch.save({'epoch': int, 'state_dict': model.state_dict()}) with keys `get_kernel.*`;
  * a bare state_dict (with or without the `get_kernel.` prefix, with or without DataParallel's `module.`);
  * an optional `config.txt` beside the file with `kernel_size: N` / `dilation: N` lines (AdaCoF-pytorch).
The variant and K are detected from keys and shapes; dilation comes from config.txt (it leaves no trace in the
weights), else 1. Explicit arguments override both. Loading is strict: keys and shapes must match exactly.

Nothing is materialised before it is known to fit (a crafted file can deflate gigabytes of zeros into megabytes):
the zip's central directory bounds every record, the pickle is read first with map_location="meta" (shapes and
storage sizes, no data), and the declared sizes must fit the layout of the model they describe before the tensors
are read. Weights holding NaN or Inf are refused, naming the tensor: they would write black frames or export.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .errors import UserError
from .models import AdaCoFNet, canonical_variant
from .outputs import atomic_path

PREFIX = "get_kernel."
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "sf_adacof_default.pth"
# What a checkpoint may hold besides its tensors' data (the pickle, epoch, args, scheduler state): a few kB in
# practice; any record but a tensor's may inflate to at most this, and the tensors' total gets it as headroom.
METADATA_BYTES = 16 << 20
# How much larger than in the file a checkpoint's records may unpack (see _check_records)
MAX_UNPACK_RATIO = 4
# Bytes per weight a checkpoint may declare: fp64 (8) is the widest dtype a state_dict of this model is saved in.
MAX_BYTES_PER_WEIGHT = 8
# A training run's best.pth / last.pth is a checkpoint too (users pass it to every command): it holds the weights and
# the optimizer's two moments per weight (Adamax), so a checkpoint may declare up to three layouts' worth of data.
TRAINING_STATE_LAYOUTS = 3


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


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 10**6 else f"{n} bytes"


def _zip_records(path: Path) -> list[zipfile.ZipInfo] | None:
    """The central directory of a zip checkpoint (torch.save's format since 1.6), None for the legacy format, whose
    tensors are stored raw after the pickle and so can never unpack larger than the file."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            return z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # torch.load reports it, in one line


def _is_tensor_record(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and parts[1] == "data" and parts[2].isdigit()


def _check_records(path: Path, records: list[zipfile.ZipInfo], max_data_bytes: int | None) -> None:
    """Refuse, from the zip's own directory and before anything is inflated, records that would unpack beyond what a
    checkpoint holds: more than MAX_UNPACK_RATIO times their size in the file (torch.save stores records
    uncompressed; a re-zipped checkpoint of weights shrinks by a few percent, a bomb by a thousand times: this
    bound holds whatever torch.load reads, on any torch version), any record but a tensor's beyond METADATA_BYTES,
    the tensors together beyond max_data_bytes."""
    packed = sum(r.compress_size for r in records)
    unpacked = sum(r.file_size for r in records)
    if unpacked > MAX_UNPACK_RATIO * packed + METADATA_BYTES:
        raise UserError(f"{path}: unpacks to {_mb(unpacked)} from {_mb(packed)} (no checkpoint compresses like "
                        "that: a decompression bomb?); refused before unpacking it")
    for r in records:
        if not _is_tensor_record(r.filename) and r.file_size > METADATA_BYTES:
            raise UserError(f"{path}: its record {r.filename} unpacks to {_mb(r.file_size)} (a checkpoint's holds "
                            f"at most {_mb(METADATA_BYTES)}); refused before unpacking it")
    data = sum(r.file_size for r in records if _is_tensor_record(r.filename))
    if max_data_bytes is not None and data > max_data_bytes:
        raise UserError(f"{path}: its tensors unpack to {_mb(data)}, more than a checkpoint of this model holds "
                        f"(at most {_mb(max_data_bytes)}); refused before unpacking them")


def declared_bytes(obj: object) -> int:
    """Bytes of the storages behind every tensor in `obj` (nested dicts/lists), as declared by a meta load: each
    storage counted once, however many tensors view it."""
    seen: dict[object, int] = {}

    def walk(o: object) -> None:
        if isinstance(o, Tensor):
            st = o.untyped_storage()
            seen[getattr(st, "_checkpoint_offset", None) or id(o)] = st.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)

    walk(obj)
    return sum(seen.values())


def _torch_load(path: Path, map_location: str) -> object:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(e))
        if found is None:  # not an object reference: just a corrupt or foreign file
            raise UserError(f"{path}: {_not_a_checkpoint(path, e)}") from None
        # torch's message goes on to suggest weights_only=False, i.e. running the file's code: not repeated here
        raise UserError(f"{path}: holds a Python object ({found.group(1)}) besides tensors and plain containers; "
                        "refused, since loading it could run code from the file") from None
    except Exception as e:  # torch raises many types for corrupt/foreign files
        raise UserError(f"{path}: {_not_a_checkpoint(path, e)}") from None


def _not_a_checkpoint(path: Path, e: BaseException) -> str:
    """Why torch could not read `path`, said by what the file is rather than by torch's advice (whose first lines
    are about weights_only defaults, cut mid-sentence when shortened)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        size, head = -1, b""
    if size == 0:
        return "not a PyTorch checkpoint (the file is empty)"
    kind = _sniff(path, head)
    if kind:
        return f"not a PyTorch checkpoint: it is {kind}"
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))  # the cause, past torch's advice
    return f"not a readable PyTorch checkpoint ({(detail.group(1) if detail else _first_line(e)).strip()[:160]})"


def _sniff(path: Path, head: bytes) -> str | None:
    """What a file that is not a checkpoint is, when it is a kind users confuse with one."""
    signatures = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x89HDF", "an HDF5 file (Keras?)"),
                  (b"\x1f\x8b", "a gzip archive"), (b"ftrt", "a TensorRT engine"), (b"{", "a JSON/text file"))
    for magic, kind in signatures:
        if head.startswith(magic):
            return kind
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100 << 20:
        return "a safetensors file (convert it with safetensors.torch.load_file + torch.save)"
    if head[:1] == b"\x08":  # protobuf field 1 varint: an ONNX ModelProto's ir_version
        try:
            import onnx

            m = onnx.load(str(path), load_external_data=False)
            if len(m.graph.node):
                return ("an ONNX model (pass it as --onnx where the command takes one; --checkpoint wants the "
                        "PyTorch weights it was exported from)")
        except Exception:  # not ONNX either: torch's own reason is the better one
            return None
    return None


def safe_torch_load(path: str | os.PathLike, max_data_bytes: int | None = None) -> object:
    """torch.load with weights_only=True (tensors and plain containers only: never code from the file); a file that
    needs more is refused in one line that does not suggest the unsafe weights_only=False.

    Nothing inflates beyond its bound: every record but a tensor's to METADATA_BYTES, and the tensors together to
    `max_data_bytes` (None: unbounded), both from the zip's directory and from the sizes the pickle declares."""
    path = Path(path)
    records = _zip_records(path)
    if records is not None:
        _check_records(path, records, None)
        if max_data_bytes is not None:
            _check_sizes(path, records, _torch_load(path, "meta"), max_data_bytes)
    return _torch_load(path, "cpu")


def _check_sizes(path: Path, records: list[zipfile.ZipInfo], meta: object, max_data_bytes: int) -> None:
    """The tensors' records (the zip's directory) and storages (what the pickle declares) within max_data_bytes."""
    _check_records(path, records, max_data_bytes)
    declared = declared_bytes(meta)
    if declared > max_data_bytes:
        raise UserError(f"{path}: declares {_mb(declared)} of tensors, more than a checkpoint of this model holds "
                        f"(at most {_mb(max_data_bytes)}); refused before reading them")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _state_of(path: Path, obj: object) -> tuple[dict[str, Tensor], int | None]:
    epoch = None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        epoch = obj.get("epoch") if isinstance(obj.get("epoch"), int) else None
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UserError(f"{path}: not a state_dict or {{'epoch', 'state_dict'}} checkpoint")
    return normalise_state_dict(obj), epoch


def check_finite(path: str | os.PathLike, state: dict[str, Tensor]) -> None:
    """Refuse weights holding NaN or Inf, naming the first such tensor: NaN weights write black frames, and both
    would be exported, calibrated or trained on as if they were weights."""
    for name, t in state.items():
        # a finite sum means every value is finite (NaN and Inf propagate), and summing costs an eighth of
        # isfinite(t).all(): 8 ms for the shipped 8.6 M weights on one core; only an overflowing sum is counted
        if isinstance(t, Tensor) and t.is_floating_point() and not math.isfinite(float(t.sum())):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                nan = int(torch.isnan(t).sum())
                what = " and ".join(w for w, n in (("NaN", nan), ("Inf", bad - nan)) if n)
                raise UserError(f"{path}: tensor {name} holds {what} ({bad} of {t.numel()} values); refused "
                                "(a diverged or damaged training run?)")


def layout_bytes(model: torch.nn.Module) -> int:
    """The most bytes a checkpoint of `model` may declare: every weight at MAX_BYTES_PER_WEIGHT, plus
    METADATA_BYTES."""
    return sum(t.numel() for t in model.state_dict().values()) * MAX_BYTES_PER_WEIGHT + METADATA_BYTES


def load_checkpoint(path: str | os.PathLike | None = None, variant: str | None = None,
                    kernel_size: int | None = None, dilation: int | None = None) -> LoadedCheckpoint:
    """Load a checkpoint (default: the shipped one) into an AdaCoFNet in eval mode, strictly."""
    p = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if path is None and not p.is_file():
        raise UserError(f"{p}: the default checkpoint is missing; pass --checkpoint")
    if not p.is_file():
        raise UserError(f"{p}: checkpoint file not found")
    records = _zip_records(p)
    if records is not None:
        _check_records(p, records, None)
    # shapes and storage sizes first (map_location="meta": no tensor data is read), to size the layout
    meta = _torch_load(p, "meta") if records is not None else safe_torch_load(p)
    state, epoch = _state_of(p, meta)
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
    if records is not None:  # the layout is known: now the tensors may be read, within its size
        _check_sizes(p, records, meta, TRAINING_STATE_LAYOUTS * layout_bytes(model))
        state, epoch = _state_of(p, _torch_load(p, "cpu"))
    state = {n: t.float() for n, t in state.items()}
    check_finite(p, state)
    model.load_state_dict(state, strict=True)
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
