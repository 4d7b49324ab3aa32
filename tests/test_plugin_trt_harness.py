"""Runs sfadacof_plugin_harness (plugins/tests/plugin_harness.cpp) on the built TensorRT plugin library: it drives
the plugin through its own methods as TensorRT would (creator, fields, shapes, formats, clone, serialisation
round trip, runtime re-creation; enqueue against the CPU kernel when a GPU is present) without libnvinfer.

Both are built only where TensorRT headers were found at configure time (`python -m plugins.build
--tensorrt-root DIR`); CI has none, so this test skips there with that reason.
"""

from __future__ import annotations

import subprocess

import pytest

from plugins import _libs


def _harness():
    lib = _libs.find_library(_libs.PLUGIN_LIBRARY)
    if lib is None:
        pytest.skip(f"{_libs.library_filename(_libs.PLUGIN_LIBRARY)} not built: TensorRT headers were not found at "
                    "configure time (python -m plugins.build --tensorrt-root DIR)")
    exe = lib.parent / "sfadacof_plugin_harness"
    if not exe.is_file():
        pytest.skip(f"{exe} not built")
    return exe, lib


def test_plugin_methods_through_harness():
    exe, lib = _harness()
    proc = subprocess.run([str(exe), str(lib)], capture_output=True, text=True, timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ", 0 failures" in proc.stdout
