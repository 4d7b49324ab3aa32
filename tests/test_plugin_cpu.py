"""The C++ CPU kernel of the fused AdaCoF synthesis op (plugins/adacof_cpu.cpp via plugins.cpu_op) against
  * tests/naive_synthesis.py: a literal float64 loop transcription of the spec's formula on the
    replication-padded frame (independent of the kernel's folded-pad indexing and of sfadacof.synthesis);
  * sfadacof.synthesis.adacof_synthesis, the project's PyTorch reference op.

The library is built by plugins/ci_build.sh / `python -m plugins.build`; if none is found, a CPU-only build into a
temporary directory is made by conftest.py's cpu_op fixture (a few seconds), so the tests never silently skip for lack of a build.
"""

from __future__ import annotations

import numpy as np
import pytest

from plugins import _libs
from tests.naive_synthesis import naive_fused

# max |kernel - reference| <= REL_TOL * max(1, max |reference|)
REL_TOL = 1e-6


def make_inputs(rng, b, c, h, w, k, offset_scale, signed_weights=False, dtype=np.float32):
    """Frames in [0, 1]; weights softmax-normalised over taps (as the model's) or signed; offsets of both signs
    reaching offset_scale pixels (beyond the frame edge for the small sizes used here)."""
    frames = [rng.random((b, c, h, w)).astype(dtype) for _ in range(2)]
    maps = []
    for _ in range(2):
        logits = rng.normal(size=(b, k * k, h, w))
        if signed_weights:
            wgt = rng.uniform(-1.0, 1.0, size=(b, k * k, h, w))
        else:
            wgt = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        alpha = rng.uniform(-offset_scale, offset_scale, size=(b, k * k, h, w))
        beta = rng.uniform(-offset_scale, offset_scale, size=(b, k * k, h, w))
        maps += [wgt.astype(dtype), alpha.astype(dtype), beta.astype(dtype)]
    occ = rng.random((b, 1, h, w)).astype(dtype)
    return frames[0], frames[1], *maps, occ


def assert_close(out, ref, what):
    scale = max(1.0, float(np.max(np.abs(ref))))
    err = float(np.max(np.abs(out.astype(np.float64) - ref))) / scale
    assert err <= REL_TOL, f"{what}: max error {err:.3g} (relative to {scale:.3g}) > {REL_TOL}"
    return err


CASES = [
    # (B, C, H, W, K, d, offset_scale, signed_weights)
    pytest.param(2, 3, 7, 9, 5, 1, 12.0, False, id="K5d1-b2-7x9"),
    pytest.param(2, 3, 9, 5, 3, 2, 10.0, False, id="K3d2-b2-9x5"),
    pytest.param(2, 3, 11, 13, 5, 1, 3.0, True, id="K5d1-signedW-11x13"),
    pytest.param(1, 5, 5, 7, 3, 1, 6.0, False, id="K3d1-C5-two-channel-passes"),
    pytest.param(2, 1, 6, 4, 1, 1, 4.0, False, id="K1-even-size"),
    pytest.param(1, 3, 8, 10, 2, 2, 5.0, False, id="K2d2-even-K-even-product"),
    # rows of 8 pixels and more: the AVX2 path's 8-pixel steps and a scalar tail (where the CPU has AVX2)
    pytest.param(2, 3, 7, 21, 5, 1, 9.0, True, id="K5d1-b2-7x21-avx2-steps-and-tail"),
    pytest.param(1, 5, 6, 16, 3, 2, 7.0, False, id="K3d2-C5-6x16-avx2-steps-only"),
]


@pytest.mark.parametrize("b,c,h,w,k,d,scale,signed", CASES)
def test_cpu_kernel_matches_spec_loop(cpu_op, b, c, h, w, k, d, scale, signed):
    rng = np.random.default_rng(1000 * k + 10 * d + h)
    inputs = make_inputs(rng, b, c, h, w, k, scale, signed)
    out = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=k, dilation=d)
    assert out.shape == (b, c, h, w) and out.dtype == np.float32
    assert_close(out, naive_fused(*inputs, k, d), "CPU kernel vs spec loop")


def test_cpu_kernel_integer_and_huge_offsets(cpu_op):
    """Integer offsets (fa = 0), offsets just below/above integers of both signs and offsets far beyond the frame
    (every index clamps to the border; no int overflow)."""
    rng = np.random.default_rng(7)
    b, c, h, w, k, d = 2, 3, 6, 13, 5, 1  # 13 columns: one AVX2 step and a scalar tail
    inputs = list(make_inputs(rng, b, c, h, w, k, 4.0))
    special = np.array([0.0, 1.0, -1.0, 2.999999, -2.999999, 0.5, -0.5, 1e-7, -1e-7, 3e4, -3e4, 1e9, -1e9, 3e38,
                        -3e38], dtype=np.float32)
    for idx in (3, 4, 6, 7):  # alpha1, beta1, alpha2, beta2
        inputs[idx] = rng.choice(special, size=inputs[idx].shape).astype(np.float32)
    out = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=k, dilation=d)
    assert np.all(np.isfinite(out))
    assert_close(out, naive_fused(*inputs, k, d), "CPU kernel vs spec loop, special offsets")


def test_cpu_kernel_nan_offset_gives_nan_pixel(cpu_op):
    rng = np.random.default_rng(3)
    inputs = list(make_inputs(rng, 1, 3, 5, 10, 3, 2.0))
    inputs[3] = inputs[3].copy()
    inputs[3][0, 4, 2, 3] = np.nan  # alpha1 at pixel (2, 3): in an AVX2 step
    inputs[3][0, 4, 1, 9] = np.nan  # and at (1, 9): in the scalar tail
    out = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=3, dilation=1)
    assert np.all(np.isnan(out[0, :, 2, 3])) and np.all(np.isnan(out[0, :, 1, 9]))
    mask = np.ones(out.shape, dtype=bool)
    mask[0, :, 2, 3] = mask[0, :, 1, 9] = False
    assert np.all(np.isfinite(out[mask]))


def test_cpu_kernel_matches_pytorch_reference(cpu_op):
    torch = pytest.importorskip("torch")
    synthesis = pytest.importorskip("sfadacof.synthesis")
    rng = np.random.default_rng(11)
    for (b, c, h, w, k, d, scale) in [(2, 3, 9, 11, 5, 1, 14.0), (2, 3, 7, 9, 3, 2, 9.0), (1, 3, 32, 32, 11, 1, 20.0)]:
        inputs = make_inputs(rng, b, c, h, w, k, scale)
        out = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=k, dilation=d)
        t = [torch.from_numpy(x) for x in inputs]
        pad = torch.nn.ReplicationPad2d(((k - 1) * d) // 2)
        with torch.no_grad():
            o1 = synthesis.adacof_synthesis(pad(t[0]), t[2], t[3], t[4], d)
            o2 = synthesis.adacof_synthesis(pad(t[1]), t[5], t[6], t[7], d)
            ref = (t[8] * o1 + (1 - t[8]) * o2).double().numpy()
        assert_close(out, ref, f"CPU kernel vs sfadacof.synthesis (K={k}, d={d})")


def test_cpu_kernel_threads_are_bitwise_identical(cpu_op):
    rng = np.random.default_rng(5)
    inputs = make_inputs(rng, 2, 3, 17, 19, 5, 8.0)
    outs = [cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=5, dilation=1, num_threads=n) for n in (1, 2, 3, 0)]
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])


def test_cpu_kernel_avx2_path_is_bit_identical_to_scalar(cpu_op, monkeypatch):
    """Where the CPU has AVX2 the kernel steps 8 pixels at a time with gathers; it must give the scalar path's
    frames bit for bit (the same operations in the same order, no FMA), tails, NaN and huge offsets included."""
    if cpu_op.simd_path() != "avx2":
        pytest.skip(f"the kernel takes its {cpu_op.simd_path()} path on this CPU (no AVX2): nothing to compare")
    rng = np.random.default_rng(21)
    for (b, c, h, w, k, d, scale) in [(2, 3, 9, 45, 5, 1, 12.0), (1, 5, 7, 19, 3, 2, 6.0), (1, 3, 6, 8, 7, 1, 30.0)]:
        inputs = list(make_inputs(rng, b, c, h, w, k, scale, signed_weights=True))
        inputs[3] = inputs[3].copy()
        inputs[3][0, 0, 1, :5] = [np.nan, np.inf, -np.inf, 3e38, -1e9]
        fast = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=k, dilation=d, num_threads=2)
        monkeypatch.setenv("SFADACOF_CPU_SIMD", "0")  # read by the library at every call
        assert cpu_op.simd_path() == "scalar"
        scalar = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=k, dilation=d, num_threads=2)
        monkeypatch.delenv("SFADACOF_CPU_SIMD")
        assert np.isnan(fast).any() and np.array_equal(fast, scalar, equal_nan=True), (b, c, h, w, k, d)


@pytest.mark.parametrize("simd", ["default", "0"])
def test_cpu_kernel_in_two_steps_equals_the_fused_op(cpu_op, monkeypatch, simd):
    """Direction 1 alone, then direction 2 blended with it (what OpenVINO's two kernel nodes run): the fused op's
    frame bit for bit, on both paths (AVX2 where the CPU has it, and scalar), tails and two channel passes."""
    if simd == "0":
        monkeypatch.setenv("SFADACOF_CPU_SIMD", "0")
    rng = np.random.default_rng(33)
    for (b, c, h, w, k, d, scale) in [(2, 3, 7, 21, 5, 1, 9.0), (1, 5, 6, 11, 3, 2, 5.0)]:
        f0, f2, w1, a1, b1, w2, a2, b2, occ = make_inputs(rng, b, c, h, w, k, scale, signed_weights=True)
        fused = cpu_op.adacof_synthesis_cpu(f0, f2, w1, a1, b1, w2, a2, b2, occ, kernel_size=k, dilation=d)
        o1 = cpu_op.adacof_direction_cpu(f0, w1, a1, b1, k, d)
        two = cpu_op.adacof_direction_cpu(f2, w2, a2, b2, k, d, first=o1, occlusion=occ)
        assert np.array_equal(two, fused)
        # o1 alone is the spec's direction-1 sum: the fused op with V = 1 (to float32 rounding)
        assert_close(o1, naive_fused(f0, f2, w1, a1, b1, w2, a2, b2, np.ones_like(occ), k, d), "direction 1")
    with pytest.raises(ValueError, match="together"):
        cpu_op.adacof_direction_cpu(f0, w1, a1, b1, k, d, first=o1)


def test_cpu_op_never_modifies_inputs_and_accepts_any_layout(cpu_op):
    rng = np.random.default_rng(9)
    inputs = make_inputs(rng, 2, 3, 6, 8, 3, 5.0, dtype=np.float64)  # float64: converted copies
    before = [x.copy() for x in inputs]
    out64 = cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=3, dilation=1)
    for x, y in zip(inputs, before):
        assert np.array_equal(x, y)
    # Non-contiguous float32 views (transposed twice) give the same result as contiguous copies.
    views = [np.ascontiguousarray(x.astype(np.float32).transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2) for x in inputs]
    assert not views[0].flags.c_contiguous
    out_views = cpu_op.adacof_synthesis_cpu(*views, kernel_size=3, dilation=1)
    assert np.array_equal(out64, out_views)


def test_cpu_op_rejects_bad_arguments(cpu_op):
    rng = np.random.default_rng(1)
    inputs = make_inputs(rng, 1, 3, 5, 5, 3, 1.0)
    with pytest.raises(ValueError, match="must be even"):
        cpu_op.adacof_synthesis_cpu(*make_inputs(rng, 1, 3, 5, 5, 4, 1.0), kernel_size=4, dilation=1)
    with pytest.raises(ValueError, match="weight1 has shape"):
        cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=5, dilation=1)
    bad = list(inputs)
    bad[8] = bad[8][:, :, :4]
    with pytest.raises(ValueError, match="occlusion has shape"):
        cpu_op.adacof_synthesis_cpu(*bad, kernel_size=3, dilation=1)
    with pytest.raises(ValueError, match="4-D"):
        cpu_op.adacof_synthesis_cpu(inputs[0][0], *inputs[1:], kernel_size=3, dilation=1)


def test_cpu_op_empty_batch(cpu_op):
    rng = np.random.default_rng(2)
    inputs = make_inputs(rng, 0, 3, 4, 4, 3, 1.0)
    assert cpu_op.adacof_synthesis_cpu(*inputs, kernel_size=3, dilation=1).shape == (0, 3, 4, 4)


def test_missing_library_message_names_the_build_command(monkeypatch, tmp_path):
    monkeypatch.setattr(_libs, "search_dirs", lambda: [tmp_path])
    with pytest.raises(_libs.LibraryNotBuilt, match=r"python -m plugins\.build"):
        _libs.load_library("sfadacof_does_not_exist")
