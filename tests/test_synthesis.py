"""The PyTorch synthesis op against the naive transcription of the spec, and its hand-written gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sfadacof.synthesis import adacof_synthesis, adacof_synthesis_unpadded, kernel_pad
from tests.naive_synthesis import naive_adacof, replication_pad


def random_case(b: int, c: int, h: int, w: int, ks: int, dilation: int, max_offset: float, seed: int):
    """Frame F (b, c, h, w) and maps at (h, w); offsets uniform in +-max_offset so many taps leave the frame."""
    g = torch.Generator().manual_seed(seed)
    frame = torch.rand(b, c, h, w, generator=g)
    weight = torch.softmax(torch.randn(b, ks * ks, h, w, generator=g), dim=1)
    alpha = (torch.rand(b, ks * ks, h, w, generator=g) * 2 - 1) * max_offset
    beta = (torch.rand(b, ks * ks, h, w, generator=g) * 2 - 1) * max_offset
    return frame, weight, alpha, beta


CASES = [  # (b, c, h, w, K, d, max offset)
    (2, 3, 7, 9, 5, 1, 6.0),
    (2, 3, 8, 11, 3, 2, 9.0),
    (1, 2, 5, 6, 1, 1, 3.5),
]


@pytest.mark.parametrize("b,c,h,w,ks,d,off", CASES)
def test_op_matches_naive_transcription(b, c, h, w, ks, d, off):
    frame, weight, alpha, beta = random_case(b, c, h, w, ks, d, off, seed=ks * 10 + d)
    pad = kernel_pad(ks, d)
    padded = torch.from_numpy(replication_pad(frame.numpy(), pad))
    expected = naive_adacof(padded.double().numpy(), weight.double().numpy(), alpha.double().numpy(),
                            beta.double().numpy(), d)
    got = adacof_synthesis(padded, weight, alpha, beta, d)
    # fp32 op vs fp64 loop: products of values in [0, 1] summed over K*K taps; 1e-5 is ~100 ulps at 1.0.
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)
    # The unpadded form (what the model uses) is the same arithmetic on F with a shift.
    got_unpadded = adacof_synthesis_unpadded(frame, weight, alpha, beta, d)
    np.testing.assert_allclose(got_unpadded.numpy(), got.numpy(), rtol=0, atol=1e-6)


def test_negative_offsets_truncate_toward_zero_not_floor():
    """A -0.25 offset must interpolate between the tap and its +1 neighbour with fa = -0.25 (extrapolation),
    which a floor-based sampler would instead treat as 0.75 between the -1 and 0 neighbours."""
    frame = torch.arange(1.0, 6.0).view(1, 1, 1, 5).repeat(1, 1, 1, 1)  # one row: 1 2 3 4 5
    weight = torch.ones(1, 1, 1, 5)
    alpha = torch.zeros(1, 1, 1, 5)
    beta = torch.full((1, 1, 1, 5), -0.25)
    out = adacof_synthesis(frame, weight, alpha, beta, 1)[0, 0, 0]
    # j=2: E=0, fe=-0.25: F[2]*(1.25) + F[3]*(-0.25) = 3*1.25 - 4*0.25 = 2.75 (floor would give 2.75 too only by
    # coincidence of linearity inside the row) -> use the clamped last column where they differ:
    # j=4: c0 = 4, c1 = clamp(5) = 4: F[4]*1.25 - F[4]*0.25 = 5; floor: between F[3] and F[4] at 0.75 -> 4.75.
    assert out[2].item() == pytest.approx(2.75, abs=1e-6)
    assert out[4].item() == pytest.approx(5.0, abs=1e-6)
    # j=0: c0 = 0, c1 = 1 -> 1*1.25 - 2*0.25 = 0.75 (extrapolates below the frame's minimum).
    assert out[0].item() == pytest.approx(0.75, abs=1e-6)


def numeric_grad(fn, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    g = torch.zeros_like(x)
    flat = x.view(-1)
    for n in range(flat.numel()):
        old = flat[n].item()
        flat[n] = old + eps
        hi = fn().item()
        flat[n] = old - eps
        lo = fn().item()
        flat[n] = old
        g.view(-1)[n] = (hi - lo) / (2 * eps)
    return g


def test_gradients_match_spec_formula():
    """Analytic grads vs central differences in float64. Offsets are kept away from integers so a +-eps step
    never crosses a truncation boundary (where the op is discontinuous and the spec holds A, E constant)."""
    frame, weight, alpha, beta = random_case(1, 2, 4, 5, 3, 1, 2.5, seed=3)
    frame, weight = frame.double(), weight.double()
    alpha = alpha.double().trunc() + 0.37 * torch.sign(alpha.double())
    beta = beta.double().trunc() - 0.3 * torch.sign(beta.double())
    padded = torch.nn.functional.pad(frame, (1, 1, 1, 1), mode="replicate")
    probe = torch.randn(1, 2, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    weight.requires_grad_(True)
    alpha.requires_grad_(True)
    beta.requires_grad_(True)
    (adacof_synthesis(padded, weight, alpha, beta, 1) * probe).sum().backward()

    def loss():
        with torch.no_grad():
            return (adacof_synthesis(padded, weight, alpha, beta, 1) * probe).sum()

    for t in (weight, alpha, beta):
        np.testing.assert_allclose(t.grad.numpy(), numeric_grad(loss, t.data).numpy(), rtol=1e-6, atol=1e-7)


def test_shape_checks():
    frame, weight, alpha, beta = random_case(1, 3, 6, 6, 3, 1, 1.0, seed=0)
    with pytest.raises(ValueError):
        adacof_synthesis(frame, weight, alpha, beta, 1)  # frame not padded: maps would be 4x4
    with pytest.raises(ValueError):
        adacof_synthesis_unpadded(frame, weight[:, :5], alpha[:, :5], beta[:, :5], 1)  # 5 is not K*K
