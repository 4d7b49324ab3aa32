"""A minimal standard-ops ONNX export, used only when `export.to_onnx` is not importable.

To be replaced by export.to_onnx (issue 3) once it lands; kept here so calibration can be developed and tested
before it does. Differences from the real export: no in-graph pad-to-32 (the graph takes H, W that are multiples of
32; calib pads on the host, which is a no-op for a graph that pads itself), no metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from sfadacof.models import AdaCoFNet
from sfadacof.synthesis import synthesis_forward


class _Core(nn.Module):
    """frame0, frame2 (B, 3, H, W), H and W multiples of 32 -> frame1, the synthesis in standard ops."""

    def __init__(self, model: AdaCoFNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, f0: Tensor, f2: Tensor) -> Tensor:
        m = self.model
        maps = m.estimate(f0, f2)
        k, d, shift = m.kernel_size, m.dilation, -m.kernel_pad
        # synthesis_forward directly (not the autograd.Function wrapper, which the tracer cannot size dynamically).
        o1 = synthesis_forward(f0, maps.weight1, maps.alpha1, maps.beta1, k, d, shift)
        o2 = synthesis_forward(f2, maps.weight2, maps.alpha2, maps.beta2, k, d, shift)
        v = maps.occlusion
        return v * o1 + (1 - v) * o2


def export_core(model: AdaCoFNet, out: Path, size: tuple[int, int] = (64, 64), opset: int = 17) -> Path:
    x = torch.rand(1, 3, *size)
    axes = {0: "batch", 2: "height", 3: "width"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape checks: shapes are dynamic axes here
        torch.onnx.export(_Core(model.eval()), (x, x.clone()), str(out), input_names=["frame0", "frame2"],
                          output_names=["frame1"], dynamic_axes={"frame0": axes, "frame2": axes, "frame1": axes},
                          opset_version=opset, dynamo=False)
    return out
