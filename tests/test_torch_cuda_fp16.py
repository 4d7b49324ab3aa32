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
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    proc = subprocess.run([sys.executable, "-m", "runtime.infer", str(pairs), "-o", str(tmp_path / "out"),
                           "--backend", "torch", "--device", "cpu", "--precision", "fp16"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")
def test_backend_refuses_cuda_without_cuda():
    with pytest.raises(UserError, match="no CUDA"):
        fp16.TorchCudaFp16Backend(None, device="cuda")
