"""Bounded memory at any frame size: a Backend wrapper that runs large frames as overlapping tiles.

    TiledBackend(inner, budget_bytes=None, tile=None, margin=MARGIN)
    plan(height, width, budget_bytes) -> Plan (tile side, or None for one piece) or UserError (cannot fit)

A frame whose estimated peak would exceed the budget (or TILE_AREA_CAP, which keeps ~1 KB per pixel at 1080p) is
cut into a grid of core tiles of side `tile` (a multiple of 32); each core is run with `margin` pixels of real
context on every side where the frame has them, and only the core of the output is kept. Tile origins are
multiples of 32, so the U-Net's five 2x poolings see the same 32x32 blocks as in the whole frame, and a tile that
ends at the frame's bottom/right edge is reflect-padded exactly as the whole frame is.

Measured, and why this wrapper is NOT applied by default: the synthesis reads frame pixels up to max|offset| +
(K-1)*d/2 from the output pixel (max |offset| of the shipped weights on bigbuckbunny 1280x720, frames 60/62: 5.25
px), but tiles do not reproduce the whole frame's output within 1/255 at any margin tried. On a real 704x416 crop
of bigbuckbunny (frames 60 and 62, ONNX Runtime, core tile 128) the max |difference| against the whole frame is
24.7 / 23.7 / 22.8 (of 255) at margins 128 / 192 / 256, with 99.9th percentiles 1.71 / 1.24 / 0.89; at margin
128 the pixels over 1/255 are as frequent 32-64 px from every seam (0.33%) as next to one (0.41%). The cause is
the model, not the margin: its x2 upsamplings use align_corners=True, whose sampling grid is
i * (n_in - 1) / (n_out - 1), so it depends on the input's size, and a tile sees a grid shifted by up to half a
coarse pixel (16 px at the 1/32 level) from the whole frame's, everywhere in the tile. Checked in PyTorch on a
576x320 crop of the same frames (core tile 128, margin 128): max |difference| 24.7/255 (99.9th percentile 1.9) with
the model's align_corners=True; 1.6/255 (99.9th percentile 0.004) with the same weights and align_corners=False
(a translation-equivariant grid, but not the trained model). Exact tiling needs a split
below the U-Net (run the U-Net whole, the full-resolution heads and synthesis in tiles) or a translation-equivariant
upsampling (a different model). Until then the budget is enforced by refusal (sfadacof.images.check_pixel_budget).

Memory model (per pixel of the network's padded input, fp32, 2-core CPU; README "Limits"): ~1.6 KB for ONNX
Runtime's activations on top of a fixed ~0.7 GB (weights, runtimes, libraries), plus the whole frames the caller
holds (two inputs, output, decoded copies: FRAME_BYTES_PER_PIXEL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sfadacof.errors import UserError
from sfadacof.images import memory_budget_bytes

from .base import Backend

ALIGN = 32
MARGIN = 128             # context on each side of a core tile (multiple of ALIGN); see the docstring and the tests
BASE_BYTES = 700e6       # process, weights and runtime libraries
NET_BYTES_PER_PIXEL = 1600.0   # activations per padded input pixel of one interpolation (ORT CPU, measured)
FRAME_BYTES_PER_PIXEL = 80.0   # whole frames held by the caller: decoded RGB x2-3, NCHW inputs x2, output, 8-bit
TILE_AREA_CAP = 768 * 768      # largest network input run in one piece (incl. margins): bounds KB/pixel at 1080p
MIN_TILE = 64


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def estimated_bytes(height: int, width: int, piece_h: int | None = None, piece_w: int | None = None) -> float:
    """Peak bytes of one interpolation of a height x width frame whose network runs on piece_h x piece_w inputs
    (default: the whole frame)."""
    ph, pw = _padded(piece_h or height), _padded(piece_w or width)
    return BASE_BYTES + NET_BYTES_PER_PIXEL * ph * pw + FRAME_BYTES_PER_PIXEL * height * width


@dataclass(frozen=True)
class Plan:
    tile: int | None  # core tile side; None: the frame runs in one piece
    estimated_bytes: float


def plan(height: int, width: int, budget_bytes: float, margin: int = MARGIN) -> Plan:
    """One piece if it fits the budget and TILE_AREA_CAP, else the largest core tile (multiple of 32) whose piece
    (core + 2 margins) fits both; UserError (one line) when not even the smallest tile fits."""
    whole = estimated_bytes(height, width)
    if _padded(height) * _padded(width) <= TILE_AREA_CAP and whole <= budget_bytes:
        return Plan(None, whole)
    side = min(_padded(max(height, width)), int(math.isqrt(TILE_AREA_CAP)) - 2 * margin)
    side -= side % ALIGN
    while side >= MIN_TILE:
        piece_h, piece_w = min(height, side + 2 * margin), min(width, side + 2 * margin)
        est = estimated_bytes(height, width, piece_h, piece_w)
        if est <= budget_bytes:
            return Plan(side, est)
        side -= ALIGN
    need = estimated_bytes(height, width, min(height, MIN_TILE + 2 * margin), min(width, MIN_TILE + 2 * margin))
    raise UserError(f"{width}x{height} frames need about {need / 1e9:.1f} GB even in tiles, over the memory budget "
                    f"of {budget_bytes / 1e9:.1f} GB; raise --memory-budget (GB) if the machine has the memory")


def tile_spans(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(piece start, piece end, core start, core end) along one axis of length n: cores of `tile` cover [0, n),
    pieces add up to `margin` on each side, every start a multiple of ALIGN."""
    spans = []
    for c0 in range(0, n, tile):
        c1 = min(n, c0 + tile)
        spans.append((max(0, c0 - margin), min(n, c1 + margin), c0, c1))
    return spans


class TiledBackend(Backend):
    """Runs `inner` on whole frames where they fit, on overlapping tiles otherwise (see the module docstring)."""

    def __init__(self, inner: Backend, budget_bytes: float | None = None, margin: int = MARGIN,
                 tile: int | None = None) -> None:
        if margin % ALIGN or (tile is not None and (tile % ALIGN or tile < ALIGN)):
            raise ValueError(f"margin and tile must be multiples of {ALIGN}")
        self.inner, self.name = inner, inner.name
        self.budget = float(budget_bytes if budget_bytes is not None else memory_budget_bytes())
        self.margin, self.forced_tile = margin, tile
        self.last_plan: Plan | None = None

    def check(self, height: int, width: int) -> Plan:
        """The plan for a frame size, or UserError before anything is allocated."""
        if self.forced_tile is not None:
            return Plan(self.forced_tile, estimated_bytes(height, width, self.forced_tile + 2 * self.margin,
                                                          self.forced_tile + 2 * self.margin))
        return plan(height, width, self.budget, self.margin)

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        h, w = frame0.shape[-2:]
        p = self.last_plan = self.check(h, w)
        if p.tile is None or (p.tile >= h and p.tile >= w):
            return self.inner.infer(frame0, frame2)
        out = np.empty(frame0.shape, np.float32)
        for y0, y1, cy0, cy1 in tile_spans(h, p.tile, self.margin):
            for x0, x1, cx0, cx1 in tile_spans(w, p.tile, self.margin):
                piece = self.inner.infer(np.ascontiguousarray(frame0[..., y0:y1, x0:x1]),
                                         np.ascontiguousarray(frame2[..., y0:y1, x0:x1]))
                out[..., cy0:cy1, cx0:cx1] = piece[..., cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        return out

    def describe(self) -> dict:
        d = dict(self.inner.describe())
        d["memory_budget_gb"] = round(self.budget / 1e9, 2)
        if self.last_plan is not None and self.last_plan.tile is not None:
            d["tiles"] = {"tile": self.last_plan.tile, "margin": self.margin}
        return d

    def close(self) -> None:
        self.inner.close()
