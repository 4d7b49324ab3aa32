"""The suite is hermetic: its export cache is a folder of this run's pytest temp dir (tests/conftest.py's
hermetic_cache; one for all the xdist workers), which the cache module and the subprocesses the tests start resolve
to, never ~/.cache; and the user-cache root that libraries write to (XDG_CACHE_HOME: ONNX Runtime's telemetry store)
is one of this run's temp folders too, never the home's ~/.cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_root
from tests.helpers import REPO_ROOT, write_bikes_pair


def test_the_export_cache_is_this_sessions_temp_dir(tmp_path_factory):
    from export import cache
    from runtime import engine_cache

    base = shared_root(tmp_path_factory).resolve()
    env = Path(os.environ["SFADACOF_CACHE"]).resolve()
    assert env.is_relative_to(base), f"SFADACOF_CACHE={env} is not under the pytest temp dir {base}"
    assert cache.cache_dir().resolve() == env / "onnx"
    assert engine_cache.cache_root().resolve().is_relative_to(env)
    assert not cache.cache_dir().resolve().is_relative_to(Path.home() / ".cache")


def test_subprocesses_resolve_the_same_cache(tmp_path_factory):
    code = "from export import cache; print(cache.cache_dir().resolve())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == Path(os.environ["SFADACOF_CACHE"]).resolve() / "onnx"
    assert Path(out.stdout.strip()).is_relative_to(shared_root(tmp_path_factory).resolve())


@pytest.mark.slow  # a real command on ONNX Runtime (a process: 3-5 s)
def test_a_real_command_writes_nothing_under_the_home_cache(tmp_path, tmp_path_factory, ckpt, ckpt_exports):
    """runtime.infer on ONNX Runtime (which keeps a telemetry database under the user's cache root on every session
    it creates), run with a home of the test's own: it runs, and leaves nothing in that home -- the run's
    XDG_CACHE_HOME is under the pytest temp dir (conftest.py), inherited by every command a test starts."""
    xdg = Path(os.environ["XDG_CACHE_HOME"]).resolve()
    assert xdg.is_relative_to(tmp_path_factory.getbasetemp().parent.resolve()), xdg
    home = tmp_path / "home"
    home.mkdir()
    pairs, out = write_bikes_pair(tmp_path / "pairs" / "p0", 64).parent, tmp_path / "out"
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "runtime.infer", str(pairs), "-o", str(out), "--checkpoint", str(ckpt),
                        "--backend", "ort"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [p.name for p in out.glob("*.png")] == ["p0.png"]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
