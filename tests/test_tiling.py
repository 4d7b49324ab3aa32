"""Memory budget: a frame one interpolation of which would need more than the budget is refused in one line from its
header, before decoding (so before any large allocation); runtime.backends.tiled's tile geometry and plan."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from runtime.backends import tiled
from sfadacof.errors import UserError
from sfadacof.images import MEMORY_BUDGET_ENV, estimated_gb, memory_budget_bytes
from tests.helpers import REPO_ROOT


def _png_header_only(path, w, h):
    """A valid PNG signature + IHDR declaring w x h (the pixel data is never reached: refused from the header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_6000x4000_pair_is_refused_in_one_line_within_a_10_gb_budget(tmp_path):
    """The issue's case: with --max-pixels raised past it and --memory-budget 10, a 6000x4000 pair (estimated 39 GB:
    0.7 GB + 1.6 GB per megapixel, the measured ORT figure) is refused in one line naming the file, exit 2, and the
    child process never grows past what importing the runtime costs (< 1.5 GB peak RSS)."""
    pair = tmp_path / "pairs" / "big"
    pair.mkdir(parents=True)
    for name in ("im1.png", "im3.png"):
        _png_header_only(pair / name, 6000, 4000)
    # a wrapper process runs the command and reports its child's peak RSS (RUSAGE_CHILDREN of a fresh process)
    wrapper = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "runtime.infer", str(tmp_path / "pairs"),
                           "-o", str(tmp_path / "o"), "--max-pixels", "30000000", "--backend", "torch",
                           "--memory-budget", "10"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != MEMORY_BUDGET_ENV})
    peak_kb = int(proc.stdout.split("PEAK_KB")[1])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "im1.png: 6000x4000 needs roughly 39 GB" in lines[0] and "budget of 10.0 GB" in lines[0]
    assert peak_kb < 1.5e6  # KB: nothing frame-sized was allocated (one 6000x4000 float32 frame alone is 288 MB)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _pair_of_size(root, w, h):
    rng = np.random.default_rng(0)
    pair = root / "p"
    pair.mkdir(parents=True)
    from PIL import Image

    for name in ("im1.png", "im3.png"):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(pair / name)
    return root


def test_memory_budget_flag_overrides_the_environment(tmp_path):
    """--memory-budget wins over $SFADACOF_MEMORY_BUDGET_GB: a 64x64 pair (estimated 0.71 GB) is refused in one line
    under a 0.5 GB environment budget, and runs under the same environment with --memory-budget 4."""
    pairs = _pair_of_size(tmp_path / "pairs", 64, 64)
    env = {**os.environ, MEMORY_BUDGET_ENV: "0.5"}
    cmd = [sys.executable, "-m", "runtime.infer", str(pairs), "--backend", "torch"]
    refused = subprocess.run([*cmd, "-o", str(tmp_path / "a")], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=300, env=env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: {pairs / 'p' / 'im1.png'}: 64x64 needs roughly 1 GB of memory, over the memory budget of 0.5 GB "
        f"(--memory-budget GB or {MEMORY_BUDGET_ENV}; default: half the memory available)"]
    ran = subprocess.run([*cmd, "-o", str(tmp_path / "b"), "--memory-budget", "4"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "b" / "p.png").is_file()
    bad = subprocess.run([*cmd, "-o", str(tmp_path / "c"), "--memory-budget", "0"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--memory-budget" in bad.stderr and "must be > 0" in bad.stderr


def test_memory_budget_env_and_default(monkeypatch):
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "2.5")
    assert memory_budget_bytes() == 2.5e9
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "zero")
    with pytest.raises(UserError, match=MEMORY_BUDGET_ENV):
        memory_budget_bytes()
    monkeypatch.delenv(MEMORY_BUDGET_ENV)
    avail = next(int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo") if ln.startswith("MemAvailable:"))
    # half of what is available, at least 2 GB (MemAvailable moves between the two reads: 5% slack)
    assert memory_budget_bytes() == pytest.approx(max(avail / 2, 2e9), rel=0.05)
    assert estimated_gb(1920 * 1080) == pytest.approx(0.7 + 1.6 * 2.0736)


@pytest.mark.parametrize("n,tile,margin", [(1080, 256, 128), (1920, 320, 96), (100, 64, 32), (33, 64, 64)])
def test_tile_spans_cover_the_axis_once_with_aligned_pieces(n, tile, margin):
    spans = tiled.tile_spans(n, tile, margin)
    covered = np.zeros(n, int)
    for p0, p1, c0, c1 in spans:
        covered[c0:c1] += 1
        assert p0 % tiled.ALIGN == 0 and c0 % tiled.ALIGN == 0  # pools see the whole frame's 32x32 blocks
        assert p0 == max(0, c0 - margin) and p1 == min(n, c1 + margin)
        assert (p1 - p0) % tiled.ALIGN == 0 or p1 == n  # only a piece at the frame's edge is padded
    assert (covered == 1).all()


def test_plan_refuses_what_cannot_fit_even_tiled_and_tiles_within_the_budget():
    with pytest.raises(UserError, match=r"6000x4000 frames need about .* GB even in tiles"):
        tiled.plan(4000, 6000, budget_bytes=1e9)
    p = tiled.plan(4000, 6000, budget_bytes=10e9)
    assert p.tile is not None and p.tile % tiled.ALIGN == 0 and p.estimated_bytes <= 10e9
    assert tiled.plan(256, 448, budget_bytes=10e9).tile is None  # small frames run whole


def test_tiled_backend_stitches_cores_of_the_inner_backend():
    """With a position-independent inner backend (per-pixel mean of the two frames) the stitched result equals the
    whole-frame result exactly: every output pixel comes from exactly one core, at the right place."""
    from runtime.backends.base import Backend

    class Mean(Backend):
        name = "mean"

        def infer(self, a, b):
            return (a + b) / 2

    rng = np.random.default_rng(0)
    f0, f2 = (rng.random((1, 3, 200, 330), dtype=np.float32) for _ in range(2))
    got = tiled.TiledBackend(Mean(), tile=64, margin=32).infer(f0, f2)
    np.testing.assert_array_equal(got, (f0 + f2) / 2)
