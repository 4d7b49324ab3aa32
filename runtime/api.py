"""The Python API: one object from a checkpoint to a middle frame, the path `runtime.infer` itself runs.

    from runtime import Interpolator

    with Interpolator() as interp:                      # shipped weights, the fastest backend here
        mid = interp(frame0, frame2)                    # numpy uint8/float HxWx3, PIL image or NCHW torch tensor
        mids = interp.many([(f0, f1), (f1, f2)])        # a sequence of pairs
        report = interp.video("in.mp4", "out.mp4", fps=60)   # or factor=2; "-" = y4m on stdin/stdout
        print(interp.describe())                        # which backend runs, and why

It lives in `runtime` (not `sfadacof`) because it drives the runtime's backends, and imports flow one way
(sfadacof <- plugins <- export <- runtime): the model package cannot import its own runtime.

Errors are the CLIs' one-line `sfadacof.errors.UserError`s (frames of different sizes, a missing checkpoint, a
backend that is not installed ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sfadacof.errors import UserError
from sfadacof.images import MIN_SIZE, hwc_to_nchw, to_uint8

from .backends.base import Backend
from .backends.registry import BACKENDS, BackendOptions, create_backend


class Interpolator(Backend):
    """Middle frames from a checkpoint on one backend (built once, reused for every call).

    Args:
        checkpoint: a PyTorch checkpoint (str or Path); None = the shipped weights.
        backend: "auto" (TensorRT where it can run, else the CPU default), "torch", "ort", "openvino" or "trt".
        precision: None (the backend's default), "fp32", "fp16" or "bf16" -- as runtime.infer --precision.
        device: None/"cpu", or "cuda"/"cuda:N" (torch, ort, trt).
        **options: the other runtime.infer backend flags as keywords: variant, onnx, engine, plugin,
            skip_engine_check.

    It is also a `runtime.backends.base.Backend` (infer/describe/close on float32 NCHW arrays), so the CLIs hand it
    to their pair and video loops: one path from a checkpoint to a frame.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, backend: str = "auto",
                 precision: str | None = None, device: str | None = None, **options: Any) -> None:
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        unknown = set(options) - {"variant", "onnx", "engine", "plugin", "skip_engine_check", "video"}
        if unknown:
            raise TypeError(f"Interpolator: unknown option(s) {', '.join(sorted(unknown))}")
        video = bool(options.pop("video", False))
        paths = {k: Path(v) if v is not None and k in ("onnx", "engine", "plugin") else v for k, v in options.items()}
        opts = BackendOptions(checkpoint=Path(checkpoint) if checkpoint is not None else None,
                              device=device or "cpu", precision=precision, **paths)
        if opts.checkpoint is not None and not opts.checkpoint.is_file():
            raise UserError(f"{opts.checkpoint}: checkpoint not found")
        self._init(create_backend(backend, opts, video=video), backend)

    @classmethod
    def from_options(cls, backend: str, options: BackendOptions, *, video: bool = False) -> "Interpolator":
        """An Interpolator from the CLIs' parsed flags (runtime.backends.registry.backend_options)."""
        self = cls.__new__(cls)
        self._init(create_backend(backend, options, video=video), backend)
        return self

    def _init(self, inner: Backend, requested: str) -> None:
        self._backend, self._requested = inner, requested
        self.name = inner.name

    # -- the Backend seam (float32 NCHW in [0, 1] -> raw float32 NCHW): what the CLIs' loops call -------------------

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 x2 -> (B, 3, H, W) float32, raw (not clipped): the backend's own call."""
        return self._backend.infer(frame0, frame2)

    def describe(self) -> dict:
        """Which backend runs and why: {"backend": name, "chosen_by": reason, precision, device, ...}."""
        d = dict(self._backend.describe())
        d.setdefault("chosen_by", f"backend={self._requested!r} requested")
        return d

    def close(self) -> None:
        """Release the backend (sessions, engines); idempotent. A `with` block calls it."""
        self._backend.close()

    def __enter__(self) -> "Interpolator":
        return self

    def __repr__(self) -> str:
        d = self.describe()
        return f"Interpolator({d.get('backend')}: {d.get('chosen_by')})"

    # -- frames in the caller's own type ------------------------------------------------------------------------------

    def __call__(self, frame0, frame2):
        """The middle frame of two frames, in the inputs' type and range.

        Args:
            frame0, frame2: the same type and size, one of
                numpy (H, W, 3) uint8 (0..255) or float16/32/64 (0..1), RGB;
                PIL.Image.Image (any mode PIL converts to RGB);
                torch.Tensor (N, 3, H, W) float (0..1) or uint8 (0..255), on any device.
        Returns:
            numpy: (H, W, 3), the input dtype (uint8: clip(x, 0, 1) * 255 rounded half to even, exactly what
            runtime.infer writes as PNG; float: clipped to [0, 1]); PIL: an RGB image; torch: (N, 3, H, W), the
            input dtype and device.
        Raises:
            UserError: frames of different sizes or types, a wrong shape, frames smaller than 32x32.
        """
        kind = _kind(frame0, "frame0")
        if _kind(frame2, "frame2") != kind:
            raise UserError(f"frame2: a {_kind(frame2, 'frame2')}, frame0 a {kind}; pass two frames of one type")
        if kind == "torch tensor":
            return self._torch(frame0, frame2)
        if kind == "PIL image":
            from PIL import Image

            a, b = (np.asarray(f if f.mode == "RGB" else f.convert("RGB")) for f in (frame0, frame2))
            return Image.fromarray(self._numpy(a, b))
        return self._numpy(frame0, frame2)

    def many(self, pairs: Iterable[tuple[Any, Any]]) -> list:
        """[self(a, b) for a, b in pairs]: the middle frame of every pair, in order, each in its pair's type."""
        return [self(a, b) for a, b in pairs]

    def video(self, src: str | os.PathLike, dst: str | os.PathLike, *, factor: int | None = None,
              fps: float | None = None, **kwargs: Any) -> dict:
        """Up-convert a video (or a folder of frames) exactly as runtime.infer SRC -o DST does; returns its report.

        Args:
            src, dst: files or folders as runtime.infer takes them ("-": a y4m stream on stdin / stdout).
            factor: 2, 4 or 8 (the default 2 when fps is not given).
            fps: a target frame rate instead (e.g. 60): each output time from recursive midpoints of the source
                pair around it, the nearest time available (the report gives the worst timing error).
            **kwargs: scene_cut, crf, input_fps, max_depth, max_pixels (runtime.infer's flags).
        """
        from .video import run_video

        if factor is not None and fps is not None:
            raise UserError("give factor or fps, not both")
        if fps is not None:
            kwargs["target_fps"] = fps
        return run_video(self, Path(src), Path(dst), factor=factor or 2, **kwargs)

    def _numpy(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        _same_size(a.shape, b.shape, lambda s: s[:2], "(H, W, 3)")
        if a.ndim != 3 or a.shape[2] != 3:
            raise UserError(f"frame0: shape {a.shape}; expected (H, W, 3) RGB")
        if a.dtype != b.dtype:
            raise UserError(f"frame2: dtype {b.dtype}, frame0 {a.dtype}; pass two frames of one dtype")
        if a.dtype == np.uint8:
            x0, x2 = (f.astype(np.float32) / np.float32(255.0) for f in (a, b))  # as sfadacof.images decodes
        elif np.issubdtype(a.dtype, np.floating):
            x0, x2 = a.astype(np.float32), b.astype(np.float32)
        else:
            raise UserError(f"frame0: dtype {a.dtype}; expected uint8 (0..255) or float (0..1)")
        raw = self.infer(hwc_to_nchw(x0), hwc_to_nchw(x2))[0].transpose(1, 2, 0)
        if a.dtype == np.uint8:
            return to_uint8(raw)
        return np.clip(raw, 0.0, 1.0).astype(a.dtype)

    def _torch(self, a, b):
        import torch

        _same_size(tuple(a.shape), tuple(b.shape), lambda s: s[-2:], "(N, 3, H, W)")
        if a.ndim != 4 or a.shape[1] != 3 or a.shape != b.shape:
            raise UserError(f"frame0: shape {tuple(a.shape)}, frame2 {tuple(b.shape)}; expected two (N, 3, H, W)")
        if a.dtype != b.dtype:
            raise UserError(f"frame2: dtype {b.dtype}, frame0 {a.dtype}; pass two frames of one dtype")
        scale = 255.0 if a.dtype == torch.uint8 else 1.0
        x0, x2 = (np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32) / np.float32(scale)
                  for t in (a, b))
        raw = self.infer(x0, x2)
        if a.dtype == torch.uint8:
            out = torch.from_numpy(to_uint8(raw))
        else:
            out = torch.from_numpy(np.clip(raw, 0.0, 1.0)).to(a.dtype)
        return out.to(a.device)


def _kind(frame, which: str) -> str:
    if isinstance(frame, np.ndarray):
        return "numpy array"
    if type(frame).__module__.startswith("PIL."):
        return "PIL image"
    if type(frame).__module__.startswith("torch") and hasattr(frame, "detach"):
        return "torch tensor"
    raise UserError(f"{which}: a {type(frame).__name__}; pass numpy (H, W, 3) arrays, PIL images or "
                    "(N, 3, H, W) torch tensors")


def _same_size(s0: tuple, s2: tuple, hw, layout: str) -> None:
    """One line for frames of different sizes (the pairs CLI's wording), or too small ones."""
    if len(s0) != len(layout.split(",")) or len(s2) != len(s0):
        raise UserError(f"frame0: shape {s0}, frame2 {s2}; expected {layout}")
    (h0, w0), (h2, w2) = hw(s0), hw(s2)
    if (h0, w0) != (h2, w2):
        raise UserError(f"frame2: size {w2}x{h2} differs from frame0 ({w0}x{h0})")
    if w0 < MIN_SIZE or h0 < MIN_SIZE:
        raise UserError(f"frame0: frame is {w0}x{h0}; frames must be at least {MIN_SIZE}x{MIN_SIZE}")

