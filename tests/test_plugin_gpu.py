"""The CUDA kernels of the fused AdaCoF synthesis op (libsfadacof_cuda, the kernels the TensorRT plugin launches)
against the PyTorch reference op (sfadacof.synthesis) on the same GPU, and against the C++ CPU kernel: the fused
kernel the plugin launches (its vector-load path where W % 4 == 0 and the tensors are aligned, its scalar-load path
otherwise) and the original-style kernel.

Bounds (max |kernel - reference| / max(1, max |reference|)):
  * float32: <= 1e-5 (observed differences come from FMA contraction on the GPU);
  * float16 tensors (with float16 or float32 offsets): <= 1e-3 against the float32 reference evaluated on the
    same float16-rounded inputs -- the output's own float16 rounding is 2^-11 ~ 4.9e-4 of its magnitude; the
    arithmetic inside stays float32.
Skipped (conftest) without a CUDA GPU; the libraries are built for this GPU's architecture if none is found.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from plugins import _libs
from tests.helpers import ensure_built

pytestmark = pytest.mark.gpu

FP32_BOUND = 1e-5
FP16_BOUND = 1e-3


@pytest.fixture(scope="session")
def cuda_op(tmp_path_factory):
    import torch

    from plugins import build, cuda_op as mod

    if _libs.find_library(_libs.CUDA_LIBRARY) is None and (shutil.which("cmake") is None or shutil.which("nvcc") is None):
        pytest.fail("libsfadacof_cuda is not built and cmake/nvcc are not on PATH: run `python -m plugins.build`")
    major, minor = torch.cuda.get_device_capability()
    arch = f"{major}{minor}"
    found = _libs.find_library(_libs.CUDA_LIBRARY)
    archs = build.built_cuda_archs(found) if found else None
    # A library compiled for other architectures (e.g. CI's single arch) has no code for this GPU: rebuild.
    force = archs is not None and arch not in archs
    ensure_built([_libs.CPU_LIBRARY, _libs.CUDA_LIBRARY], tmp_path_factory.mktemp("sfadacof-build"),
                       cuda_archs=arch, force=force)
    mod._lib.cache_clear()
    mod.library_path()
    return mod


def make_inputs(seed, b, c, h, w, k, offset_scale, device="cuda"):
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    frames = [torch.rand((b, c, h, w), generator=g) for _ in range(2)]
    maps = []
    for _ in range(2):
        wgt = torch.softmax(torch.randn((b, k * k, h, w), generator=g), dim=1)
        alpha = (torch.rand((b, k * k, h, w), generator=g) * 2 - 1) * offset_scale
        beta = (torch.rand((b, k * k, h, w), generator=g) * 2 - 1) * offset_scale
        maps += [wgt, alpha, beta]
    occ = torch.rand((b, 1, h, w), generator=g)
    return [t.to(device) for t in (frames[0], frames[1], *maps, occ)]


def reference(inputs, k, d):
    """Spec 'Whole model' steps 4-5 with the PyTorch reference op, in float32 on the inputs' device."""
    from sfadacof.synthesis import fused_reference

    return fused_reference(inputs, k, d)


def rel_err(out, ref) -> float:
    out, ref = out.double(), ref.double()
    return float((out - ref).abs().max() / max(1.0, float(ref.abs().max())))


# W % 4 == 0 runs the vector-load kernel, any other W the scalar-load one (pixels past the row's end computed on the
# last column and not stored); K = 5 and 11 are compiled kernels, K = 3 / d = 2 and K = 7 the run-time-K one.
SHAPES = [
    pytest.param(2, 3, 67, 93, 5, 1, 12.0, id="K5d1-b2-67x93-scalar"),
    pytest.param(2, 3, 67, 92, 5, 1, 12.0, id="K5d1-b2-67x92-vector"),
    pytest.param(2, 3, 41, 39, 3, 2, 8.0, id="K3d2-b2-41x39"),
    pytest.param(1, 3, 64, 96, 11, 1, 20.0, id="K11d1-64x96-vector"),
    pytest.param(1, 3, 33, 70, 11, 1, 20.0, id="K11d1-33x70-scalar"),
    pytest.param(1, 5, 33, 130, 5, 1, 6.0, id="K5-C5-two-channel-passes"),
    pytest.param(1, 4, 20, 64, 5, 1, 6.0, id="K5-C4-vector-two-passes"),
    pytest.param(1, 3, 32, 257, 7, 1, 9.0, id="K7-generic-path"),
    pytest.param(1, 3, 5, 4, 5, 1, 3.0, id="K5-tiny-5x4"),
    pytest.param(1, 3, 9, 1, 5, 1, 3.0, id="K5-one-column"),
    pytest.param(1, 3, 1, 6, 5, 1, 3.0, id="K5-one-row"),
]


@pytest.mark.parametrize("b,c,h,w,k,d,scale", SHAPES)
def test_cuda_fp32_matches_pytorch_reference(cuda_op, b, c, h, w, k, d, scale):
    inputs = make_inputs(k * 100 + h, b, c, h, w, k, scale)
    out = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=k, dilation=d)
    ref = reference(inputs, k, d)
    err = rel_err(out, ref)
    print(f"fp32 K={k} d={d} {b}x{c}x{h}x{w}: max rel error {err:.3g}")
    assert err <= FP32_BOUND


@pytest.mark.parametrize("b,c,h,w,k,d,scale", SHAPES[:5])
@pytest.mark.parametrize("offset_dtype", ["float16", "float32"])
def test_cuda_fp16_matches_reference_on_rounded_inputs(cuda_op, b, c, h, w, k, d, scale, offset_dtype):
    import torch

    inputs = make_inputs(k * 100 + h + 1, b, c, h, w, k, scale)
    half = [x.half() for x in inputs]
    if offset_dtype == "float32":
        for i in (3, 4, 6, 7):
            half[i] = inputs[i]
    out = cuda_op.adacof_synthesis_cuda(*half, kernel_size=k, dilation=d)
    assert out.dtype == torch.float16
    err = rel_err(out, reference(half, k, d))
    print(f"fp16 (offsets {offset_dtype}) K={k} d={d}: max rel error vs fp32 reference on the same inputs {err:.3g}")
    assert err <= FP16_BOUND


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_naive_kernel_agrees_with_fused_kernel(cuda_op, dtype):
    import torch

    inputs = [x.to(getattr(torch, dtype)) for x in make_inputs(5, 2, 3, 45, 77, 5, 10.0)]
    fused = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1)
    naive = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1, naive=True)
    # float16: the naive path rounds o1 and o2 to float16 before the blend, as the original's separate tensors did.
    assert rel_err(naive, fused) <= (FP32_BOUND if dtype == "float32" else 2 * FP16_BOUND)


def test_cuda_matches_cpu_kernel_on_special_offsets(cuda_op):
    import torch

    from plugins import cpu_op

    inputs = make_inputs(9, 2, 3, 19, 23, 5, 4.0)
    special = torch.tensor([0.0, 1.0, -1.0, 2.999999, -2.999999, 0.5, -0.5, 3e4, -3e4, 1e9, -1e9, 3e38, -3e38])
    g = torch.Generator().manual_seed(0)
    for i in (3, 4, 6, 7):
        idx = torch.randint(0, len(special), inputs[i].shape, generator=g)
        inputs[i] = special[idx].cuda()
    inputs[3][0, 7, 4, 5] = float("nan")
    out = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1).cpu().numpy()
    ref = cpu_op.adacof_synthesis_cpu(*[x.cpu().numpy() for x in inputs], kernel_size=5, dilation=1)
    assert np.array_equal(np.isnan(out), np.isnan(ref)) and np.all(np.isnan(out[0, :, 4, 5]))
    finite = ~np.isnan(ref)
    assert np.max(np.abs(out[finite] - ref[finite])) <= FP32_BOUND * max(1.0, np.max(np.abs(ref[finite])))


def test_cuda_runs_on_the_current_stream_and_rejects_bad_input(cuda_op):
    import torch

    inputs = make_inputs(3, 1, 3, 40, 40, 5, 5.0)
    ref = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1)
    side.synchronize()
    assert torch.equal(out, ref)
    with pytest.raises(ValueError, match="must be even"):
        cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=4, dilation=1)
    with pytest.raises(TypeError):
        cuda_op.adacof_synthesis_cuda(inputs[0].half(), *inputs[1:], kernel_size=5, dilation=1)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_misaligned_tensors_take_the_scalar_path(cuda_op, dtype):
    """Tensors whose data does not start on a vector boundary (a view one element in) with W % 4 == 0: the launcher
    must not use vector loads there; results as for aligned copies."""
    import torch

    inputs = [x.to(getattr(torch, dtype)) for x in make_inputs(21, 1, 3, 24, 32, 5, 7.0)]
    shifted = []
    for x in inputs:
        buf = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
        view = buf[1:].view(x.shape)
        view.copy_(x)
        shifted.append(view)
    assert shifted[0].data_ptr() % 8 != 0
    out = cuda_op.adacof_synthesis_cuda(*shifted, kernel_size=5, dilation=1)
    bound = FP32_BOUND if dtype == "float32" else FP16_BOUND
    assert rel_err(out, reference(inputs, 5, 1)) <= bound
    # Another instantiation (scalar loads): the same arithmetic, FMA contraction may differ.
    assert rel_err(out, cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1)) <= bound


def test_cuda_vector_and_scalar_paths_agree(cuda_op):
    """The same pixels through the vector-load kernel (W = 64) and the scalar-load kernel (the first 64 columns of
    a 65-column frame): offsets within +-0.9 keep the taps of columns j < 60 inside column 62, where both frames hold
    the same values, so those outputs must agree."""
    inputs = make_inputs(31, 1, 3, 16, 65, 5, 0.9)
    narrow = [x[..., :64].contiguous() for x in inputs]
    wide = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1)[..., :60]
    vec = cuda_op.adacof_synthesis_cuda(*narrow, kernel_size=5, dilation=1)[..., :60]
    assert rel_err(vec, wide) <= FP32_BOUND
    assert rel_err(vec, reference(narrow, 5, 1)[..., :60]) <= FP32_BOUND


def test_tiled_is_another_name_for_the_fused_kernel(cuda_op):
    import torch

    inputs = make_inputs(4, 1, 3, 16, 18, 5, 2.0)
    fused = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1)
    assert torch.equal(cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1, impl="tiled"), fused)
    with pytest.raises(ValueError, match="choose one of"):
        cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1, impl="bogus")


@pytest.mark.parametrize("w", [32766, 32767])
def test_cuda_at_the_16_bit_coordinate_limit(cuda_op, w):
    """K = 5: up to 32766 columns the compiled kernel with 16-bit tap coordinates runs, at 32767 the run-time-K one;
    column offsets of +-50000 (past the 16-bit range) must clamp to the formula's borders either way (CPU kernel)."""
    import torch

    from plugins import cpu_op

    inputs = make_inputs(w, 1, 1, 2, w, 5, 40.0)
    g = torch.Generator(device="cpu").manual_seed(w)
    for i in (4, 7):
        inputs[i] = ((torch.rand(inputs[i].shape, generator=g) * 2 - 1) * 50000).cuda()
    out = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1).cpu().numpy()
    ref = cpu_op.adacof_synthesis_cpu(*[x.cpu().numpy() for x in inputs], kernel_size=5, dilation=1)
    assert np.max(np.abs(out - ref)) <= FP32_BOUND * max(1.0, float(np.max(np.abs(ref))))
