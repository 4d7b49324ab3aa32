"""runtime.benchmark on CPU: real measurements of the torch backend (and ORT when its backend module exists) on tiny
frames; the numbers are checked for internal consistency (percentiles ordered, fps = batch / mean latency,
torch ratio 1)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from runtime.benchmark import main
from sfadacof.sizes import parse_size
from sfadacof.errors import UserError
from tests.helpers import seeded_checkpoint

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

HAVE_ORT_BACKEND = importlib.util.find_spec("runtime.backends.ort_backend") is not None


@pytest.fixture
def keep_torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # --threads sets it process-wide


def test_benchmark_torch_and_ort(tmp_path, capsys, keep_torch_threads):
    ckpt = seeded_checkpoint(tmp_path / "m.pth")
    out = tmp_path / "b.json"
    assert main(["--backends", "torch,ort", "--sizes", "64x64,96x64", "--batches", "1,2", "--iters", "3",
                 "--warmup", "1", "--threads", "1", "--checkpoint", str(ckpt), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    torch_rows = [r for r in rep["results"] if r["backend"] == "torch"]
    assert [(r["width"], r["height"], r["batch"]) for r in torch_rows] == [(64, 64, 1), (64, 64, 2), (96, 64, 1),
                                                                          (96, 64, 2)]
    for r in rep["results"]:
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["fps"] == pytest.approx(r["batch"] / (r["mean_ms"] / 1e3), rel=1e-9)
        assert r["peak_rss_mb"] > 50 and r["iters"] == 3
    assert all(r["vs_torch"] == 1.0 for r in torch_rows)
    if HAVE_ORT_BACKEND:
        assert {r["backend"] for r in rep["results"]} == {"torch", "ort"}
        assert all(r["vs_torch"] > 0 for r in rep["results"])
    else:
        assert rep["skipped"] and rep["skipped"][0].startswith("ort fp32")
    assert rep["environment"]["torch_threads"] == 1
    assert "x torch" in capsys.readouterr().out


def test_parse_size_errors():
    assert parse_size("960x540", "--sizes") == (960, 540)
    with pytest.raises(UserError):
        parse_size("960", "--sizes")
    with pytest.raises(UserError):
        parse_size("16x16", "--sizes")
