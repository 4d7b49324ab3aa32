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


def test_frame_averaging_graph_fails_the_check_by_its_real_difference(tmp_path, ckpt, capsys):
    """A graph that is not the model -- frame1 = (frame0 + frame2) / 2, with an export's I/O and metadata -- run by
    ONNX Runtime against the PyTorch model (the session's `ckpt`; no export): exit 1, and the report's max|Δ| is the
    difference between averaging and the model, computed here from the model called directly."""
    import numpy as np
    import onnx
    import onnx.helper as oh
    import torch

    io = lambda n: oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])  # noqa: E731
    half = oh.make_tensor("half", onnx.TensorProto.FLOAT, [], [0.5])
    nodes = [oh.make_node("Add", ["frame0", "frame2"], ["s"]), oh.make_node("Mul", ["s", "half"], ["frame1"])]
    m = oh.make_model(oh.make_graph(nodes, "average", [io("frame0"), io("frame2")], [io("frame1")], [half]),
                      opset_imports=[oh.make_opsetid("", 17)])
    oh.set_model_props(m, {"variant": "sf_adacof", "kernel_size": "5", "dilation": "1"})
    graph = tmp_path / "average.onnx"
    onnx.save(m, str(graph))
    f0, _, f2 = (crop(f, w=96, h=64) for f in bikes_frames())
    pairs = tmp_path / "pairs" / "t"
    pairs.mkdir(parents=True)
    Image.fromarray(f0).save(pairs / "im1.png")
    Image.fromarray(f2).save(pairs / "im3.png")
    rep = tmp_path / "r.json"
    assert accuracy_main([str(tmp_path / "pairs"), "--backend", "ort", "--onnx", str(graph), "--checkpoint", str(ckpt),
                          "--report", str(rep)]) == 1
    assert "FAILED: 1 of 1 pair(s)" in capsys.readouterr().err
    x0, x2 = (torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (f0, f2))
    with torch.no_grad():
        want = seeded_model()(x0, x2).numpy()
    average = ((x0 + x2) / 2).numpy()
    stats = json.loads(rep.read_text())["pairs"][0]["check"]
    assert not stats["passed"] and stats["max_abs"] > 1e-2
    assert stats["max_abs"] == pytest.approx(float(np.abs(average - want).max()), abs=1e-4)

