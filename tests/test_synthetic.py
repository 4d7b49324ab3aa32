"""sfadacof.synthetic: synthetic-motion triplets agree with their stated motion under the spec's op, the expected
displacement matches a naive loop over taps, the flow loss is zero at the truth, and draws are seeded by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfadacof.data import TripletSampler, open_source
from sfadacof.metrics import psnr
from sfadacof.models import KernelMaps
from sfadacof.synthesis import adacof_synthesis_unpadded
from sfadacof.synthetic import SyntheticMotionSampler, expected_displacement, flow_loss
from tests.helpers import CARPHONE


@pytest.fixture(scope="module")
def sampler() -> SyntheticMotionSampler:
    src = open_source(f"{CARPHONE}@0:20", (1,))
    return SyntheticMotionSampler(TripletSampler([src], (128, 128), seed=5), max_motion=4.0, seed=2)


def _masked_psnr(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> float:
    m = valid.bool().expand_as(a)
    return float(psnr(a[m].view(1, -1), b[m].view(1, -1)))


def test_frames_sampled_along_the_stated_motion_rebuild_the_middle_frame(sampler):
    """Independent of the generator's code path: the spec's AdaCoF op with one centre tap, offset by -v into frame0
    and +v into frame2, must reproduce frame1 far better than no motion or the opposite motion would."""
    f0, f1, f2, v, valid = sampler.sample(11, 4)
    assert f0.shape == f1.shape == f2.shape == (4, 3, 64, 64) and v.shape == (4, 2, 64, 64)
    assert valid.mean() > 0.6
    k2 = 25
    w = torch.zeros(4, k2, 64, 64)
    w[:, 12] = 1.0
    for frame, sign in ((f0, -1.0), (f2, 1.0)):
        a = (sign * v[:, 0:1]).expand(4, k2, 64, 64).contiguous()
        b = (sign * v[:, 1:2]).expand(4, k2, 64, 64).contiguous()
        oracle = _masked_psnr(adacof_synthesis_unpadded(frame, w, a, b, 1), f1, valid)
        still = _masked_psnr(frame, f1, valid)
        opposite = _masked_psnr(adacof_synthesis_unpadded(frame, w, -a, -b, 1), f1, valid)
        # Margins, not exactness: the warps are bicubic at 2x then pooled while the op is bilinear, which on
        # carphone's fine texture caps the oracle near 30 dB.
        assert oracle > still + 2.0 and still > opposite + 2.0, (oracle, still, opposite)


def test_motion_is_smooth_bounded_and_seeded_by_step(sampler):
    a = sampler.sample(3, 2)
    b = sampler.sample(3, 2)
    c = sampler.sample(4, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[3], c[3])
    v = a[3]
    # Global magnitude <= max_motion, plus a local field of at most half of it per component (bicubic overshoot
    # allowance 20%).
    assert float(v.abs().max()) <= 4.0 * (1 + 0.5 * 1.2) + 1e-4
    assert float((v[:, :, 1:] - v[:, :, :-1]).abs().max()) < 0.5  # smooth: < 0.5 px change between neighbours


@pytest.mark.parametrize("k,d", [(5, 1), (3, 2)])
def test_expected_displacement_matches_a_naive_loop_over_taps(k, d):
    g = torch.Generator().manual_seed(k * 10 + d)
    w = torch.softmax(torch.randn(2, k * k, 3, 4, generator=g), 1)
    al = torch.randn(2, k * k, 3, 4, generator=g) * 3
    be = torch.randn(2, k * k, 3, 4, generator=g) * 3
    pad = (k - 1) * d // 2
    ref = np.zeros((2, 2, 3, 4))
    wn, an, bn = w.double().numpy(), al.double().numpy(), be.double().numpy()
    for i in range(k):
        for j in range(k):
            t = i * k + j
            ref[:, 0] += wn[:, t] * (i * d - pad + an[:, t])
            ref[:, 1] += wn[:, t] * (j * d - pad + bn[:, t])
    got = expected_displacement(w, al, be, k, d).double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_flow_loss_is_zero_at_the_truth_and_the_mean_error_elsewhere():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 2, 8, 8, generator=g) * 2
    valid = torch.ones(2, 1, 8, 8)
    valid[:, :, :2] = 0
    w = torch.softmax(torch.randn(2, 25, 8, 8, generator=g), 1)
    pad_r = expected_displacement(w, torch.zeros(2, 25, 8, 8), torch.zeros(2, 25, 8, 8), 5, 1)

    def maps_with(d0: torch.Tensor, d2: torch.Tensor) -> KernelMaps:
        # Offsets equal on every tap shift the expected displacement by exactly that offset (weights sum to 1).
        off = lambda d, c: (d[:, c:c + 1] - pad_r[:, c:c + 1]).expand(2, 25, 8, 8)  # noqa: E731
        return KernelMaps(w, off(d0, 0), off(d0, 1), w, off(d2, 0), off(d2, 1), torch.ones(2, 1, 8, 8))

    assert flow_loss(maps_with(-v, v), v, valid, 5, 1).item() == pytest.approx(1e-3, abs=1e-5)  # sqrt(eps)
    zero = torch.zeros_like(v)
    m = valid.bool().expand_as(v)
    expect = float(torch.sqrt(v[m] ** 2 + 1e-6).mean())
    assert flow_loss(maps_with(zero, zero), v, valid, 5, 1).item() == pytest.approx(expect, rel=1e-4)
