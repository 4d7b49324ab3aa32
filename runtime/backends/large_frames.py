"""Frames too large for a backend's whole-frame pass, within the memory budget.

    LargeFrameBackend(inner, checkpoint=None, variant=None, checkpoint_known=True, budget_bytes=None)

A pair whose whole-frame peak (WHOLE_FRAME_GB for the inner backend, else sfadacof.images.estimated_gb) fits the
memory budget runs on `inner` as usual. A larger one runs through sfadacof.large_frames.interpolate_in_pieces on the
same checkpoint in fp32 PyTorch: level 1 of the encoder in strips, the rest of the U-Net whole, the heads and the
synthesis in tiles, which reproduces the whole-frame forward (float32 summation order aside: max|Δ| 3.6e-7 on a real
613x251 frame) at ~0.36 GB per megapixel instead of ~2.0 (a 6000x4000 pair: 8.96 GB peak RSS for the whole
runtime.infer process, 235 s). Frames that do not fit even so are refused from their header before decoding
(sfadacof.images.check_pixel_budget). The report's backend says how many frames went which way (`large_frames`).

Why not tiles of the inner backend: the model's x2 upsamplings use align_corners=True, whose sampling grid depends
on the input's size, so independent tiles differ from the whole frame by up to 24.7/255 at any margin (measured on
bigbuckbunny, margins 128-256 px); only the decoder has that property, which is why it runs whole here.
Only for backends that run on this machine's CPU: a GPU backend's limit is device memory and its engine profile.
"""

from __future__ import annotations

import os

import numpy as np

from sfadacof.errors import UserError
from sfadacof.images import VIDEO_GB_PER_MEGAPIXEL, estimated_gb, estimated_gb_in_pieces, memory_budget_bytes
from sfadacof.large_frames import TILE

from .base import Backend
from .torch_backend import TorchBackend

# Whole-frame peak (GB at 0 pixels, GB per megapixel) of backends that need less than sfadacof.images.estimated_gb
# (whole runtime.infer process, 2 cores): OpenVINO bf16 2.03 GB at 1920x1080, 6.33 GB at 3840x2160.
# The fixed share is 0.8, not the 0.6 fitted at 1080p/4K: at 1280x720 the process peaked at 1.25 GB (issue 24's test,
# tests/test_large_frames.py), 0.04 GB under 0.6 + 0.75 * 0.92, and such peaks vary by ~0.3 GB between runs.
WHOLE_FRAME_GB = {("openvino", "bf16"): (0.8, 0.75)}


class LargeFrameBackend(Backend):
    def __init__(self, inner: Backend, checkpoint: str | os.PathLike | None = None, variant: str | None = None,
                 checkpoint_known: bool = True, budget_bytes: float | None = None, video: bool = False) -> None:
        self.inner, self.name = inner, inner.name
        self.checkpoint, self.variant, self.checkpoint_known = checkpoint, variant, checkpoint_known
        self.budget, self.video = budget_bytes, video
        self._pieces = inner if isinstance(inner, TorchBackend) else None  # runs the pieces; created on first use
        d = inner.describe()  # its whole-frame figures, if measured: by name and precision, fixed for a backend
        self._coeffs = WHOLE_FRAME_GB.get((d.get("backend"), d.get("precision")))
        self.whole = self.in_pieces = 0

    def _budget(self) -> float:
        return float(self.budget if self.budget is not None else memory_budget_bytes())

    def whole_gb(self, height: int, width: int) -> float:
        """The inner backend's estimated whole-frame peak."""
        if self._coeffs is None:
            return estimated_gb(height * width, self.video)
        per_mp = self._coeffs[1] + (VIDEO_GB_PER_MEGAPIXEL if self.video else 0.0)
        return self._coeffs[0] + per_mp * height * width / 1e6

    def fits_whole(self, height: int, width: int) -> bool:
        return self.whole_gb(height, width) * 1e9 <= self._budget()

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        h, w = frame0.shape[-2:]
        if self.fits_whole(h, w):
            self.whole += 1
            return self.inner.infer(frame0, frame2)
        need = estimated_gb_in_pieces(h * w, self.video)
        if need * 1e9 > self._budget():
            raise UserError(f"{w}x{h} frames need roughly {need:.1f} GB even in pieces, over the memory budget of "
                            f"{self._budget() / 1e9:.1f} GB (--memory-budget GB)")
        if not self.checkpoint_known:
            whole = self.whole_gb(h, w)
            raise UserError(f"{w}x{h} frames need roughly {whole:.1f} GB whole, over the memory budget of "
                            f"{self._budget() / 1e9:.1f} GB; running them in pieces needs the weights of --onnx: "
                            "pass --checkpoint")
        if self._pieces is None:
            self._pieces = TorchBackend(self.checkpoint, variant=self.variant)
        self.in_pieces += 1
        return self._pieces.infer_in_pieces(frame0, frame2)

    def describe(self) -> dict:
        d = dict(self.inner.describe())
        d["memory_budget_gb"] = round(self._budget() / 1e9, 2)
        if self.in_pieces:
            d["large_frames"] = {"whole": self.whole, "in_pieces": self.in_pieces,
                                 "how": "fp32 PyTorch, sfadacof.large_frames (level 1 in strips, heads and synthesis "
                                        f"in {TILE}x{TILE} tiles)"}
        return d

    def close(self) -> None:
        self.inner.close()
        if self._pieces is not None and self._pieces is not self.inner:
            self._pieces.close()
        self._pieces = None
