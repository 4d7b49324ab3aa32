"""The suite is hermetic: its export cache is a folder of this run's pytest temp dir (tests/conftest.py's
hermetic_cache; one for all the xdist workers), which the cache module and the subprocesses the tests start resolve
to, never ~/.cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import shared_root
from tests.helpers import REPO_ROOT


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
