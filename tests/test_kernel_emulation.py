"""The fused CUDA kernel's per-thread code (plugins/adacof_kernel_body.h, what every thread of the kernel the
TensorRT plugin runs executes) on the CPU: plugins/tests/kernel_emulation.cpp runs it for every thread of every
launch that launch_synthesis makes, with host stand-ins for the device intrinsics, and fails any access outside the
tensors or any misaligned vector access. Compared against the C++ CPU kernel (which matches the float64 spec loop:
tests/test_plugin_cpu.py) and the PyTorch op, with README "Tolerances": fp32 1e-5, fp16 maps 1e-3 of max(1, |ref|)
against the fp32 reference on the same fp16-rounded inputs.

No GPU needed; skipped only where no C++ compiler or no CUDA headers (cuda_fp16.h) are found.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from plugins import _libs

FP32_BOUND = 1e-5
FP16_BOUND = 1e-3


def _cuda_include() -> Path | None:
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(Path(nvcc).resolve().parent.parent))
    roots.append("/usr/local/cuda")
    for r in roots:
        if r and (Path(r) / "include" / "cuda_fp16.h").is_file():
            return Path(r) / "include"
    return None


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    inc = _cuda_include()
    if cxx is None or inc is None:
        pytest.skip("needs a C++ compiler and the CUDA headers (cuda_fp16.h) to build the kernel emulation")
    lib = tmp_path_factory.mktemp("emu") / "libkernel_emulation.so"
    src = _libs.PACKAGE_DIR / "tests" / "kernel_emulation.cpp"
    subprocess.run([cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I",
                    str(_libs.PACKAGE_DIR), "-I", str(inc), str(src), "-o", str(lib)], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.sfadacof_emulate_synthesis.restype = ctypes.c_int32
    dll.sfadacof_emulate_synthesis.argtypes = ([ctypes.c_void_p] * 10 + [ctypes.c_int32] * 8
                                               + [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int32)])
    return dll


def run(emu, arrays, k, d, out_dtype=None):
    """The emulated kernel on numpy arrays (frame0, frame2, w1, a1, b1, w2, a2, b2, occ) -> (out, used_vector)."""
    f0 = arrays[0]
    out = np.full(f0.shape, np.nan, dtype=out_dtype or f0.dtype)
    bufs = list(arrays) + [out]
    sizes = (ctypes.c_int64 * 10)(*[a.nbytes for a in bufs])
    used = ctypes.c_int32(-1)
    code = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
    b, c, h, w = f0.shape
    status = emu.sfadacof_emulate_synthesis(*[a.ctypes.data for a in bufs], code[f0.dtype], code[arrays[3].dtype],
                                            b, c, h, w, k, d, sizes, ctypes.byref(used))
    assert status == 0, f"emulated kernel: status {status} (1001 out of bounds, 1002 misaligned vector access)"
    return out, used.value & 1


def run_kind(emu, arrays, k, d):
    """As run, returning whether a compiled-K kernel (16-bit tap coordinates) ran instead of the vector flag."""
    f0 = arrays[0]
    out = np.full(f0.shape, np.nan, dtype=f0.dtype)
    bufs = list(arrays) + [out]
    sizes = (ctypes.c_int64 * 10)(*[a.nbytes for a in bufs])
    used = ctypes.c_int32(-1)
    b, c, h, w = f0.shape
    assert emu.sfadacof_emulate_synthesis(*[a.ctypes.data for a in bufs], 0, 0, b, c, h, w, k, d, sizes,
                                          ctypes.byref(used)) == 0
    return out, bool(used.value & 2)


def make_inputs(seed, b, c, h, w, k, scale):
    rng = np.random.default_rng(seed)
    frames = [rng.random((b, c, h, w), dtype=np.float32) for _ in range(2)]
    maps = []
    for _ in range(2):
        logits = rng.standard_normal((b, k * k, h, w)).astype(np.float32)
        wgt = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        maps += [wgt.astype(np.float32), ((rng.random((b, k * k, h, w)) * 2 - 1) * scale).astype(np.float32),
                 ((rng.random((b, k * k, h, w)) * 2 - 1) * scale).astype(np.float32)]
    occ = rng.random((b, 1, h, w), dtype=np.float32)
    return [frames[0], frames[1], *maps, occ]


def cpu_kernel(arrays, k, d):
    from plugins import cpu_op

    return cpu_op.adacof_synthesis_cpu(*[np.ascontiguousarray(a, dtype=np.float32) for a in arrays], kernel_size=k,
                                       dilation=d)


def torch_op(arrays, k, d):
    import torch

    from sfadacof.synthesis import fused_reference

    return fused_reference([torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays], k, d).numpy()


def rel_err(out, ref) -> float:
    out, ref = out.astype(np.float64), ref.astype(np.float64)
    return float(np.max(np.abs(out - ref)) / max(1.0, float(np.max(np.abs(ref)))))


# W % 4 == 0: the vector-load kernel; other W the scalar-load one. K = 5 / 11 compiled, others the run-time-K
# kernel (scalar loads).
SHAPES = [
    pytest.param(2, 3, 13, 24, 5, 1, 12.0, True, id="K5-b2-vector"),
    pytest.param(2, 3, 13, 23, 5, 1, 12.0, False, id="K5-b2-scalar-odd-W"),
    pytest.param(1, 3, 12, 26, 5, 1, 4.0, False, id="K5-scalar-W%4=2"),
    pytest.param(1, 3, 17, 20, 11, 1, 20.0, True, id="K11-vector"),
    pytest.param(1, 3, 9, 13, 11, 1, 20.0, False, id="K11-scalar"),
    pytest.param(2, 3, 11, 16, 3, 2, 8.0, False, id="K3d2-runtime-K"),
    pytest.param(1, 3, 8, 12, 7, 1, 9.0, False, id="K7-runtime-K"),
    pytest.param(1, 5, 7, 16, 5, 1, 6.0, True, id="K5-C5-two-passes"),
    pytest.param(1, 4, 6, 9, 5, 1, 6.0, False, id="K5-C4-two-passes-scalar"),
    pytest.param(1, 1, 6, 8, 5, 1, 6.0, True, id="K5-C1"),
    pytest.param(1, 3, 9, 1, 5, 1, 3.0, False, id="K5-one-column"),
    pytest.param(1, 3, 1, 8, 5, 1, 3.0, True, id="K5-one-row"),
    pytest.param(1, 3, 5, 2, 11, 1, 30.0, False, id="K11-two-columns"),
    pytest.param(1, 3, 4, 4, 1, 1, 2.0, False, id="K1-runtime-K"),
]


@pytest.mark.parametrize("b,c,h,w,k,d,scale,vector", SHAPES)
def test_emulated_kernel_fp32_matches_cpu_kernel_and_pytorch(emu, b, c, h, w, k, d, scale, vector):
    arrays = make_inputs(k * 1000 + h * 10 + w, b, c, h, w, k, scale)
    out, used = run(emu, arrays, k, d)
    assert used == int(vector)
    assert not np.isnan(out).any(), "an output element was never written"
    assert rel_err(out, cpu_kernel(arrays, k, d)) <= FP32_BOUND
    assert rel_err(out, torch_op(arrays, k, d)) <= FP32_BOUND


@pytest.mark.parametrize("b,c,h,w,k,d,scale,vector", [SHAPES[0], SHAPES[1], SHAPES[3], SHAPES[4], SHAPES[5]])
@pytest.mark.parametrize("offsets", ["float16", "float32"])
def test_emulated_kernel_fp16_maps(emu, b, c, h, w, k, d, scale, vector, offsets):
    arrays = make_inputs(k * 1000 + h * 10 + w + 1, b, c, h, w, k, scale)
    half = [a.astype(np.float16) for a in arrays]
    if offsets == "float32":
        for i in (3, 4, 6, 7):
            half[i] = arrays[i]
    out, used = run(emu, half, k, d)
    assert out.dtype == np.float16 and used == int(vector)
    assert rel_err(out, cpu_kernel(half, k, d)) <= FP16_BOUND


def test_emulated_kernel_special_offsets_and_nan(emu):
    """Integer, near-integer, huge and non-finite offsets: the formula's value (CPU kernel), NaN where it has NaN."""
    arrays = make_inputs(9, 2, 3, 11, 16, 5, 4.0)
    special = np.array([0.0, 1.0, -1.0, 2.999999, -2.999999, 0.5, -0.5, 3e4, -3e4, 1e9, -1e9, 3e38, -3e38,
                        2.0**31, -(2.0**31), 16777217.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    for i in (3, 4, 6, 7):
        arrays[i] = special[rng.integers(0, len(special), arrays[i].shape)]
    arrays[3][0, 7, 4, 5] = np.nan
    arrays[7][1, 3, 7, 9] = np.inf
    arrays[4][1, 0, 2, 2] = -np.inf
    out, used = run(emu, arrays, 5, 1)
    ref = cpu_kernel(arrays, 5, 1)
    assert used == 1
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out[0, :, 4, 5]).all() and np.isnan(out[1, :, 7, 9]).all() and np.isnan(out[1, :, 2, 2]).all()
    finite = ~np.isnan(ref)
    assert np.max(np.abs(out[finite] - ref[finite])) <= FP32_BOUND * max(1.0, np.max(np.abs(ref[finite])))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_emulated_kernel_misaligned_tensors_use_scalar_loads(emu, dtype):
    """W % 4 == 0 but a tensor one element into its buffer: the launcher must pick scalar loads (a vector load
    there would fault on the device, and fails the emulation)."""
    arrays = [a.astype(dtype) for a in make_inputs(5, 1, 3, 6, 16, 5, 5.0)]
    aligned, used = run(emu, arrays, 5, 1)
    assert used == 1
    for i in range(len(arrays)):
        shifted = []
        for j, a in enumerate(arrays):
            if j == i:
                buf = np.empty(a.size + 1, dtype=a.dtype)
                view = buf[1:].reshape(a.shape)
                view[...] = a
                a = view
            shifted.append(a)
        out, used = run(emu, shifted, 5, 1)
        assert used == 0, f"tensor {i} misaligned, yet the vector kernel was chosen"
        assert rel_err(out, aligned) <= (FP32_BOUND if dtype == np.float32 else FP16_BOUND)


@pytest.mark.parametrize("w,compiled", [(32766, True), (32767, False)])
def test_emulated_kernel_at_the_16_bit_coordinate_limit(emu, w, compiled):
    """K = 5 (pad 2): frames up to 32766 columns run the compiled kernel with 16-bit tap coordinates, wider ones
    the run-time-K kernel with 32-bit ones. Offsets up to +-50000 columns and +-40 rows (far past both borders, and
    past the 16-bit range, where the saturated coordinate must still clamp to the formula's border) give the CPU
    kernel's values either way."""
    rng = np.random.default_rng(w)
    arrays = make_inputs(3, 1, 1, 2, w, 5, 1.0)
    for i in (4, 7):  # beta: columns
        arrays[i] = rng.uniform(-50000, 50000, arrays[i].shape).astype(np.float32)
    for i in (3, 6):  # alpha: rows
        arrays[i] = rng.uniform(-40, 40, arrays[i].shape).astype(np.float32)
    out, used_compiled = run_kind(emu, arrays, 5, 1)
    assert used_compiled == compiled
    assert rel_err(out, cpu_kernel(arrays, 5, 1)) <= FP32_BOUND
