"""Without a GPU: the CUDA kernel library that CI compiles loads, has the ABI the wrapper expects, and rejects
invalid arguments before touching a device (checks the ctypes signatures of plugins.cuda_op); no CUDA-built
library depends on the build machine's libcudart."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from plugins import _libs
from tests.helpers import ensure_built


@pytest.fixture(scope="module")
def cuda_built(tmp_path_factory):
    """The CUDA kernel library: found (plugins/ci_build.sh, `python -m plugins.build`), or compiled here for one
    architecture where nvcc is on PATH -- the README's `pip install` builds it only where a GPU is found too, so
    without this the tests would skip on a machine that can compile them. A failed build fails; only a machine
    without a CUDA compiler skips."""
    if _libs.find_library(_libs.CUDA_LIBRARY) is None:
        if shutil.which("nvcc") is None and not os.environ.get("CUDACXX"):
            pytest.skip("no CUDA compiler (nvcc not on PATH, CUDACXX unset): libsfadacof_cuda cannot be built here")
        ensure_built([_libs.CUDA_LIBRARY], tmp_path_factory.mktemp("cuda-build"), cuda_archs="90")
    return _libs.find_library(_libs.CUDA_LIBRARY)


@pytest.mark.slow  # compiles the CUDA kernels where they are not built yet (minutes on 2 cores)
def test_cuda_library_loads_and_validates_arguments(cuda_built):
    from plugins import cuda_op

    lib = cuda_op._lib()
    null = [None] * 10
    # kernel_size 4 with dilation 1: (K-1)*d odd -> SFADACOF_CUDA_BAD_PARAMS (-1), no launch.
    assert lib.sfadacof_cuda_synthesis(*null, 0, 0, 1, 3, 8, 8, 4, 1, ctypes.c_void_p(0)) == -1
    # float32 tensors with float16 offsets -> SFADACOF_CUDA_BAD_TYPE (-2).
    assert lib.sfadacof_cuda_synthesis(*null, 0, 1, 1, 3, 8, 8, 5, 1, ctypes.c_void_p(0)) == -2
    # Empty batch: nothing to launch, success without a device.
    assert lib.sfadacof_cuda_synthesis(*null, 0, 0, 0, 3, 8, 8, 5, 1, ctypes.c_void_p(0)) == 0
    assert b"even" in lib.sfadacof_cuda_status_string(-1)
    assert lib.sfadacof_cuda_synthesis_naive(*null, None, None, 0, 0, 1, 3, 8, 8, 4, 1, ctypes.c_void_p(0)) == -1


def _cuda_built_libraries() -> list[Path]:
    """Every library CMake built with CUDA that the loaders or the two-major layout (build/trt*) would use."""
    dirs = {_libs.DEFAULT_BUILD_DIR.resolve()}
    if os.environ.get("SFADACOF_PLUGIN_DIR"):
        dirs.add(Path(os.environ["SFADACOF_PLUGIN_DIR"]).resolve())
    dirs.update(p.resolve() for p in _libs.DEFAULT_BUILD_DIR.glob("trt*") if p.is_dir())
    stems = (_libs.CUDA_LIBRARY, _libs.PLUGIN_LIBRARY, _libs.REGISTER_LIBRARY)
    return sorted(d / _libs.library_filename(s) for d in dirs for s in stems if (d / _libs.library_filename(s)).is_file())


def _toolkit_dirs(build_dir: Path) -> list[str]:
    cache = build_dir / "CMakeCache.txt"
    dirs = []
    if cache.is_file():
        for line in cache.read_text(errors="replace").splitlines():
            key = line.split(":", 1)[0]
            if key in ("CUDAToolkit_LIBRARY_DIR", "CUDAToolkit_LIBRARY_ROOT", "CUDAToolkit_BIN_DIR"):
                value = line.split("=", 1)[1]
                dirs.append(str(Path(value).parent if key == "CUDAToolkit_BIN_DIR" else Path(value)))
    return dirs


@pytest.mark.slow
def test_cuda_libraries_do_not_need_the_build_machines_libcudart(cuda_built):
    """The CUDA runtime is linked statically: no libcudart.so.N to find at run time, no RUNPATH into the build
    machine's toolkit (which a user's machine does not have)."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) not on PATH")
    libs = _cuda_built_libraries()
    assert libs, f"{cuda_built} was built but is not among the libraries the loaders would use"
    for lib in libs:
        out = subprocess.run([readelf, "-d", str(lib)], capture_output=True, text=True, check=True).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
        assert needed, f"readelf -d {lib} listed no NEEDED entry at all:\n{out}"
        assert not [n for n in needed if "cudart" in n], f"{lib} needs {needed}"
        paths = [p for entry in re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*?)\]", out)
                 for p in entry.split(":") if p]
        toolkit = _toolkit_dirs(lib.parent)
        assert not [p for p in paths if any(p == t or p.startswith(t + "/") for t in toolkit)], (
            f"{lib} has a RUNPATH/RPATH into the CUDA toolkit {toolkit}: {paths}")


def test_the_wrapper_refuses_bad_arguments_before_the_library_or_a_device():
    """plugins.cuda_op checks what it is given before it loads libsfadacof_cuda or touches a device, so a bad call
    fails the same way on a machine without either: an unknown kernel name, an odd (K-1)*d (the output would not keep
    the frame's size), tensors that are not on a CUDA device."""
    import torch

    from plugins import cuda_op

    def maps(b=1, c=3, h=8, w=8, k=5, dtype=torch.float32):
        f = torch.zeros(b, c, h, w, dtype=dtype)
        m = torch.zeros(b, k * k, h, w, dtype=dtype)
        return [f, f.clone(), m, m.clone(), m.clone(), m.clone(), m.clone(), m.clone(), torch.zeros(b, 1, h, w,
                                                                                                    dtype=dtype)]

    with pytest.raises(ValueError, match="impl 'bogus'"):
        cuda_op.adacof_synthesis_cuda(*maps(), kernel_size=5, impl="bogus")
    with pytest.raises(ValueError, match="even"):
        cuda_op.adacof_synthesis_cuda(*maps(k=4), kernel_size=4, dilation=1)
    with pytest.raises(ValueError, match="4-D CUDA tensor"):
        cuda_op.adacof_synthesis_cuda(*maps(), kernel_size=5)
