"""The fused AdaCoF synthesis op on torch CUDA tensors, through the CUDA kernels of libsfadacof_cuda (the same
kernels the TensorRT plugin launches). Used by the GPU tests and `python -m plugins.benchmark`.

    frame1 = adacof_synthesis_cuda(frame0, frame2, w1, a1, b1, w2, a2, b2, occ, kernel_size, dilation)

Tensor layout and meaning as plugins.cpu_op. dtypes: all float32, all float16, or float16 with float32
alpha1/beta1/alpha2/beta2. Runs on torch's current stream of the tensors' device; returns without synchronising.

Kernels (impl=): "fused" (the one the TensorRT plugin launches: 4 pixels x 3 channels per thread, vector map loads
where W % 4 == 0, any shape), "naive" (original style, a baseline for tests and the benchmark). "tiled", the
redesign issue 13 proposed, is now the fused kernel (issue 22): impl="tiled" is accepted as another name for
"fused" until plugins/gpu_check.py and runtime/backends/torch_cuda_fp16.py stop passing it.
"""

from __future__ import annotations

import ctypes
import functools

from . import _libs
from .onnx_node import check_attributes

ABI_VERSION = 2  # SFADACOF_CUDA_ABI_VERSION in adacof_kernels.h


@functools.lru_cache(maxsize=None)
def _lib() -> ctypes.CDLL:
    lib = _libs.load_library(_libs.CUDA_LIBRARY)
    lib.sfadacof_cuda_abi_version.restype = ctypes.c_int32
    found = lib.sfadacof_cuda_abi_version()
    if found != ABI_VERSION:
        raise _libs.LibraryNotBuilt(f"{lib._name} has ABI version {found}, this wrapper needs {ABI_VERSION}; "
                                    f"rebuild it with `{_libs.BUILD_COMMAND}`")
    lib.sfadacof_cuda_status_string.restype = ctypes.c_char_p
    lib.sfadacof_cuda_status_string.argtypes = [ctypes.c_int32]
    lib.sfadacof_cuda_synthesis.restype = ctypes.c_int32
    lib.sfadacof_cuda_synthesis.argtypes = [ctypes.c_void_p] * 10 + [ctypes.c_int32] * 8 + [ctypes.c_void_p]
    lib.sfadacof_cuda_synthesis_naive.restype = ctypes.c_int32
    lib.sfadacof_cuda_synthesis_naive.argtypes = [ctypes.c_void_p] * 12 + [ctypes.c_int32] * 8 + [ctypes.c_void_p]
    return lib


IMPLS = ("fused", "naive")
ALIASES = {"tiled": "fused"}  # issue 13's tiled kernel became the fused one (issue 22)


def library_path() -> str:
    return _lib()._name


def _type_code(dtype) -> int:
    import torch

    if dtype == torch.float32:
        return 0
    if dtype == torch.float16:
        return 1
    raise TypeError(f"unsupported dtype {dtype}: float32 or float16")


def _prepare(tensors, kernel_size: int, dilation: int):
    import torch

    k, d = check_attributes(kernel_size, dilation)
    names = ("frame0", "frame2", "weight1", "alpha1", "beta1", "weight2", "alpha2", "beta2", "occlusion")
    ts = [t.contiguous() for t in tensors]
    f0 = ts[0]
    if not f0.is_cuda or f0.dim() != 4:
        raise ValueError(f"frame0 must be a 4-D CUDA tensor, got {tuple(f0.shape)} on {f0.device}")
    b, c, h, w = f0.shape
    want = {0: (b, c, h, w), 1: (b, c, h, w), 8: (b, 1, h, w)}
    offsets = (3, 4, 6, 7)
    for i, (name, t) in enumerate(zip(names, ts)):
        shape = want.get(i, (b, k * k, h, w))
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        if t.device != f0.device:
            raise ValueError(f"{name} is on {t.device}, frame0 on {f0.device}")
        if i not in offsets and t.dtype != f0.dtype:
            raise TypeError(f"{name} is {t.dtype}, frame0 is {f0.dtype}")
    off_dtype = ts[3].dtype
    if any(ts[i].dtype != off_dtype for i in offsets) or off_dtype not in (f0.dtype, torch.float32):
        raise TypeError("alpha1/beta1/alpha2/beta2 must share one dtype: frame0's or float32")
    return ts, (b, c, h, w), k, d, _type_code(f0.dtype), _type_code(off_dtype)


def _check(lib, status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed: {lib.sfadacof_cuda_status_string(status).decode()}")


def adacof_synthesis_cuda(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion,
                          kernel_size: int, dilation: int = 1, out=None, naive: bool = False, impl: str = "fused"):
    """The fused op on CUDA tensors. impl: "fused" (default: the kernel the TensorRT plugin runs) or "naive" (the
    original-style kernels: one thread per output element, one launch per direction, then a blend; two scratch
    tensors). naive=True is impl="naive"; "tiled" is another name for "fused"."""
    import torch

    if naive:
        impl = "naive"
    impl = ALIASES.get(impl, impl)
    if impl not in IMPLS:
        raise ValueError(f"impl {impl!r}: choose one of {', '.join(IMPLS)}")
    ts, (b, c, h, w), k, d, t_code, o_code = _prepare(
        (frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion), kernel_size, dilation)
    if out is None:
        out = torch.empty_like(ts[0])
    elif tuple(out.shape) != (b, c, h, w) or out.dtype != ts[0].dtype or not out.is_contiguous():
        raise ValueError("out must be a contiguous tensor of frame0's shape and dtype")
    lib = _lib()
    stream = ctypes.c_void_p(torch.cuda.current_stream(ts[0].device).cuda_stream)
    ptrs = [t.data_ptr() for t in ts] + [out.data_ptr()]
    with torch.cuda.device(ts[0].device):
        if impl == "naive":
            o1, o2 = torch.empty_like(ts[0]), torch.empty_like(ts[0])
            status = lib.sfadacof_cuda_synthesis_naive(*ptrs, o1.data_ptr(), o2.data_ptr(), t_code, o_code,
                                                       b, c, h, w, k, d, stream)
        else:
            status = lib.sfadacof_cuda_synthesis(*ptrs, t_code, o_code, b, c, h, w, k, d, stream)
    _check(lib, status, "sfadacof_cuda_synthesis" + ("" if impl == "fused" else "_" + impl))
    return out
