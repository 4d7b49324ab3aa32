"""What a TensorRT process needs loaded, in one place for runtime.build_engine and the TensorRT backend: the tensorrt
and pycuda modules, the GPU's identity, and the AdaCoFSynthesis plugin library registered in TensorRT's registry.

Every failure is one UserError line that names the real cause: `IPluginRegistry.load_library` returns None both when
the dynamic loader fails (a missing libcudart, a wrong architecture) and when the library is already loaded, and a
library that loads but registers no creator only surfaces later as "plugin not found" in the parser. So the loader
keeps one handle per library path, asks the dynamic loader itself for its message when TensorRT gives none, and
confirms that the creator the exported node names is in the registry afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from plugins.onnx_node import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION
from sfadacof.errors import UserError

# The plugin is built with CUDA 13 (nvcc here), so it needs the cu13 TensorRT wheels and a driver that runs CUDA 13.
TRT_INSTALL_HINT = "pip install tensorrt-cu13 (or the sfadacof[gpu] extra) on a machine with an NVIDIA GPU"
CREATOR = f"{PLUGIN_NAMESPACE}::{OP_TYPE} v{PLUGIN_VERSION}"

_loaded: dict[Path, object] = {}  # resolved plugin path -> TensorRT's library handle, for this process


def _file_sha256(path) -> str:
    from sfadacof.checkpoint import file_sha256  # here: sfadacof.checkpoint imports torch (runtime.build_engine --help)

    return file_sha256(path)


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]


def import_tensorrt():
    """The tensorrt module, or one UserError line saying what is missing."""
    if importlib.util.find_spec("tensorrt") is None:
        raise UserError(f"TensorRT Python package not installed ({TRT_INSTALL_HINT})")
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError / OSError when libnvinfer or CUDA libs are missing
        raise UserError(f"TensorRT Python package found but not loadable: {_first_line(e)}") from None
    return trt


def import_pycuda():
    if importlib.util.find_spec("pycuda") is None:
        raise UserError("pycuda not installed (pip install pycuda on a machine with the CUDA toolkit; "
                        "see the sfadacof[gpu] extra)")
    try:
        import pycuda.driver as cuda
    except Exception as e:  # ImportError / OSError when libcuda is missing
        raise UserError(f"pycuda found but not loadable: {_first_line(e)}") from None
    return cuda


@contextlib.contextmanager
def on_device(device: int) -> Iterator[None]:
    """Make GPU `device` current for TensorRT (which works on the CUDA runtime's current device) by pushing its primary
    context, the one the runtime itself uses. Device 0 is the runtime's default and needs no pycuda."""
    if device == 0 and importlib.util.find_spec("pycuda") is None:
        yield
        return
    cuda = import_pycuda()
    cuda.init()
    if not 0 <= device < cuda.Device.count():
        raise UserError(f"--device {device}: this machine has {cuda.Device.count()} CUDA device(s)")
    ctx = cuda.Device(device).retain_primary_context()
    ctx.push()
    try:
        yield
    finally:
        ctx.pop()


def tensorrt_available() -> str | None:
    """None when TensorRT, pycuda and a GPU are all usable here, else the first reason they are not."""
    try:
        import_tensorrt()
        import_pycuda()
        from .engine_meta import gpu_info

        gpu_info()
    except UserError as e:
        return str(e)
    return None


def default_plugin_library() -> Path | None:
    """The plugin library built by plugins/ (build/libsfadacof_trt_plugin.so or $SFADACOF_PLUGIN_DIR)."""
    from plugins import _libs

    return _libs.find_library(_libs.PLUGIN_LIBRARY)


def dlopen_error(path: Path) -> str:
    """The dynamic loader's own message for `path` (it names a missing dependency), or what else can be said."""
    try:
        ctypes.CDLL(str(path), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as e:
        return _first_line(e)
    return ("the dynamic loader opens it, but TensorRT did not accept it (no getCreators entry point, or built "
            "with the headers of another TensorRT major version)")


def creator_registered(registry) -> bool:
    """Whether the registry holds the AdaCoFSynthesis creator the exported node names."""
    get = getattr(registry, "get_creator", None)  # TensorRT >= 10: V1 and V3 creators alike
    if get is not None:
        try:
            if get(OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None:
                return True
        except Exception:  # pybind raises when no creator matches in some versions
            pass
    for c in getattr(registry, "all_creators", None) or []:
        if (getattr(c, "name", None), getattr(c, "plugin_version", None),
                getattr(c, "plugin_namespace", None)) == (OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE):
            return True
    return False


def _check_major(trt, path: Path) -> None:
    """Refuse a plugin built with the headers of another TensorRT major: ILogger/ILoggerFinder changed layout between
    10.x and 11.x, so such a library cannot log through this runtime (it falls back to stderr) and is not what the
    build was meant to be. Libraries without the version export (other plugins) are left to the creator check."""
    from plugins._libs import plugin_tensorrt_version

    try:
        built = plugin_tensorrt_version(path)
    except (OSError, AttributeError):
        return
    if built[0] != trt_major(trt.__version__):
        raise UserError(f"{path}: built with TensorRT {built[0]}.{built[1]} headers, this runtime is TensorRT "
                        f"{trt.__version__}; rebuild it with that major's headers (python -m plugins.build)")


def load_plugin_library(trt, path: Path | None, logger) -> str | None:
    """Register the AdaCoFSynthesis creator from `path` (once per process); returns the library's sha256."""
    trt.init_libnvinfer_plugins(logger, "")
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: plugin library not found (build it with python -m plugins.build)")
    key = path.resolve()
    registry = trt.get_plugin_registry()
    if key not in _loaded:
        _check_major(trt, key)
        if creator_registered(registry):
            # Already there (libsfadacof_trt_register, or a loadLibrary earlier in this process): TensorRT's
            # loadLibrary refuses a library whose creator is registered, so there is nothing to load.
            _loaded[key] = None
            return _file_sha256(path)
        try:
            handle = registry.load_library(str(key))
        except Exception as e:  # TensorRT raises RuntimeError with its own message in some versions
            raise UserError(f"{path}: TensorRT could not load the plugin library: {_first_line(e)}") from None
        if handle is None and not creator_registered(registry):
            raise UserError(f"{path}: TensorRT could not load the plugin library: {dlopen_error(key)}")
        _loaded[key] = handle
    if not creator_registered(registry):
        raise UserError(f"{path}: loaded, but no {CREATOR} creator is registered (a library of another plugin, or "
                        "built with the headers of another TensorRT major version: rebuild with python -m plugins.build)")
    return _file_sha256(path)
