"""Accuracy report against PyTorch: the statistics on real model outputs, thresholds, and both commands' exit codes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.accuracy import Thresholds, compare, violations
from runtime.accuracy import main as accuracy_main
from runtime.infer import main as infer_main
from tests.helpers import bikes_frames, crop, seeded_model, tree_digest

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def real_output() -> np.ndarray:
    f0, _, f2 = (crop(f, w=96, h=64) for f in bikes_frames())
    t = [torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (f0, f2)]
    with torch.no_grad():
        return seeded_model()(*t).numpy()


def test_compare_statistics_against_hand_computed(real_output):
    ref = real_output
    rng = np.random.default_rng(3)
    delta = rng.choice([-1.0, 1.0], size=ref.shape) * rng.uniform(0, 2e-3, size=ref.shape)
    delta.flat[17] = 2.5e-3
    out = (ref.astype(np.float64) + delta).astype(np.float32)
    s = compare(out, ref)
    d = out.astype(np.float64) - ref.astype(np.float64)
    assert s["max_abs"] == pytest.approx(np.abs(d).max(), rel=1e-12)
    assert s["max_abs"] == pytest.approx(2.5e-3, rel=1e-4)
    assert s["mean_abs"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
    mse = np.mean((np.clip(out, 0, 1).astype(np.float64) - np.clip(ref, 0, 1)) ** 2)
    assert s["psnr_vs_torch"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-9)
    assert 50 < s["psnr_vs_torch"] < 70
    # fp32 bound broken (2.5e-3 > 1e-3); the same output passes the fp16 bound of 45 dB
    assert violations(s, Thresholds.for_precision("fp32")) == ["max|Δ| 0.0025 > 0.001"]
    assert violations(s, Thresholds.for_precision("fp16")) == []
    assert violations(s, Thresholds.for_precision("fp16", min_psnr=80.0))[0].startswith("PSNR vs torch")
    assert compare(ref, ref)["psnr_vs_torch"] == math.inf and compare(ref, ref)["max_abs"] == 0.0
    nan = ref.copy()
    nan.flat[0] = np.nan
    assert violations(compare(nan, ref), Thresholds.for_precision("fp32"))  # NaN never passes


def test_default_thresholds():
    assert Thresholds.for_precision("fp32") == Thresholds("fp32", 1e-3, None)
    assert Thresholds.for_precision("fp16") == Thresholds("fp16", None, 45.0)
    assert Thresholds.for_precision("fp32", min_psnr=60) == Thresholds("fp32", 1e-3, 60.0)


def _pairs(tmp_path):
    f0, f1, f2 = (crop(f, w=96, h=64) for f in bikes_frames())
    d = tmp_path / "pairs" / "t"
    d.mkdir(parents=True)
    for n, a in zip(("im1.png", "im2.png", "im3.png"), (f0, f1, f2)):
        Image.fromarray(a).save(d / n)
    return tmp_path / "pairs"


@pytest.fixture(scope="module")
def ort_graph(ckpt_exports):
    """ckpt's standard-op graph (conftest.py: the default exporter's, once per session), run by ONNX Runtime: a
    backend that really differs from the PyTorch reference."""
    return ckpt_exports["onnx"]


def test_infer_check_ort_against_torch(tmp_path, ckpt, ort_graph, capsys):
    """--check on ONNX Runtime (another convolution library, another summation order): a real, small difference
    within the fp32 bound, reported per pair and overall; the input tree is left as it was."""
    pairs = _pairs(tmp_path)
    before = tree_digest(pairs)
    rep = tmp_path / "r.json"
    assert infer_main([str(pairs), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--backend", "ort",
                       "--onnx", str(ort_graph), "--check", "--report", str(rep)]) == 0
    r = json.loads(rep.read_text())
    c = r["pairs"][0]["check"]
    assert 0 < c["max_abs"] <= 1e-3 and c["passed"] and r["check"]["passed"], c
    assert "psnr" in r["pairs"][0] and "PSNR/torch" in capsys.readouterr().out
    assert tree_digest(pairs) == before


def test_accuracy_cli_exit_codes(tmp_path, ckpt, ort_graph, capsys):
    pairs = _pairs(tmp_path)
    before = tree_digest(pairs)
    argv = [str(pairs), "--backend", "ort", "--onnx", str(ort_graph), "--checkpoint", str(ckpt)]
    assert accuracy_main(argv) == 0
    assert "passed: 1 pair(s)" in capsys.readouterr().out
    # a bound that any output breaks: the command must say so and exit 1
    assert accuracy_main([*argv, "--max-abs", "-1"]) == 1
    assert "FAILED: 1 of 1 pair(s)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # accuracy without -o writes no frames
    assert tree_digest(pairs) == before  # inputs are never modified


def test_the_op_jumps_exactly_where_near_discontinuity_says():
    """The spec's formula (the naive loop, independent of sfadacof.synthesis): a K=1 tap on a real frame row, its
    vertical offset swept across -2, -1, 0, 1, 2. The output moves by a real step across -1 and -2 and by ~0
    across 0, 1, 2 -- and near_discontinuity flags exactly the offsets within the margin of -1 and -2."""
    from sfadacof.synthesis import near_discontinuity
    from tests.naive_synthesis import naive_adacof

    frame = bikes_frames(1)[0][100:108, 200:201, 0].astype(np.float64)[None, None, :, :] / 255  # (1, 1, 8, 1)
    ones = np.ones((1, 1, 8, 1))

    def sample(offset: float) -> float:
        """Output row 4 (taps at rows 2..6 stay inside the 8 rows for offsets in [-2, 2])."""
        out = naive_adacof(frame, ones, np.full((1, 1, 8, 1), offset), np.zeros((1, 1, 8, 1)), 1)
        return float(out[0, 0, 4, 0])

    eps = 1e-7
    steps = {n: abs(sample(n + eps) - sample(n - eps)) for n in (-2, -1, 0, 1, 2)}
    assert steps[-1] > 1e-3 and steps[-2] > 1e-3, steps
    assert max(steps[0], steps[1], steps[2]) < 1e-5, steps
    offsets = torch.tensor([-2 - 5e-5, -2 + 5e-5, -1 - 5e-5, -1 + 5e-5, -1 + 2e-4, -5e-5, 5e-5, 1 - 5e-5, 1 + 5e-5, 0.5])
    assert near_discontinuity(offsets, 1e-4).tolist() == [True, True, True, True, False, False, False, False, False,
                                                          False]


def test_compare_sets_pixels_at_discontinuities_apart(real_output):
    ref = real_output
    out = ref.copy()
    out[0, :, 5, 7] += 0.01  # a pixel whose offset sits at a discontinuity: differs by a jump
    out[0, 1, 9, 9] += 2e-4
    exempt = np.zeros((1, 1) + ref.shape[2:], dtype=bool)
    exempt[0, 0, 5, 7] = True
    s = compare(out, ref, exempt)
    assert s["near_discontinuity_pixels"] == 1
    assert s["max_abs_near_discontinuity"] == pytest.approx(0.01, rel=1e-4)
    assert s["max_abs"] == pytest.approx(2e-4, rel=1e-3)  # the rest of the frame
    assert violations(s, Thresholds.for_precision("fp32")) == []
    assert compare(out, ref)["max_abs"] == pytest.approx(0.01, rel=1e-4)  # without the mask the jump counts
    out[0, 0, 5, 7] = np.nan  # non-finite output fails even where the pixel is set apart
    assert violations(compare(out, ref, exempt), Thresholds.for_precision("fp32")) == ["1 non-finite value(s)"]


@pytest.mark.slow  # the shipped weights' default-exporter graph
def test_fp32_engines_pass_on_real_footage_with_only_discontinuity_pixels_set_apart(tmp_path, shipped_exports):
    """ORT fp32 on real bikes pairs with the shipped weights, where the plain 1e-3 bound failed (frames 20/22:
    0.0019 at a pixel whose offset sits at a discontinuity): the check passes, the pixels set apart are a small
    fraction, and every other pixel is within 1e-4 of PyTorch -- ten times tighter than the bound."""
    from runtime.accuracy import DISCONTINUITY_MARGIN, Checker
    from runtime.backends.ort_backend import OrtBackend

    frames = bikes_frames(3, start=20)
    x0, x2 = (np.ascontiguousarray(f.transpose(2, 0, 1)[None], dtype=np.float32) / 255 for f in (frames[0], frames[2]))
    checker = Checker(Thresholds.for_precision("fp32"))
    with OrtBackend(shipped_exports["onnx"]) as be:
        stats = checker.check(x0, x2, be.infer(x0, x2))
    checker.close()
    assert stats["passed"], stats
    assert stats["max_abs"] <= 1e-4
    assert 0 < stats["near_discontinuity_pixels"] < 0.01 * x0.shape[2] * x0.shape[3]
    assert DISCONTINUITY_MARGIN == 1e-4
