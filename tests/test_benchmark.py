"""runtime.benchmark on CPU: real measurements of the torch and ORT backends on tiny frames; the numbers are checked for internal consistency (percentiles ordered, fps = batch / mean latency,
torch ratio 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.benchmark import main
from sfadacof.sizes import parse_size
from sfadacof.errors import UserError

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

@pytest.fixture
def keep_torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # --threads sets it process-wide


def test_benchmark_torch_and_ort(tmp_path, capsys, ckpt, ckpt_exports):
    """--backends ort: torch fp32 runs too, said to be the baseline; every configuration and round runs in its own
    process, rounds interleaved, so the baseline's time cannot depend on which backend ran before it (issue 27:
    eager PyTorch 13.3 s a frame alone, 36 s right after OpenVINO in the same process)."""
    out = tmp_path / "b.json"  # ckpt's graphs are in the session cache (conftest.py): no export in the rounds
    assert main(["--backends", "ort", "--sizes", "64x64,96x64", "--batches", "1,2", "--iters", "3", "--rounds", "2",
                 "--warmup", "1", "--threads", "1", "--checkpoint", str(ckpt), "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "torch fp32 runs too: the baseline" in captured.err
    rep = json.loads(out.read_text())
    # the structure that rules out the interference: a fresh process per configuration and round, interleaved
    assert [(s["round"], s["backend"]) for s in rep["schedule"]] == [(1, "torch"), (1, "ort"), (2, "torch"),
                                                                      (2, "ort")]
    pids = [s["pid"] for s in rep["schedule"]]
    assert len(set(pids)) == 4 and os.getpid() not in pids
    torch_rows = [r for r in rep["results"] if r["backend"] == "torch"]
    assert [(r["width"], r["height"], r["batch"]) for r in torch_rows] == [(64, 64, 1), (64, 64, 2), (96, 64, 1),
                                                                          (96, 64, 2)]
    for r in rep["results"]:
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["fps"] == pytest.approx(r["batch"] / (r["mean_ms"] / 1e3), rel=1e-9)
        assert r["peak_rss_mb"] > 50 and r["iters"] == 3
        assert [x["round"] for x in r["rounds"]] == [1, 2] and r["mean_ms"] == min(x["mean_ms"] for x in r["rounds"])
        assert {x["pid"] for x in r["rounds"]} == {s["pid"] for s in rep["schedule"] if s["backend"] == r["backend"]}
    assert all(r["vs_torch"] == 1.0 for r in torch_rows)
    assert [(r["width"], r["height"], r["batch"]) for r in rep["results"] if r["backend"] == "ort"] == \
        [(64, 64, 1), (64, 64, 2), (96, 64, 1), (96, 64, 2)]  # ORT is part of the package: it must have run
    assert all(r["vs_torch"] > 0 for r in rep["results"])
    assert rep["environment"]["torch_threads"] == 1
    assert "x torch" in captured.out
    # a line per configuration, before its process, with the count done so far (issue 25: nothing for minutes)
    nows = [line for line in captured.err.splitlines() if "; now round" in line]
    assert [line.split("; now ")[1] for line in nows] == [
        f"round {r}/2: {b} fp32 in a fresh process" for r in (1, 2) for b in ("torch", "ort")]
    assert [line.split(",")[0] for line in nows] == [f"benchmark: {i}/4 runs" for i in range(4)]
    assert_arithmetic(rep, ckpt)


def _peak_fp32_per_core_ghz() -> float:
    """The fp32 FMA peak of one core, GFLOP/s, from the CPU's own flags and clock: 2 FMA units x vector lanes x 2
    FLOP per cycle (AVX-512: 16 lanes, AVX2: 8) x the clock (cpufreq's max where the kernel has it, else cpu MHz)."""
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(ln for ln in text.splitlines() if ln.startswith("flags")).split(":", 1)[1].split())
    lanes = 16 if "avx512f" in flags else 8
    sysfs = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    ghz = int(sysfs.read_text()) / 1e6 if sysfs.is_file() else \
        float(next(ln for ln in text.splitlines() if ln.startswith("cpu MHz")).split(":")[1]) / 1e3
    return 2 * lanes * 2 * ghz


def assert_arithmetic(rep: dict, ckpt) -> None:
    """Issue 26: each row's GFLOP is PyTorch's own FLOP count of the model at that size and batch
    (FlopCounterMode), its GFLOP/s that over the mean latency, and its % of peak that over the fp32 FMA peak of the
    cores it used."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sfadacof.checkpoint import load_checkpoint

    if not Path("/proc/cpuinfo").is_file() or os.environ.get("ONEDNN_MAX_CPU_ISA"):
        return
    model = load_checkpoint(ckpt).model.eval()
    per_core = _peak_fp32_per_core_ghz()
    flops: dict[tuple[int, int, int], int] = {}  # counted once per shape: every backend's row of it has the same
    for r in rep["results"]:
        shape = (r["batch"], r["height"], r["width"])
        if shape not in flops:
            x = torch.rand(r["batch"], 3, r["height"], r["width"])
            with torch.no_grad(), FlopCounterMode(display=False) as fc:
                model(x, x.clone())
            flops[shape] = fc.get_total_flops()
        assert r["gflop"] == pytest.approx(flops[shape] / 1e9, rel=1e-12)
        assert r["gflops"] == pytest.approx(r["gflop"] / (r["mean_ms"] / 1e3), rel=1e-9)
        cores = 1 if r["backend"] == "torch" else min(r["describe"]["threads"], len(os.sched_getaffinity(0)))
        assert r["peak_gflops"] == pytest.approx(per_core * cores, rel=1e-9)
        assert r["fraction_of_peak"] == pytest.approx(r["gflops"] / r["peak_gflops"], rel=1e-9)
    assert rep["environment"]["cpu"]["model"] and "MACs" in rep["environment"]["flops"]


def test_no_baseline_runs_only_what_was_asked(tmp_path, capsys, ckpt, ckpt_exports):
    out = tmp_path / "b.json"
    assert main(["--backends", "ort", "--no-baseline", "--sizes", "64x64", "--iters", "1", "--rounds", "1",
                 "--warmup", "0", "--threads", "1", "--checkpoint", str(ckpt), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert [s["backend"] for s in rep["schedule"]] == ["ort"] and {r["backend"] for r in rep["results"]} == {"ort"}
    assert all(r["vs_torch"] is None for r in rep["results"]) and "baseline" not in capsys.readouterr().err


def test_default_is_the_quick_look_and_full_the_matrix():
    """No flags: one size, few runs (issue 25: the old default matrix ran 51 minutes on a loaded 2-core machine);
    --full: the matrix that was the default; a flag given explicitly wins over either."""
    from runtime.benchmark import apply_preset, build_parser

    quick = apply_preset(build_parser().parse_args([]))
    assert (quick.sizes, quick.batches, quick.warmup, quick.iters, quick.rounds) == ("256x256", "1", 1, 3, 2)
    full = apply_preset(build_parser().parse_args(["--full"]))
    assert (full.sizes, full.batches, full.warmup, full.iters, full.rounds) == ("256x256,960x540", "1", 2, 10, 2)
    mixed = apply_preset(build_parser().parse_args(["--full", "--iters", "4", "--sizes", "64x64"]))
    assert (mixed.sizes, mixed.iters, mixed.warmup) == ("64x64", 4, 2)


def test_parse_size_errors():
    assert parse_size("960x540", "--sizes") == (960, 540)
    with pytest.raises(UserError):
        parse_size("960", "--sizes")
    with pytest.raises(UserError):
        parse_size("16x16", "--sizes")
