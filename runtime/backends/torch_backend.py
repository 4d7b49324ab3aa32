"""The PyTorch backend: the reference every other backend is compared against."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from sfadacof.checkpoint import LoadedCheckpoint, load_checkpoint
from sfadacof.errors import UserError
from sfadacof.images import estimated_gb, memory_budget_bytes
from sfadacof.large_frames import interpolate_in_pieces, interpolate_in_pieces_near_discontinuity

from .base import Backend


_TF32_LEAVES = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"))  # torch >= 2.9: per-operator precision


def _tf32_snapshot() -> list:
    """Every TF32 setting torch has, read without tripping its legacy/new API consistency checks: the legacy matmul
    precision and cuDNN flag (None where torch refuses to read them: a caller mixed the two APIs), and the
    per-operator fp32_precision strings of torch >= 2.9."""
    b = torch.backends
    leaves = [getattr(getattr(b, a), o) for a, o in _TF32_LEAVES]
    leaves = [(x, x.fp32_precision) for x in leaves if hasattr(x, "fp32_precision")]
    try:
        matmul = torch.get_float32_matmul_precision()
    except RuntimeError:
        matmul = None
    try:
        cudnn = bool(torch._C._get_cudnn_allow_tf32())
    except RuntimeError:
        cudnn = None
    return [matmul, cudnn, leaves]


@contextmanager
def no_tf32(cudnn_benchmark: bool | None = None) -> Iterator[None]:
    """float32 convolutions and matmuls in full float32 while inside, the caller's settings restored on the way out.
    cuDNN convolutions may use TF32 by default (10-bit mantissa inputs) on Ampere and later; the float32 reference
    and the float32 offset heads must not (the fp32 bound of runtime.accuracy, and the reason offsets stay float32).
    Scoped instead of set once at backend creation, so a program that uses a backend as a library keeps its own
    TF32 choice for its own work. Set through the legacy setters, which keep torch >= 2.9's per-operator settings
    consistent with them (setting only the new ones makes torch raise where a caller used the legacy API), then
    everything put back as it was. `cudnn_benchmark` sets torch.backends.cudnn.benchmark the same scoped way."""
    matmul, cudnn, leaves = _tf32_snapshot()
    benchmark = torch.backends.cudnn.benchmark
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        if cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = cudnn_benchmark
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        if matmul is not None:
            torch.set_float32_matmul_precision(matmul)
        if cudnn is not None:
            torch.backends.cudnn.allow_tf32 = cudnn
        for leaf, value in leaves:  # last: the legacy setters above rewrite these
            leaf.fp32_precision = value


class TorchBackend(Backend):
    """float32 throughout, TF32 off while it runs (no_tf32): the reference runtime.accuracy compares against."""

    name = "torch"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: str = "cpu",
                 variant: str | None = None, loaded: LoadedCheckpoint | None = None) -> None:
        if device != "cpu" and not device.startswith("cuda"):
            raise UserError(f"--device {device}: choose cpu or cuda[:N]")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {device}: this torch build or machine has no CUDA")
        self.ckpt = loaded if loaded is not None else load_checkpoint(checkpoint, variant=variant)
        self.device = torch.device(device)
        self.model = self.ckpt.model.to(self.device).eval()

    def _tensors(self, *frames: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)).to(self.device) for f in frames]

    def _in_pieces(self, frame0: np.ndarray) -> bool:
        """Whether a frame this size is over the memory budget whole (on the CPU): then it runs in pieces
        (sfadacof.large_frames), e.g. as runtime.accuracy's reference for a frame the backend ran in pieces."""
        h, w = frame0.shape[-2:]
        return self.device.type == "cpu" and estimated_gb(h * w) * 1e9 > memory_budget_bytes()

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        if self._in_pieces(frame0):
            return self.infer_in_pieces(frame0, frame2)
        # inference_mode: no autograd bookkeeping, the model's output is all we keep
        with torch.inference_mode(), no_tf32():
            return self.model(*self._tensors(frame0, frame2)).float().cpu().numpy()

    def infer_in_pieces(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """The same frames through sfadacof.large_frames (whatever the budget; runtime/backends/large_frames.py)."""
        with no_tf32():
            return interpolate_in_pieces(self.model, *self._tensors(frame0, frame2)).cpu().numpy()

    def infer_near_discontinuity(self, frame0: np.ndarray, frame2: np.ndarray,
                                 margin: float) -> tuple[np.ndarray, np.ndarray]:
        """(the middle frames, a (B, 1, H, W) bool mask of the output pixels any of whose 4*K*K offsets lies within
        `margin` of a discontinuity of the op: KernelMaps.near_discontinuity)."""
        f0, f2 = self._tensors(frame0, frame2)
        if self._in_pieces(frame0):
            with no_tf32():
                out, mask = interpolate_in_pieces_near_discontinuity(self.model, f0, f2, margin)
        else:
            with torch.inference_mode(), no_tf32():
                out, maps = self.model.forward_with_maps(f0, f2)
                h, w = f0.shape[2:]
                mask = maps.near_discontinuity(margin)[:, :, :h, :w]
        return out.float().cpu().numpy(), mask.cpu().numpy()

    def describe(self) -> dict:
        return {"backend": self.name, "precision": "fp32", "device": str(self.device),
                "torch": torch.__version__, "threads": torch.get_num_threads(), **checkpoint_description(self.ckpt)}

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def checkpoint_description(c) -> dict:
    """What a torch backend's describe() says about its checkpoint (a sfadacof.checkpoint.LoadedCheckpoint)."""
    return {"variant": c.variant, "kernel_size": c.kernel_size, "dilation": c.dilation, "checkpoint": str(c.path),
            "checkpoint_sha256": c.sha256, "epoch": c.epoch}
