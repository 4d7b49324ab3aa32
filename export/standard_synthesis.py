"""The fused AdaCoF synthesis written out in standard ONNX ops (the `--synthesis onnx` form).

`lower_synthesis_nodes(model)` replaces every `sfadacof::AdaCoFSynthesis` node of a graph by an equivalent subgraph
of plain ONNX ops, so the exact trunk of the plugin graph runs on any ONNX runtime (ONNX Runtime, OpenVINO,
TensorRT without the plugin). Both forms therefore share every node up to the synthesis.

Arithmetic: docs/MODEL.md, "The AdaCoF synthesis op", in the model form that reads the 32-padded frame F
directly with the replication pad folded into the clamp (row index i + k*d - pad + trunc(alpha), clamped into
[0, H-1]). Choices, and why:
  * trunc(x) = Sign(x) * Floor(|x|). No GridSample (it floors; the op truncates toward zero, so a negative offset
    extrapolates with a fraction in (-1, 0)) and no Cast-to-int rounding (ONNX leaves float -> int rounding of
    out-of-range values unspecified; Sign/Floor/Abs are exact).
  * Each of the four corner indices is clamped on its own, in float (exact for integers < 2^24) before the cast,
    with Clip, which every runtime has for float.
  * Gathers: the frame viewed as (B, C, H*W) and one GatherElements per corner along the flat axis, with int32
    flat indices r*W + c (int32: TensorRT's native index type; H*W < 2^31). Measured on ORT CPU at 960x544,
    GatherElements is ~6x faster than Gather along an axis (which copies element by element); the index is
    Expand-ed over the C channels because GatherElements wants it at the output's shape.
  * One tap at a time (K*K unrolled taps per direction): peak extra memory is a few (B, C, H*W) tensors whatever
    K is; gathering all taps at once would need K*K times the frame per corner (GBs at 4K).
  * The bilinear weights are folded with the kernel weight on the 1-channel maps (W*(1-fa)*(1-fe), ...), then
    applied to the 3-channel corners: fewer full-size multiplies than S first and W*S after. This re-associates
    float products: results differ from the reference by float32 rounding (~1e-7 relative), not by algorithm.
Cost on ORT CPU (2 threads, 960x544, K = 5): ~3 s for the synthesis, against ~0.7 s for the C++ kernel of the
plugin form; the trunk (~130 convolutions) is the same in both.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from plugins.onnx_node import DOMAIN, OP_TYPE, check_attributes

FLOAT = TensorProto.FLOAT
INT32 = TensorProto.INT32
INT64 = TensorProto.INT64


class _Builder:
    """Appends uniquely named nodes and initializers under a name prefix."""

    def __init__(self, prefix: str, taken: set[str]) -> None:
        self.prefix = prefix
        self.taken = taken
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._consts: dict[tuple, str] = {}

    def _name(self, hint: str) -> str:
        name, i = f"{self.prefix}/{hint}", 0
        while name in self.taken:
            i += 1
            name = f"{self.prefix}/{hint}_{i}"
        self.taken.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, output: str | None = None, **attrs) -> str:
        out = output or self._name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self._name(f"{hint or op_type}_node"), **attrs))
        return out

    def const(self, value, dtype) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self._name("const")
            self.initializers.append(numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]


def _trunc(b: _Builder, x: str, hint: str) -> str:
    """Round toward zero (C's int cast) as a float: Sign(x) * Floor(|x|), exact for every float (the product of
    +-1 and an integer-valued float). Not Where(x < 0, Ceil, Floor): ORT's Where is ~10x slower than these."""
    return b.op("Mul", [b.op("Sign", [x], f"{hint}_sign"),
                        b.op("Floor", [b.op("Abs", [x], f"{hint}_abs")], f"{hint}_floor")], f"{hint}_trunc")


def _direction(b: _Builder, frame: str, weight: str, alpha: str, beta: str, geo: dict, k_size: int, dilation: int,
               tag: str) -> str:
    """sum over taps of W * S(k, l) for one frame; returns a (B, C, H*W) tensor."""
    pad = ((k_size - 1) * dilation) // 2
    src = b.op("Reshape", [frame, geo["flat_shape"]], f"{tag}_src")  # (B, C, H*W), a free view of the frame
    maps = {n: b.op("Reshape", [x, geo["flat_shape"]], f"{tag}_{n}_flat")  # (B, K*K, H*W)
            for n, x in (("w", weight), ("a", alpha), ("e", beta))}
    zero, one = b.const(0.0, np.float32), b.const(1.0, np.float32)
    acc = None
    for t in range(k_size * k_size):
        k, l = divmod(t, k_size)
        th = f"{tag}_t{t}"
        sl = [b.const([t], np.int64), b.const([t + 1], np.int64), b.const([1], np.int64)]
        a, e, w = (b.op("Slice", [maps[n]] + sl, f"{th}_{n}") for n in ("a", "e", "w"))  # (B, 1, H*W)
        a_int, e_int = _trunc(b, a, f"{th}_a"), _trunc(b, e, f"{th}_e")
        fa = b.op("Sub", [a, a_int], f"{th}_fa")
        fe = b.op("Sub", [e, e_int], f"{th}_fe")
        # row i + k*d - pad + A and column j + l*d - pad + E (replication pad folded into the clamp)
        r = b.op("Add", [a_int, geo[("rows", k * dilation - pad)]], f"{th}_r")
        c = b.op("Add", [e_int, geo[("cols", l * dilation - pad)]], f"{th}_c")
        r1 = b.op("Add", [r, one], f"{th}_r1")
        c1 = b.op("Add", [c, one], f"{th}_c1")
        rows = [b.op("Cast", [b.op("Clip", [x, zero, geo["h_max"]], f"{th}_clip")], f"{th}_ri", to=INT32)
                for x in (r, r1)]
        cols = [b.op("Cast", [b.op("Clip", [x, zero, geo["w_max"]], f"{th}_clip")], f"{th}_ci", to=INT32)
                for x in (c, c1)]
        row_off = [b.op("Mul", [ri, geo["w_i32"]], f"{th}_rw") for ri in rows]  # r * W
        corners = {}
        for (ri, row), (ci, col) in ((x, y) for x in enumerate(row_off) for y in enumerate(cols)):
            flat = b.op("Add", [row, col], f"{th}_i{ri}{ci}")  # (B, 1, H*W)
            # the same index for every channel: GatherElements wants the index at the output's shape
            idx = b.op("Expand", [flat, geo["src_shape"]], f"{th}_x{ri}{ci}")
            corners[(ri, ci)] = b.op("GatherElements", [src, idx], f"{th}_p{ri}{ci}", axis=2)  # (B, C, H*W)
        ga = b.op("Sub", [one, fa], f"{th}_1mfa")
        ge = b.op("Sub", [one, fe], f"{th}_1mfe")
        w_ga = b.op("Mul", [w, ga], f"{th}_wga")
        w_fa = b.op("Mul", [w, fa], f"{th}_wfa")
        coef = {(0, 0): b.op("Mul", [w_ga, ge], f"{th}_w00"), (1, 0): b.op("Mul", [w_fa, ge], f"{th}_w10"),
                (0, 1): b.op("Mul", [w_ga, fe], f"{th}_w01"), (1, 1): b.op("Mul", [w_fa, fe], f"{th}_w11")}
        terms = [b.op("Mul", [corners[key], coef[key]], f"{th}_term") for key in ((0, 0), (1, 0), (0, 1), (1, 1))]
        tap = b.op("Add", [b.op("Add", [terms[0], terms[1]], f"{th}_s"), b.op("Add", [terms[2], terms[3]], f"{th}_s")],
                   f"{th}_tap")
        acc = tap if acc is None else b.op("Add", [acc, tap], f"{th}_acc")
    return acc


def _geometry(b: _Builder, frame: str, k_size: int, dilation: int) -> dict:
    """Shape-derived tensors shared by both directions: per-pixel row/column bases (flattened, per tap offset),
    clamp limits, the flat shapes."""
    pad = ((k_size - 1) * dilation) // 2
    shape = b.op("Shape", [frame], "shape")
    dims = {n: b.op("Gather", [shape, b.const(i, np.int64)], f"dim_{n}", axis=0) for n, i in (("h", 2), ("w", 3))}
    h_f = b.op("Cast", [dims["h"]], "h_f", to=FLOAT)
    w_f = b.op("Cast", [dims["w"]], "w_f", to=FLOAT)
    one = b.const(1.0, np.float32)
    geo = {"h_max": b.op("Sub", [h_f, one], "h_max"), "w_max": b.op("Sub", [w_f, one], "w_max"),
           "w_i32": b.op("Cast", [dims["w"]], "w_i32", to=INT32),
           # (B, C, H*W) and (B, K*K, H*W): Reshape's 0 copies B and C from the input
           "flat_shape": b.const([0, 0, -1], np.int64)}
    # src_shape: (B, C, H*W), the GatherElements index shape
    geo["src_shape"] = b.op("Concat", [b.op("Slice", [shape, b.const([0], np.int64), b.const([2], np.int64)],
                                            "bc"),
                                       b.op("Unsqueeze", [b.op("Mul", [dims["h"], dims["w"]], "hw"),
                                                          b.const([0], np.int64)], "hw_1")], "src_shape", axis=0)
    grid_shape = b.op("Concat", [b.op("Unsqueeze", [dims["h"], b.const([0], np.int64)], "h_1"),
                                 b.op("Unsqueeze", [dims["w"], b.const([0], np.int64)], "w_1")], "hw_shape", axis=0)
    zeros = b.op("ConstantOfShape", [grid_shape], "zeros_hw", value=numpy_helper.from_array(np.zeros(1, np.float32)))
    rows = b.op("Reshape", [b.op("Range", [b.const(0.0, np.float32), h_f, one], "rows"), b.const([-1, 1], np.int64)],
                "rows_col")  # (H, 1)
    cols = b.op("Range", [b.const(0.0, np.float32), w_f, one], "cols")  # (W,)
    flat = b.const([1, 1, -1], np.int64)
    # i and j of every flat pixel n = i*W + j, as (1, 1, H*W) float
    rows_flat = b.op("Reshape", [b.op("Add", [zeros, rows], "rows_hw"), flat], "rows_flat")
    cols_flat = b.op("Reshape", [b.op("Add", [zeros, cols], "cols_hw"), flat], "cols_flat")
    for off in sorted({k * dilation - pad for k in range(k_size)}):
        geo[("rows", off)] = b.op("Add", [rows_flat, b.const(float(off), np.float32)], f"rows_{off}")
        geo[("cols", off)] = b.op("Add", [cols_flat, b.const(float(off), np.float32)], f"cols_{off}")
    return geo


def synthesis_subgraph(inputs: list[str], output: str, kernel_size: int, dilation: int, prefix: str,
                       taken: set[str]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing the fused node `output = AdaCoFSynthesis(*inputs)` in standard ops."""
    k, d = check_attributes(kernel_size, dilation)
    if len(inputs) != 9:
        raise ValueError(f"{OP_TYPE} takes 9 inputs, got {len(inputs)}")
    f0, f2, w1, a1, b1, w2, a2, b2, occ = inputs
    b = _Builder(prefix, taken)
    geo = _geometry(b, f0, k, d)
    o1 = _direction(b, f0, w1, a1, b1, geo, k, d, "dir1")
    o2 = _direction(b, f2, w2, a2, b2, geo, k, d, "dir2")
    v = b.op("Reshape", [occ, geo["flat_shape"]], "occlusion_flat")  # (B, 1, H*W), broadcasts over channels
    blend = b.op("Add", [b.op("Mul", [v, o1], "v_o1"),
                         b.op("Mul", [b.op("Sub", [b.const(1.0, np.float32), v], "one_minus_v"), o2], "v_o2")],
                 "blend")
    b.op("Reshape", [blend, b.op("Shape", [f0], "frame_shape")], "to_bchw", output=output)
    return b.nodes, b.initializers


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output}
    for n in graph.node:
        names.update(n.input)
        names.update(n.output)
        names.add(n.name)
    return names


def lower_synthesis_nodes(model: onnx.ModelProto) -> int:
    """Replace every AdaCoFSynthesis node of the main graph in place; returns how many were replaced.

    The subgraph is inserted where the node was, so the node list stays topologically sorted. The custom domain's
    opset import is dropped when no node uses it any more (a runtime would otherwise look for the domain)."""
    graph = model.graph
    taken = _all_names(graph)
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in graph.node:
        if node.op_type == OP_TYPE and node.domain == DOMAIN:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            nodes, inits = synthesis_subgraph(list(node.input), node.output[0], attrs["kernel_size"],
                                              attrs.get("dilation", 1), f"/synthesis_std{count or ''}", taken)
            new_nodes.extend(nodes)
            graph.initializer.extend(inits)
            count += 1
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    if count and not any(n.domain == DOMAIN for n in graph.node):
        keep = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(keep)
    return count
