"""Finding the native libraries built by the top-level CMakeLists.txt (no path needed from the user).

Search order: $SFADACOF_PLUGIN_DIR, then <repo>/build (where `python -m plugins.build` puts them), then this
package's directory (where `pip install .` puts them, and `pip install -e .` in the source tree: setup.py).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
DEFAULT_BUILD_DIR = REPO_ROOT / "build"
BUILD_COMMAND = "python -m plugins.build"

CPU_LIBRARY = "sfadacof_cpu"
CUDA_LIBRARY = "sfadacof_cuda"
PLUGIN_LIBRARY = "sfadacof_trt_plugin"
# The same plugin, registering its creator when dlopen'ed into a process whose TensorRT runtime (of the headers'
# major) is already loaded: for loaders that only dlopen (polygraphy --plugins, ctypes.CDLL). Not for
# IPluginRegistry.load_library / trtexec --dynamicPlugins / plugins_to_serialize, which take PLUGIN_LIBRARY.
REGISTER_LIBRARY = "sfadacof_trt_register"


def cuda_torch_problem(prog: str) -> str | None:
    """Why `prog` (a GPU-only command) cannot run here: no torch, or no CUDA device; None when it can."""
    try:
        import torch
    except ImportError:
        return f"{prog}: needs PyTorch with CUDA (torch is not installed)"
    if not torch.cuda.is_available():
        return f"{prog}: needs an NVIDIA GPU (torch.cuda.is_available() is False)"
    return None


class LibraryNotBuilt(RuntimeError):
    """A native library of plugins/ was not found; the message says how to build it."""


def library_filename(stem: str) -> str:
    if sys.platform.startswith("win"):
        return f"{stem}.dll"
    if sys.platform == "darwin":
        return f"lib{stem}.dylib"
    return f"lib{stem}.so"


def search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("SFADACOF_PLUGIN_DIR")
    if env:
        dirs.append(Path(env))
    dirs += [DEFAULT_BUILD_DIR, PACKAGE_DIR]
    return dirs


def find_library(stem: str) -> Path | None:
    name = library_filename(stem)
    for d in search_dirs():
        candidate = d / name
        if candidate.is_file():
            return candidate
    return None


def load_library(stem: str) -> ctypes.CDLL:
    path = find_library(stem)
    if path is None:
        where = ", ".join(str(d) for d in search_dirs())
        raise LibraryNotBuilt(
            f"{library_filename(stem)} not found (looked in {where}); build it with `{BUILD_COMMAND}` "
            "from the repository root (or `pip install .` with a C++ compiler), or set SFADACOF_PLUGIN_DIR"
        )
    return ctypes.CDLL(str(path))


def plugin_tensorrt_version(path: str | os.PathLike) -> tuple[int, int, int]:
    """(major, minor, patch) of the TensorRT headers a plugin library (PLUGIN_LIBRARY or REGISTER_LIBRARY) was
    built with. Loading PLUGIN_LIBRARY this way has no side effect; REGISTER_LIBRARY registers its creator if a
    TensorRT runtime of its major is loaded in this process."""
    fn = ctypes.CDLL(str(path)).sfadacof_trt_plugin_tensorrt_version
    fn.restype = ctypes.c_int32
    fn.argtypes = []
    v = fn()
    return v // 10000, v // 100 % 100, v % 100
