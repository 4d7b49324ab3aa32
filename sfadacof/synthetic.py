"""Synthetic-motion triplets with known motion, for a flow-supervised warm-up of kernel estimation.

Why: learned only through the photometric loss, the offsets get their gradient from local image gradients, which
is a weak signal; on a CPU budget of a few thousand steps the model stays at frame averaging. Warping a real frame
with a known smooth motion field gives triplets whose ideal sampling positions are known, so the expected
displacement of each AdaCoF kernel can be supervised directly (`expected_displacement`, `flow_loss`).

Construction (pixel units, (row, col) order): a real frame I is warped at twice the training size with a smooth
half-interval motion v(x) (a global translation plus a low-frequency field), frame0(y) = I(y + v), frame2(y) = I(y - v),
frame1 = I, and all three are then 2x2 average-pooled. Warping at twice the size and pooling afterwards keeps the
bicubic interpolation blur in frame0/frame2 well below one output pixel, so the model is not taught to sharpen.
An object at p in frame1 sits at p - v in frame0 and p + v in frame2: the ideal displacement of frame0's kernel is
-v and of frame2's is +v.

Every draw depends only on (seed, step), like data.TripletSampler, so training stays resumable bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import TripletSampler
from .models import KernelMaps


def _motion_fields(n: int, h: int, w: int, max_motion: float, gen: torch.Generator) -> Tensor:
    """(n, 2, h, w) smooth half-interval motion in pixels of an (h, w) image: log-uniform magnitude in
    [max_motion / 24, max_motion] per sample, random direction, plus a 4x4-control-point field of half that size
    (so the motion varies over the crop, as real motion does)."""
    mag = torch.exp(torch.empty(n).uniform_(math.log(max_motion / 24), math.log(max_motion), generator=gen))
    ang = torch.empty(n).uniform_(-math.pi, math.pi, generator=gen)
    glob = torch.stack([mag * torch.sin(ang), mag * torch.cos(ang)], 1).view(n, 2, 1, 1)
    ctrl = torch.empty(n, 2, 4, 4).uniform_(-1, 1, generator=gen) * (0.5 * mag).view(n, 1, 1, 1)
    local = F.interpolate(ctrl, size=(h, w), mode="bicubic", align_corners=True)
    return glob + local


def _warp(img: Tensor, disp: Tensor) -> tuple[Tensor, Tensor]:
    """img sampled at x + disp (pixels, (row, col)); also a mask of where that stays inside the image."""
    n, _, h, w = img.shape
    rows = torch.arange(h, dtype=img.dtype, device=img.device).view(1, h, 1) + disp[:, 0]
    cols = torch.arange(w, dtype=img.dtype, device=img.device).view(1, 1, w) + disp[:, 1]
    grid = torch.stack([cols / (w - 1) * 2 - 1, rows / (h - 1) * 2 - 1], dim=-1)
    out = F.grid_sample(img, grid, mode="bicubic", padding_mode="border", align_corners=True).clamp(0, 1)
    inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    return out, inside.unsqueeze(1)


class SyntheticMotionSampler:
    """Batches (frame0, frame1, frame2, motion, valid) built from real frames of `sampler` (which must crop at twice
    the training size). motion is v, (B, 2, H, W) in training pixels; valid masks pixels whose warps stayed inside."""

    def __init__(self, sampler: TripletSampler, max_motion: float = 6.0, seed: int = 0) -> None:
        self.sampler = sampler
        self.max_motion = float(max_motion)
        self.seed = int(seed)

    def sample(self, step: int, batch_size: int, device: torch.device | str | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The synthetic batch of step `step`; the warps run on `device` (default: the CPU). The motion is drawn on
        the CPU either way, so a step's motion does not depend on the device."""
        _, mid, _, _ = self.sampler.sample(step, batch_size)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(step))
        n, _, h2, w2 = mid.shape
        v2 = _motion_fields(n, h2, w2, 2 * self.max_motion, gen)  # at the doubled size
        if device is not None:
            mid, v2 = mid.to(device), v2.to(device)
        f0, in0 = _warp(mid, v2)
        f2, in2 = _warp(mid, -v2)
        valid = (in0 & in2).float()
        pool = lambda t: F.avg_pool2d(t, 2)  # noqa: E731
        return pool(f0), pool(mid), pool(f2), pool(v2) / 2, (pool(valid) == 1).float()


def expected_displacement(weight: Tensor, alpha: Tensor, beta: Tensor, kernel_size: int, dilation: int) -> Tensor:
    """(B, 2, H, W): the kernel-weighted mean sampling displacement (row, col) of one AdaCoF direction.
    Tap t = k*K + l samples at row + k*d - pad + alpha_t, col + l*d - pad + beta_t (spec)."""
    pad = ((kernel_size - 1) * dilation) // 2
    base = torch.arange(kernel_size, dtype=weight.dtype, device=weight.device) * dilation - pad
    base_r = base.repeat_interleave(kernel_size).view(1, -1, 1, 1)
    base_c = base.repeat(kernel_size).view(1, -1, 1, 1)
    return torch.stack([(weight * (base_r + alpha)).sum(1), (weight * (base_c + beta)).sum(1)], 1)


def flow_loss(maps: KernelMaps, motion: Tensor, valid: Tensor, kernel_size: int, dilation: int) -> Tensor:
    """Mean Charbonnier distance (pixels) of both directions' expected displacement from the true motion
    (-v for frame0, +v for frame2), over valid pixels."""
    h, w = motion.shape[2:]
    d0 = expected_displacement(maps.weight1, maps.alpha1, maps.beta1, kernel_size, dilation)[:, :, :h, :w]
    d2 = expected_displacement(maps.weight2, maps.alpha2, maps.beta2, kernel_size, dilation)[:, :, :h, :w]
    err = torch.sqrt((d0 + motion) ** 2 + 1e-6) + torch.sqrt((d2 - motion) ** 2 + 1e-6)
    return (err * valid).sum() / (2 * valid.sum() * 2).clamp_min(1)
