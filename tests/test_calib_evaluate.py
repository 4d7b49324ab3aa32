"""calib.evaluate's ONNX Runtime runner, cheaply (the fast lane's test of the module; tests/test_calib.py runs the
whole INT8 evaluation): frames are reflect-padded to a multiple of 32 as the model pads them, run, and cropped back."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tests.test_output_rules import std_onnx


def test_padding_is_the_models_reflect_pad():
    """padded_nchw_pair against torch's reflect pad of the bottom and right edges up to 32 (131x203 -> 160x224), and
    no pad at all for a size that is a multiple of 32."""
    from calib.evaluate import padded_nchw_pair

    rng = np.random.default_rng(0)
    f0, f2 = rng.random((131, 203, 3), dtype=np.float32), rng.random((131, 203, 3), dtype=np.float32)
    x0, x2 = padded_nchw_pair(f0, f2)
    for x, f in ((x0, f0), (x2, f2)):
        want = F.pad(torch.from_numpy(f).permute(2, 0, 1)[None], (0, 21, 0, 29), mode="reflect").numpy()
        assert x.shape == (1, 3, 160, 224) and np.array_equal(x, want)
    y0, _ = padded_nchw_pair(f0[:128, :192], f2[:128, :192])
    assert np.array_equal(y0, f0[:128, :192].transpose(2, 0, 1)[None])


def test_runner_pads_runs_and_crops_back(tmp_path):
    """Runner on a graph computing the mean of its two frames: the (H, W, 3) output is (f0 + f2) / 2 at the frames'
    own odd size (the pad cropped away), on one ORT thread as asked."""
    from calib.evaluate import Runner

    rng = np.random.default_rng(1)
    f0, f2 = rng.random((37, 45, 3), dtype=np.float32), rng.random((37, 45, 3), dtype=np.float32)
    r = Runner(std_onnx(tmp_path / "mean.onnx"), threads=1)
    try:
        got = r(f0, f2)
    finally:
        r.close()
    assert r.threads == 1 and got.shape == (37, 45, 3)
    np.testing.assert_allclose(got, (f0 + f2) / 2, rtol=0, atol=1e-7)
