"""The install builds what it needs: setup.py's CMake step (what `pip install .` / `pip install -e .` run) puts the
C++ CPU kernel into the `plugins` package, goes on without it when there is no compiler, and the runtime then falls
back to the standard-op graph, saying so once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from plugins import _libs
from plugins.onnx_node import OP_TYPE
from tests.helpers import REPO_ROOT


def _build_ext(tmp_path, **env):
    """setup.py's build_ext, as pip's wheel build runs it, into tmp_path (not the source tree)."""
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
           "--build-temp", str(tmp_path / "temp")]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SFADACOF_WITH_CUDA": "0", **env})


@pytest.mark.slow  # compiles the kernel
@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None, reason="needs cmake and c++")
def test_build_ext_puts_the_cpu_kernel_into_the_package(tmp_path):
    proc = _build_ext(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lib = tmp_path / "lib" / "plugins" / _libs.library_filename(_libs.CPU_LIBRARY)
    assert lib.is_file()
    summary = (tmp_path / "lib" / "plugins" / "sfadacof_build_summary.txt").read_text()
    assert "built: sfadacof_cpu" in summary and "skipped: CUDA kernels" in summary
    # the built library is the kernel the loaders expect (plugins.cpu_op checks this ABI version)
    import ctypes

    from plugins import cpu_op

    loaded = ctypes.CDLL(str(lib))
    assert hasattr(loaded, "sfadacof_cpu_synthesis_f32")
    assert loaded.sfadacof_cpu_abi_version() == cpu_op.ABI_VERSION


def test_build_ext_without_a_compiler_goes_on_and_says_why(tmp_path):
    proc = _build_ext(tmp_path, CXX=str(tmp_path / "no-such-compiler"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NOT built" in proc.stderr and "standard-op graph" in proc.stderr
    assert not (tmp_path / "lib" / "plugins" / _libs.library_filename(_libs.CPU_LIBRARY)).exists()


@pytest.mark.slow  # an export, an ORT session and a forward: ~3.5 s of CPU
def test_without_the_kernel_library_the_export_is_standard_ops_and_runs(tmp_path, monkeypatch, capsys, ckpt,
                                                                        single_torch_thread):
    """No library anywhere the loaders look: the cached export is the standard-op graph (no custom node), the note
    comes once for two exports, and ONNX Runtime's output equals the PyTorch model's within 1e-4 (fp32 convolutions
    in another library, see README's tolerances). The TorchScript exporter (seconds): the fallback picks the form,
    whichever exporter traces it."""
    import torch

    from export import cache
    from runtime.backends.ort_backend import OrtBackend
    from sfadacof.checkpoint import load_checkpoint

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(_libs, "search_dirs", lambda: [empty])
    monkeypatch.setattr(cache, "_FALLBACK_SAID", False)
    paths = [cache.onnx_for_checkpoint(ckpt, exporter="torchscript", cache_dir_override=tmp_path / "c")
             for _ in range(2)]
    err = capsys.readouterr().err
    assert err.count("is not built: using the standard-op graph") == 1
    assert paths[0] == paths[1] and "_onnx_" in paths[0].name
    assert not any(n.op_type == OP_TYPE for n in onnx.load(str(paths[0])).graph.node)

    rng = np.random.default_rng(0)
    f0, f2 = (rng.random((1, 3, 64, 96), dtype=np.float32) for _ in range(2))
    with OrtBackend(paths[0], threads=1) as b:
        got = b.infer(f0, f2)
    model = load_checkpoint(ckpt).model.eval()
    with torch.no_grad():
        want = model(torch.from_numpy(f0), torch.from_numpy(f2)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
