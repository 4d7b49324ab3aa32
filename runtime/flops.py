"""The arithmetic a frame costs: multiply-accumulates of an exported graph's convolutions and matrix products at a
given input size, from the graph's own shapes.

    graph_macs(model_path, width, height, batch=1) -> {"Conv": n, "ConvTranspose": n, "MatMul": n, "total": n,
                                                       "by_node": {node name: n}}
    FLOPs = 2 x MACs (a multiply and an add), as FLOP/s peaks count an FMA.

The shapes: the export pads frames to a multiple of 32 inside the graph (Shape -> Mod -> Pad), arithmetic that
onnx.shape_inference cannot propagate (no data propagation through Mod), so every node after the pad would be
unknown. OpenVINO's frontend reads the same ONNX (or IR) file, and once its inputs are reshaped to
batch x 3 x height x width its own shape inference folds that arithmetic, leaving every node static -- without
running anything. The counts (OpenVINO's opset names; weights w as OpenVINO lays them out):

    Convolution                   N*Cout*Ho*Wo * (Cin*kh*kw)           w: Cout x Cin x kh x kw
    GroupConvolution              N*Cout*Ho*Wo * (Cin/G*kh*kw)         w: G x Cout/G x Cin/G x kh x kw
    ConvolutionBackpropData       N*Cin*Hi*Wi * (Cout*kh*kw)           w: Cin x Cout x kh x kw
    GroupConvolutionBackpropData  N*Cin*Hi*Wi * (Cout/G*kh*kw)         w: G x Cin/G x Cout/G x kh x kw
    MatMul                        output elements * K (the shared dimension; transpose_a honoured)

Everything else (the synthesis' gathers and sums, activations, pooling, bias adds) is left out: a few percent of
the work, and no FMA peak applies to it. tests/test_flops.py checks the total against PyTorch's own count of the
eager model at the same size (torch.utils.flop_counter.FlopCounterMode) and against an ONNX-side count by hand.
"""

from __future__ import annotations

import math
import os

_KINDS = {"Convolution": "Conv", "GroupConvolution": "Conv", "ConvolutionBackpropData": "ConvTranspose",
          "GroupConvolutionBackpropData": "ConvTranspose", "MatMul": "MatMul"}


def graph_macs(model_path: str | os.PathLike, width: int, height: int, batch: int = 1) -> dict:
    """MACs of the graph's convolutions and matrix products at this size (see the module docstring)."""
    import openvino as ov

    model = ov.Core().read_model(str(model_path))
    model.reshape({inp.get_any_name(): [batch, 3, height, width] for inp in model.inputs})
    out = {"Conv": 0, "ConvTranspose": 0, "MatMul": 0}
    by_node: dict[str, int] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in _KINDS:
            continue
        x = list(op.get_input_shape(0))
        w = list(op.get_input_shape(1))
        y = list(op.get_output_shape(0))
        if kind == "Convolution":
            macs = math.prod(y) * math.prod(w[1:])
        elif kind == "GroupConvolution":
            macs = math.prod(y) * math.prod(w[2:])
        elif kind == "ConvolutionBackpropData":
            macs = math.prod(x) * math.prod(w[1:])
        elif kind == "GroupConvolutionBackpropData":
            macs = math.prod(x) * math.prod(w[2:])
        else:
            k = x[-2] if op.get_attributes().get("transpose_a") and len(x) > 1 else x[-1]
            macs = math.prod(y) * k
        out[_KINDS[kind]] += macs
        by_node[op.get_friendly_name()] = macs
    out["total"] = out["Conv"] + out["ConvTranspose"] + out["MatMul"]
    out["by_node"] = by_node
    return out


_RUNTIME = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "u8": "int8", "i8": "int8"}


def macs_by_precision(by_node: dict[str, int], executed) -> dict[str, int]:
    """Split graph_macs' by_node over the precisions OpenVINO executes them in: `executed` is
    OpenVINOBackend.runtime_precisions(shape) ((layer type, runtime precision, original layer names) per executed
    node; a fused node names every layer it absorbed). A counted node the runtime graph does not name is fp32."""
    out: dict[str, int] = {}
    seen: set[str] = set()
    for _, precision, names in executed:
        for name in names:
            if name in by_node and name not in seen:
                seen.add(name)
                key = _RUNTIME.get(precision, precision)
                out[key] = out.get(key, 0) + by_node[name]
    rest = sum(v for k, v in by_node.items() if k not in seen)
    if rest:
        out["fp32"] = out.get("fp32", 0) + rest
    return out


def floor_seconds(macs_by_prec: dict[str, int], peaks_gflops: dict[str, float | None]) -> float | None:
    """The least time the counted work could take at the peaks: sum over precisions of 2 * MACs / peak."""
    total = 0.0
    for precision, macs in macs_by_prec.items():
        peak = peaks_gflops.get(precision)
        if not peak:
            return None
        total += 2 * macs / (peak * 1e9)
    return total
