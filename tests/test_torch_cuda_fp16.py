"""The FP16 CUDA backend's CPU-testable part (runtime/backends/torch_cuda_fp16.py): which modules stay float32,
what the mixed-precision estimation computes, and the registry's refusal of fp16 on a CPU. The CUDA synthesis
kernel it calls is covered by tests/test_plugin_gpu.py; the whole backend on a GPU by `python -m plugins.gpu_check`.

PSNR bound (45 dB, the issue's target for the FP16 path against fp32): the float16 estimation with float32 offset
heads, followed by the float32 PyTorch synthesis (the CUDA kernel's arithmetic is float32 too; only its final store
rounds to float16, ~2^-12 relative, i.e. far below 45 dB's 5.6e-3 RMS), on real frames with the released weights.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from runtime.backends import torch_cuda_fp16 as fp16
from sfadacof.checkpoint import load_checkpoint
from sfadacof.errors import UserError
from sfadacof.metrics import psnr
from sfadacof.models import pad_to_multiple
from tests.helpers import bikes_frames, crop, seeded_model

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

MIN_PSNR_DB = 45.0


def test_offset_heads_stay_float32_and_the_rest_is_float16_channels_last():
    model = seeded_model()
    mixed = fp16.mixed_precision_model(model)
    est = mixed.get_kernel
    offset_params = {f"{h}.head.{n}" for h in fp16.OFFSET_HEADS for n, _ in getattr(est, h).head.named_parameters()}
    assert len(offset_params) == 4 * 8  # 4 heads x 4 convs x (weight, bias)
    for name, p in est.named_parameters():
        if name in offset_params:
            assert p.dtype == torch.float32, name
        else:
            assert p.dtype == torch.float16, name
            if p.dim() == 4:
                assert p.is_contiguous(memory_format=torch.channels_last), name
    for h in ("moduleWeight1", "moduleWeight2", "moduleOcclusion", "moduleConv1", "moduleDeconv2"):
        assert next(getattr(est, h).parameters()).dtype == torch.float16
    # the caller's model is not modified
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_estimate_maps_dtypes_and_values_against_the_float32_model():
    model = seeded_model()
    mixed = fp16.mixed_precision_model(model)
    g = torch.Generator().manual_seed(0)
    f0, f2 = torch.rand((1, 3, 64, 96), generator=g), torch.rand((1, 3, 64, 96), generator=g)
    with torch.no_grad():
        maps = fp16.estimate_maps(mixed, f0, f2)
        ref = model.estimate(f0, f2)
    w1, a1, b1, w2, a2, b2, occ = maps.as_tuple()
    assert [t.dtype for t in (w1, w2, occ)] == [torch.float16] * 3
    assert [t.dtype for t in (a1, b1, a2, b2)] == [torch.float32] * 4
    assert all(t.is_contiguous() for t in maps.as_tuple())
    # offsets of several pixels (the seeded heads' scale) agree with float32 to a small fraction of a pixel
    span = float(ref.alpha1.abs().max())
    assert span > 1.0
    for got, want in ((a1, ref.alpha1), (b1, ref.beta1), (a2, ref.alpha2), (b2, ref.beta2)):
        assert float((got - want).abs().max()) < 0.05 * span
    assert float((w1.float() - ref.weight1).abs().max()) < 2e-2


def test_float16_path_is_within_45_db_of_float32_on_real_frames():
    ckpt = load_checkpoint(None)
    model = ckpt.model.eval()
    mixed = fp16.mixed_precision_model(model)
    frames = bikes_frames(3)
    x0, x2 = (torch.from_numpy(crop(f, w=192, h=128)).permute(2, 0, 1)[None].float() / 255 for f in frames[::2])
    with torch.no_grad():
        want = model(x0, x2)
        p0, p2 = pad_to_multiple(x0), pad_to_multiple(x2)
        maps = fp16.estimate_maps(mixed, p0, p2)
        got = fp16.synthesize_reference(mixed, p0.half().float(), p2.half().float(), maps).half().float()
    got = got[:, :, :128, :192]
    db = psnr(got.clamp(0, 1), want.clamp(0, 1))
    print(f"fp16 estimation + fp32 offsets vs fp32 model on bikes frames: {db:.1f} dB")
    assert db >= MIN_PSNR_DB
    # and it is not trivially equal: float16 really ran
    assert float((got - want).abs().max()) > 0


def test_registry_refuses_fp16_torch_on_cpu_in_one_line():
    from runtime.backends.registry import BackendOptions, create_backend

    with pytest.raises(UserError, match="needs --device cuda"):
        create_backend("torch", BackendOptions(device="cpu", precision="fp16"))


def test_infer_cli_fp16_on_cpu_exits_with_one_line(tmp_path):
    """A valid pair folder, so the only thing wrong is fp16 on the CPU: exit 2 and the backend's refusal line."""
    from tests.helpers import write_bikes_pair

    pairs = tmp_path / "pairs"
    write_bikes_pair(pairs / "a")
    proc = subprocess.run([sys.executable, "-m", "runtime.infer", str(pairs), "-o", str(tmp_path / "out"),
                           "--backend", "torch", "--device", "cpu", "--precision", "fp16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "--precision fp16 needs --device cuda (got --device cpu)" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_backend_refuses_cuda_without_cuda():
    with pytest.raises(UserError, match="no CUDA"):
        fp16.TorchCudaFp16Backend(None, device="cuda")


# -- TF32 ----------------------------------------------------------------------------------------------------------------

def _snapshot() -> list:
    from runtime.backends.torch_backend import _tf32_snapshot

    matmul, cudnn, leaves = _tf32_snapshot()
    return [matmul, cudnn, [(id(leaf), v) for leaf, v in leaves], torch.backends.cudnn.benchmark]


OFF = (False, False, False)


@pytest.fixture(params=["legacy API", "per-operator API"])
def user_allows_tf32(request):
    """A program that enabled TF32 for its own work, through torch's legacy setters or its per-operator ones
    (torch >= 2.9), with cuDNN's benchmark off; put back afterwards."""
    b = torch.backends
    saved = torch.get_float32_matmul_precision(), b.cudnn.allow_tf32, b.cudnn.benchmark
    if request.param == "legacy API":
        torch.set_float32_matmul_precision("high")
        b.cudnn.allow_tf32 = True
    else:
        b.cuda.matmul.fp32_precision = "tf32"
        b.cudnn.conv.fp32_precision = b.cudnn.rnn.fp32_precision = "tf32"
    b.cudnn.benchmark = False
    before = _snapshot()
    yield before
    b.cuda.matmul.fp32_precision = "none"
    torch.set_float32_matmul_precision(saved[0])
    b.cudnn.allow_tf32, b.cudnn.benchmark = saved[1:]


def _inside() -> tuple:
    """(CUDA matmuls may use TF32, cuDNN convolutions may, cuDNN benchmarks): the per-operator settings, where
    "none" defers to the legacy one."""
    b = torch.backends
    mm = b.cuda.matmul.fp32_precision
    return (mm == "tf32" or (mm == "none" and torch.get_float32_matmul_precision() != "highest"),
            b.cudnn.conv.fp32_precision == "tf32", b.cudnn.benchmark)


def test_no_tf32_is_scoped_and_restores_the_callers_settings(user_allows_tf32):
    from runtime.backends.torch_backend import no_tf32

    before = user_allows_tf32
    assert _inside() == (True, True, False)
    with no_tf32():
        assert _inside() == OFF
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32  # no API mix
    assert _snapshot() == before
    with pytest.raises(RuntimeError, match="inside"):
        with no_tf32(cudnn_benchmark=True):
            assert _inside() == (False, False, True)
            raise RuntimeError("inside")
    assert _snapshot() == before


def _record_state_in(module: torch.nn.Module, seen: list) -> None:
    """Every convolution of `module` records the state it runs under."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_pre_hook(lambda mod, args: seen.append(_inside()))


def test_fp32_torch_backend_runs_without_tf32(user_allows_tf32):
    """The float32 backend (the reference of runtime.accuracy, and --backend torch --device cuda) runs its
    convolutions with TF32 off, whole and in pieces, and leaves the caller's TF32 choice as it was."""
    from runtime.backends.torch_backend import TorchBackend
    from sfadacof.checkpoint import LoadedCheckpoint

    model = seeded_model()
    be = TorchBackend(loaded=LoadedCheckpoint(model=model, path=None, sha256="", variant="seeded", kernel_size=5,
                                              dilation=1, epoch=None))
    seen: list = []
    _record_state_in(model, seen)
    x = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0)).numpy()
    counts = []
    for run in (be.infer, lambda a, b: be.infer_near_discontinuity(a, b, 1e-4), be.infer_in_pieces):
        run(x, x)
        counts.append(len(seen))
    assert counts[0] > 0 and counts[1] > counts[0] and counts[2] > counts[1] and set(seen) == {OFF}
    assert _snapshot() == user_allows_tf32


def test_fp16_backend_runs_its_fp32_offset_heads_without_tf32(user_allows_tf32):
    """forward_gpu: the float32 offset heads with TF32 off and cuDNN benchmarking, both only while it runs. The
    CUDA synthesis kernel is replaced by the float32 reference synthesis (no GPU here); the estimation runs on CPU."""
    model = seeded_model()
    be = object.__new__(fp16.TorchCudaFp16Backend)
    be.model, be.impl = fp16.mixed_precision_model(model), "fused"
    seen: list = []
    _record_state_in(be.model.get_kernel.moduleAlpha1, seen)  # a float32 offset head

    def synthesis(h0, h2, *maps, kernel_size, dilation, out, impl):
        from sfadacof.models import KernelMaps
        return fp16.synthesize_reference(be.model, h0, h2, KernelMaps(*maps))

    be._cuda_op = type("CudaOpStandIn", (), {"adacof_synthesis_cuda": staticmethod(synthesis)})
    x = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = be.forward_gpu(x, x)
    assert out.shape == (1, 3, 64, 64)
    assert len(seen) == 4 and set(seen) == {(False, False, True)}  # its four convolutions
    assert _snapshot() == user_allows_tf32
