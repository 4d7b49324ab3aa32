"""Image quality metrics on (B, C, H, W) or (C, H, W) float tensors in [0, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _batched(x: Tensor) -> Tensor:
    return x.unsqueeze(0) if x.dim() == 3 else x


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB over the whole tensor (inf when identical)."""
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(data_range * data_range / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> Tensor:
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma * sigma))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03), per channel, 'valid' region."""
    x, y = _batched(pred).double(), _batched(target).double()
    c = x.shape[1]
    win = _gaussian_window().to(x.device).expand(c, 1, 11, 11).contiguous()
    mu_x = F.conv2d(x, win, groups=c)
    mu_y = F.conv2d(y, win, groups=c)
    sxx = F.conv2d(x * x, win, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, win, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, win, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.mean().item()
