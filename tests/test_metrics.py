"""sfadacof.metrics against direct computations: PSNR from its definition, SSIM (Wang et al. 2004) as a windowed sum
written out over every valid position with numpy, no convolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sfadacof.metrics import psnr, ssim
from tests.helpers import bikes_frames


def _direct_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Mean over channels and 'valid' positions of the SSIM map, each local statistic a weighted sum over the
    position's 11x11 window (Gaussian, sigma 1.5, normalised), computed with sliding windows."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    maps = []
    for xc, yc in zip(x.astype(np.float64), y.astype(np.float64)):
        wx = np.lib.stride_tricks.sliding_window_view(xc, (11, 11))
        wy = np.lib.stride_tricks.sliding_window_view(yc, (11, 11))
        mx, my = (wx * w).sum((-1, -2)), (wy * w).sum((-1, -2))
        vx = (w * (wx - mx[..., None, None]) ** 2).sum((-1, -2))
        vy = (w * (wy - my[..., None, None]) ** 2).sum((-1, -2))
        cxy = (w * (wx - mx[..., None, None]) * (wy - my[..., None, None])).sum((-1, -2))
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(maps))


@pytest.mark.parametrize("shape", [(3, 40, 57), (1, 11, 11), (3, 64, 64)])
def test_ssim_equals_the_direct_windowed_sum(shape):
    f0, f2 = bikes_frames(2)[0], bikes_frames(3)[2]
    c, h, w = shape
    x = f0[100:100 + h, 200:200 + w, :c].transpose(2, 0, 1).astype(np.float64) / 255
    y = f2[100:100 + h, 200:200 + w, :c].transpose(2, 0, 1).astype(np.float64) / 255
    want = _direct_ssim(x, y)
    assert 0.2 < want < 0.999  # real, different frames: neither trivial case
    got = ssim(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    # the inputs go through float32 (what callers pass): differences are float32 rounding of the pixels, ~1e-8
    assert got == pytest.approx(want, abs=1e-6)
    assert ssim(torch.from_numpy(x), torch.from_numpy(x)) == pytest.approx(1.0, abs=1e-12)


def test_ssim_data_range_and_batches():
    f0, f2 = bikes_frames(3)[0], bikes_frames(3)[2]
    x = f0[:48, :80].transpose(2, 0, 1).astype(np.float64)
    y = f2[:48, :80].transpose(2, 0, 1).astype(np.float64)
    assert ssim(torch.from_numpy(x), torch.from_numpy(y), data_range=255.0) == pytest.approx(
        _direct_ssim(x, y, 255.0), abs=1e-9)
    both = torch.from_numpy(np.stack([x, x]) / 255)
    other = torch.from_numpy(np.stack([y, y]) / 255)
    assert ssim(both, other) == pytest.approx(_direct_ssim(x / 255, y / 255), abs=1e-9)


def test_psnr_from_its_definition():
    a = torch.zeros(3, 4, 4)
    b = a.clone()
    b[0, 0, 0] = 0.5  # mse = 0.25 / 48
    assert psnr(b, a) == pytest.approx(10 * math.log10(48 / 0.25), abs=1e-9)
    assert psnr(a, a) == math.inf
