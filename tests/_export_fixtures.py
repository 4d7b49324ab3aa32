"""Helpers for the export / ORT / parity tests: models with large offsets, real frames with real motion."""

from __future__ import annotations

import numpy as np
import torch

from sfadacof.models import AdaCoFNet

from ._runtime_fixtures import bikes_frames, crop

OFFSET_HEADS = ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2")


def large_motion_model(variant: str = "sf_adacof", seed: int = 0, kernel_size: int = 5,
                       dilation: int = 1) -> AdaCoFNet:
    """A seeded random model whose offset maps sit at +-3..8 px (sign and size drawn per tap channel) with a
    spatial spread of a pixel or two, so the synthesis reads far outside each tap, both ways, across edges, and
    offsets cross integers (where truncation and flooring differ)."""
    torch.manual_seed(seed)
    model = AdaCoFNet(variant, kernel_size, dilation).eval()
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name in OFFSET_HEADS:
            conv = getattr(model.get_kernel, name)[7]
            size = torch.rand(conv.bias.shape, generator=g) * 5.0 + 3.0
            sign = torch.where(torch.rand(conv.bias.shape, generator=g) < 0.5, -1.0, 1.0)
            conv.bias.copy_(size * sign)
            conv.weight.mul_(8.0)
    return model


def real_pair(width: int, height: int, batch: int = 1, x: int = 300, y: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """(batch, 3, H, W) float32 crops of bikes.mp4 frames 40 and 42 (two frames apart: real motion); batch item b
    is cropped 17*b pixels further right, so the items differ."""
    f = bikes_frames(3, 40)
    out0, out2 = [], []
    for b in range(batch):
        out0.append(crop(f[0], width, height, x + 17 * b, y).transpose(2, 0, 1))
        out2.append(crop(f[2], width, height, x + 17 * b, y).transpose(2, 0, 1))
    to = lambda xs: np.ascontiguousarray(np.stack(xs).astype(np.float32) / 255.0)  # noqa: E731
    return to(out0), to(out2)


def offset_range(model: AdaCoFNet, f0: np.ndarray, f2: np.ndarray) -> tuple[float, float]:
    """(min, max) over all four offset maps of the model on these frames (at the 32-padded size)."""
    from sfadacof.models import pad_to_multiple

    with torch.no_grad():
        m = model.estimate(pad_to_multiple(torch.from_numpy(f0)), pad_to_multiple(torch.from_numpy(f2)))
    offs = torch.cat([m.alpha1, m.beta1, m.alpha2, m.beta2], 1)
    return float(offs.min()), float(offs.max())


def torch_forward(model: AdaCoFNet, f0: np.ndarray, f2: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(f0), torch.from_numpy(f2)).numpy()
