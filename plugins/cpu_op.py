"""The fused AdaCoF synthesis op on NumPy float32 arrays, through the C++ CPU kernel (libsfadacof_cpu).

    frame1 = adacof_synthesis_cpu(frame0, frame2, w1, a1, b1, w2, a2, b2, occ, kernel_size, dilation)

frame0/frame2: (B, C, H, W), the frames after the model's reflect pad to a multiple of 32, not normalised and
not replication-padded (the kernel folds the kernel_pad replication pad into its index clamp); w/a/b:
(B, K*K, H, W); occ: (B, 1, H, W). Returns frame1 (B, C, H, W) float32 = V*o1 + (1-V)*o2. Inputs are never
modified (non-float32 or non-contiguous inputs are copied).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from . import _libs
from .onnx_node import check_attributes

ABI_VERSION = 2  # SFADACOF_CPU_ABI_VERSION in adacof_cpu.h

_FLOAT_P = ctypes.POINTER(ctypes.c_float)


@functools.lru_cache(maxsize=None)
def _lib() -> ctypes.CDLL:
    lib = _libs.load_library(_libs.CPU_LIBRARY)
    lib.sfadacof_cpu_abi_version.restype = ctypes.c_int32
    lib.sfadacof_cpu_abi_version.argtypes = []
    found = lib.sfadacof_cpu_abi_version()
    if found != ABI_VERSION:
        raise _libs.LibraryNotBuilt(
            f"{lib._name} has ABI version {found}, this wrapper needs {ABI_VERSION}; rebuild it with "
            f"`{_libs.BUILD_COMMAND}`"
        )
    lib.sfadacof_cpu_simd_path.restype = ctypes.c_char_p
    lib.sfadacof_cpu_simd_path.argtypes = []
    lib.sfadacof_cpu_status_string.restype = ctypes.c_char_p
    lib.sfadacof_cpu_status_string.argtypes = [ctypes.c_int32]
    lib.sfadacof_cpu_synthesis_f32.restype = ctypes.c_int32
    lib.sfadacof_cpu_synthesis_f32.argtypes = [_FLOAT_P] * 10 + [ctypes.c_int32] * 7
    lib.sfadacof_cpu_direction_f32.restype = ctypes.c_int32
    lib.sfadacof_cpu_direction_f32.argtypes = [_FLOAT_P] * 7 + [ctypes.c_int32] * 7
    return lib


def library_path() -> str:
    """Path of the CPU library that adacof_synthesis_cpu uses (raises LibraryNotBuilt if there is none)."""
    return _lib()._name


def simd_path() -> str:
    """The path the kernel takes on this CPU now: "avx2" (8 pixels a step, gathers) or "scalar" (no AVX2, a non-x86
    build, or SFADACOF_CPU_SIMD=0 in the environment, read at every call). Both give bit-identical results."""
    return _lib().sfadacof_cpu_simd_path().decode()


def _as_f32(name: str, x) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be 4-D (NCHW), got shape {arr.shape}")
    return arr


def _output(out, shape: tuple[int, ...]) -> np.ndarray:
    """A new output array, or the caller's `out` when it can be written as one."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == shape
            and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous float32 array of shape {shape}")
    return out


def _check(lib, function: str, status: int) -> None:
    if status != 0:
        raise RuntimeError(f"{function} failed: {lib.sfadacof_cpu_status_string(status).decode()}")


def adacof_synthesis_cpu(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion,
                         kernel_size: int, dilation: int = 1, num_threads: int = 0, out=None) -> np.ndarray:
    """The fused op (see module doc). num_threads <= 0 uses every hardware thread. `out`: a C-contiguous float32
    array of frame0's shape to write into (an engine's own output buffer), else a new array."""
    k, d = check_attributes(kernel_size, dilation)
    names = ("frame0", "frame2", "weight1", "alpha1", "beta1", "weight2", "alpha2", "beta2", "occlusion")
    arrays = [_as_f32(n, x) for n, x in zip(names, (frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2,
                                                    occlusion))]
    f0 = arrays[0]
    b, c, h, w = f0.shape
    expected = {
        "frame0": (b, c, h, w), "frame2": (b, c, h, w),
        "weight1": (b, k * k, h, w), "alpha1": (b, k * k, h, w), "beta1": (b, k * k, h, w),
        "weight2": (b, k * k, h, w), "alpha2": (b, k * k, h, w), "beta2": (b, k * k, h, w),
        "occlusion": (b, 1, h, w),
    }
    for name, arr in zip(names, arrays):
        if arr.shape != expected[name]:
            raise ValueError(f"{name} has shape {arr.shape}, expected {expected[name]} "
                             f"(frame0 {f0.shape}, kernel_size {k})")
    out = _output(out, (b, c, h, w))
    if out.size == 0:
        return out
    lib = _lib()
    ptrs = [a.ctypes.data_as(_FLOAT_P) for a in arrays] + [out.ctypes.data_as(_FLOAT_P)]
    _check(lib, "sfadacof_cpu_synthesis_f32", lib.sfadacof_cpu_synthesis_f32(*ptrs, b, c, h, w, k, d, int(num_threads)))
    return out


def adacof_direction_cpu(frame, weight, alpha, beta, kernel_size: int, dilation: int = 1, first=None,
                         occlusion=None, num_threads: int = 0, out=None) -> np.ndarray:
    """The op in two steps (adacof_cpu.h, sfadacof_cpu_direction_f32): without first/occlusion, one direction's
    AdaCoF sum (o1); with both, V * first + (1 - V) * this direction's sum. Chained, the two calls equal
    adacof_synthesis_cpu bit for bit while only one direction's maps need to exist at a time."""
    k, d = check_attributes(kernel_size, dilation)
    if (first is None) != (occlusion is None):
        raise ValueError("give first and occlusion together (the second step), or neither (the first)")
    f = _as_f32("frame", frame)
    b, c, h, w = f.shape
    arrays = [f] + [_as_f32(n, x) for n, x in (("weight", weight), ("alpha", alpha), ("beta", beta))]
    for name, arr in zip(("weight", "alpha", "beta"), arrays[1:]):
        if arr.shape != (b, k * k, h, w):
            raise ValueError(f"{name} has shape {arr.shape}, expected {(b, k * k, h, w)} (frame {f.shape})")
    extra = [None, None]
    if first is not None:
        extra = [_as_f32("first", first), _as_f32("occlusion", occlusion)]
        if extra[0].shape != f.shape or extra[1].shape != (b, 1, h, w):
            raise ValueError(f"first {extra[0].shape} / occlusion {extra[1].shape} do not fit frame {f.shape}")
    out = _output(out, (b, c, h, w))
    if out.size == 0:
        return out
    lib = _lib()
    ptrs = [a.ctypes.data_as(_FLOAT_P) for a in arrays] + [
        None if x is None else x.ctypes.data_as(_FLOAT_P) for x in extra] + [out.ctypes.data_as(_FLOAT_P)]
    _check(lib, "sfadacof_cpu_direction_f32", lib.sfadacof_cpu_direction_f32(*ptrs, b, c, h, w, k, d, int(num_threads)))
    return out
