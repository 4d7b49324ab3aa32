"""runtime/flops.py against PyTorch's own FLOP count of the eager model (torch.utils.flop_counter.FlopCounterMode) at
the same size: the exported SF-AdaCoF graph (an odd size: the in-graph pad to 32 must resolve), a small graph with
the other counted kinds (grouped convolution, transposed convolution, MatMul), and the split over the precisions
OpenVINO's bf16 model executes (the offset heads' share is fp32)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from runtime.flops import floor_seconds, graph_macs, macs_by_precision

pytest.importorskip("openvino")
pytestmark = pytest.mark.usefixtures("single_torch_thread")
OFFSET_HEADS = ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2")


@pytest.fixture(scope="module")
def exported(ckpt, ckpt_exports):
    """The session's seeded checkpoint: its eager model and its standard-op export (conftest.py, read only)."""
    from sfadacof.checkpoint import load_checkpoint

    return load_checkpoint(ckpt).model.eval(), ckpt_exports["onnx"]


def _torch_counts(model, *inputs):
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return fc


@pytest.mark.parametrize("w, h, batch", [(100, 70, 1), (64, 64, 2)])
def test_graph_count_equals_pytorch_count(exported, w, h, batch):
    model, path = exported
    x = torch.rand(batch, 3, h, w)
    fc = _torch_counts(model, x, x.clone())
    m = graph_macs(path, w, h, batch)
    assert 2 * m["total"] == fc.get_total_flops() > 0
    assert m["total"] == m["Conv"] and len(m["by_node"]) == 130  # SF-AdaCoF: convolutions only, 130 of them


class _Mixed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.g = torch.nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.t = torch.nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.m = torch.nn.Parameter(torch.rand(40, 24))

    def forward(self, x):
        y = self.t(self.g(self.c(x)))          # N x 6 x 2H x 2W
        return torch.matmul(y, self.m[: y.shape[-1]])


def test_other_kinds_equal_pytorch_count(tmp_path):
    model = _Mixed().eval()
    x = torch.rand(1, 3, 10, 20)
    path = tmp_path / "mixed.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"])
    fc = _torch_counts(model, x)
    m = graph_macs(path, 20, 10)
    assert m["Conv"] > 0 and m["ConvTranspose"] > 0 and m["MatMul"] > 0
    # hand-worked: conv 8*10*20*(3*9) + grouped 8*10*20*(2*9) + transposed 8*10*20*(6*4) + matmul 6*20*24*40
    assert m["total"] == 8 * 200 * 27 + 8 * 200 * 18 + 8 * 200 * 24 + 6 * 20 * 24 * 40
    assert 2 * m["total"] == fc.get_total_flops()


def test_bf16_split_keeps_the_offset_heads_fp32(exported):
    """OpenVINO bf16: the convolutions' MACs split into bf16 and fp32, and the fp32 share is exactly the offset heads'
    (PyTorch's count of those four modules); the floor is the sum of each share over its peak."""
    from runtime.backends.openvino_backend import OpenVINOBackend, native_bf16

    if not native_bf16():
        pytest.skip("bf16 runs only on a CPU with native bf16 (AVX512_BF16 or AMX)")
    model, path = exported
    w, h = 96, 64
    x = torch.rand(1, 3, h, w)
    fc = _torch_counts(model, x, x.clone())
    heads = sum(v for k, counts in fc.get_flop_counts().items() if k.split(".")[-1] in OFFSET_HEADS
                for v in counts.values())
    m = graph_macs(path, w, h)
    with OpenVINOBackend(path, precision="bf16") as b:
        split = macs_by_precision(m["by_node"], b.runtime_precisions((1, 3, h, w)))
    assert set(split) == {"fp32", "bf16"} and sum(split.values()) == m["total"]
    assert 2 * split["fp32"] == heads > 0
    assert floor_seconds(split, {"fp32": 100.0, "bf16": 1000.0}) == pytest.approx(
        2 * split["fp32"] / 100e9 + 2 * split["bf16"] / 1000e9)
    assert floor_seconds(split, {"fp32": 100.0, "bf16": None}) is None
