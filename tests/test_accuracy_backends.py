"""`runtime.accuracy` and `runtime.infer --check` on backends other than the reference itself: ONNX Runtime, which
really differs from PyTorch (another convolution library, another summation order) and must pass the fp32 bound, and
a wrong model run by the same backend (the graph of another checkpoint), which must fail it."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from runtime.accuracy import main as accuracy_main
from runtime.infer import main as infer_main
from tests.helpers import bikes_frames, crop, seeded_checkpoint, seeded_model

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ckpt, ckpt_exports):
    """`ckpt` (its default-exporter graph is in the session cache: ckpt_exports), and the graph of another checkpoint
    (TorchScript exporter, the fastest: here it only has to be the wrong model)."""
    from export.core import export_model
    from sfadacof.checkpoint import file_sha256

    d = tmp_path_factory.mktemp("acc")
    other = seeded_checkpoint(d / "other.pth", seed=1)
    pairs = d / "pairs" / "t"
    pairs.mkdir(parents=True)
    for n, a in zip(("im1.png", "im2.png", "im3.png"), (crop(f, w=96, h=64) for f in bikes_frames())):
        Image.fromarray(a).save(pairs / n)
    wrong_graph = d / "other.onnx"
    export_model(seeded_model(seed=1), wrong_graph, exporter="torchscript", checkpoint_sha256=file_sha256(other))
    return {"dir": d, "ckpt": ckpt, "pairs": d / "pairs", "wrong_graph": wrong_graph}


def test_ort_really_differs_and_passes(setup, tmp_path, capsys):
    rep = tmp_path / "r.json"
    assert accuracy_main([str(setup["pairs"]), "--backend", "ort", "--checkpoint", str(setup["ckpt"]),
                          "--report", str(rep)]) == 0
    stats = json.loads(rep.read_text())["pairs"][0]["check"]
    # not the reference itself: a real, small difference
    assert 0 < stats["max_abs"] <= 1e-3, stats
    assert "passed" in capsys.readouterr().out


def test_wrong_model_fails_the_check(setup, tmp_path, capsys):
    argv = [str(setup["pairs"]), "--backend", "ort", "--onnx", str(setup["wrong_graph"]), "--checkpoint",
            str(setup["ckpt"])]
    assert accuracy_main(argv) == 1
    assert "FAILED: 1 of 1 pair(s)" in capsys.readouterr().err
    rep = tmp_path / "r.json"
    assert infer_main([*argv[:1], "-o", str(tmp_path / "o"), *argv[1:], "--check", "--report", str(rep)]) == 1
    r = json.loads(rep.read_text())
    assert not r["check"]["passed"] and r["pairs"][0]["check"]["max_abs"] > 1e-2
    assert (tmp_path / "o" / "t.png").is_file()  # the frames are still written; the exit says the check failed
