"""The AdaCoF synthesis as an OpenVINO subgraph, put in place of the standard-op export's lowering.

    replace_synthesis(model, kernel_size, dilation) -> int   # nodes of the new subgraph

Opt-in (OpenVINOBackend(..., gather_synthesis=True)); the CPU default keeps the export's lowering. Measured on the
project's 2-core machine, interleaved in one process, 960x507: bf16 1.72 s against 1.81 s a frame, fp32 2.30 against
2.43 s; but peak memory at 1920x1080 2.52 GB against 1.95 GB (bf16; fp32 2.45 against 1.88) -- not from the Gather
itself (GatherElements in this structure measured the same) nor from the edge pad (per-corner clamps likewise);
where OpenVINO's memory planner loses the 0.57 GB was not found. The default's 1080p bound (2.5 GB) decides.

The standard-op export (export/standard_synthesis.py) writes the synthesis in plain ONNX ops, one GatherElements
per bilinear corner of each tap with its index Expand-ed over the channels: ONNX's Gather has no batch dimensions,
and on OpenVINO's CPU plugin GatherElements and that Expand are reference (non-JIT) kernels. OpenVINO's own Gather
has `batch_dims`, so this module rebuilds the same arithmetic from the same nine input tensors (named by
export.core) with one index computation per tap:

  * the frame is edge-padded by one pixel on every side (Pd, (H+2) x (W+2), viewed flat as (B, C, N));
  * per tap: P = clip(i + k*d - pad + trunc(alpha) + 1, 0, H) and likewise Qc over [0, W]; Pd[P, Qc] and its right,
    lower and lower-right neighbours are exactly the four corners the op reads, each clamped into the frame on its
    own (MODEL.md): for r = i + k*d - pad + trunc(alpha), padded row P is row clip(P - 1, 0, H-1) = clip(r, 0, H-1)
    and padded row P + 1 is row clip(P, 0, H-1) = clip(r + 1, 0, H-1), because r <= -1 maps both to row 0 and
    r >= H-1 both to row H-1 either way (columns alike). So one index computation per tap: n = P*(W+2) + Qc, the
    corners at n, n + 1, n + W+2, n + W+3 (int32, in range by construction);
  * Gather(Pd flat, n as (B, H*W), axis 2, batch_dims 1) -> (B, C, H*W) per corner: no index Expand over the
    channels; the per-tap maps come from one planar Split of each (B, K*K, H*W) map;
  * the corners times W*(1-fa)*(1-fe), W*(1-fa)*fe, W*fa*(1-fe), W*fa*fe, summed (00 + 01) + (10 + 11) per tap;
    trunc(x) = Sign(x) * Floor(|x|), fa = alpha - trunc(alpha) (negative offsets extrapolate, as the op does).
  * the two directions are blended as the op does: v * o1 + (1 - v) * o2.
Same arithmetic up to float32 summation order (the four corner products are summed by ReduceSum); one tap at a time,
so the extra memory is a few frame-sized tensors at any K. Indices are int32: (H+2)(W+2) < 2^31.
"""

from __future__ import annotations

import numpy as np

# Opset of the ops built here (Gather with batch_dims is opset 8; Pad with "edge" mode opset 1).
_OPSET = "opset13"


def _ops():
    import importlib

    return importlib.import_module(f"openvino.{_OPSET}")


def build_synthesis(f0, f2, w1, a1, b1, w2, a2, b2, occ, kernel_size: int, dilation: int):
    """The fused op's output (B, C, H, W) from its nine inputs (ov.Output), kernel_size K and dilation d."""
    o = _ops()

    def i64(v):
        return o.constant(np.array(v, dtype=np.int64))

    def f32(v):
        return o.constant(np.array(v, dtype=np.float32))

    pad = ((kernel_size - 1) * dilation) // 2
    shape = o.shape_of(f0, "i64")  # (B, C, H, W)
    h = o.gather(shape, i64(2), i64(0))  # scalars
    w = o.gather(shape, i64(3), i64(0))
    h_f, w_f = o.convert(h, "f32"), o.convert(w, "f32")
    stride = o.convert(o.add(w, i64(2)), "i32")  # W + 2: the row stride of the padded frame
    flat = i64([1, 1, -1])
    # i and j of every flat pixel n = i*W + j, as (1, 1, H*W) float
    hw = o.concat([o.unsqueeze(h, i64(0)), o.unsqueeze(w, i64(0))], 0)
    rows = o.reshape(o.broadcast(o.reshape(o.range(f32(0.0), h_f, f32(1.0), "f32"), i64([-1, 1]), False), hw),
                     flat, False)
    cols = o.reshape(o.broadcast(o.range(f32(0.0), w_f, f32(1.0), "f32"), hw), flat, False)
    zero = f32(0.0)
    one = f32(1.0)

    def taps(x):
        """(B, K*K, H, W) -> K*K tensors (B, 1, H*W): slices of a planar view along its outer axis (one Slice per
        tap, as the export's lowering does: a single Split with K*K outputs measured 0.6 GB more at 1080p)."""
        flat_x = o.reshape(x, i64([0, 0, -1]), True)
        return [o.slice(flat_x, i64([t]), i64([t + 1]), i64([1]), i64([1])).output(0)
                for t in range(kernel_size * kernel_size)]

    def trunc(x):
        return o.multiply(o.sign(x), o.floor(o.abs(x)))

    def direction(frame, weight, alpha, beta):
        # the frame edge-padded by one pixel, flat: (B, C, (H+2)*(W+2))
        src = o.reshape(o.pad(frame, i64([0, 0, 1, 1]), i64([0, 0, 1, 1]), "edge"), i64([0, 0, -1]), True)
        acc = None
        for t, (a, e, wt) in enumerate(zip(taps(alpha), taps(beta), taps(weight))):
            k, l = divmod(t, kernel_size)
            a_int, e_int = trunc(a), trunc(e)
            fa, fe = o.subtract(a, a_int), o.subtract(e, e_int)
            # padded row/column of the top-left corner, clamped so that its +1 neighbour is the clamped r + 1
            p = o.minimum(o.maximum(o.add(o.add(a_int, rows), f32(k * dilation - pad + 1)), zero), h_f)
            c = o.minimum(o.maximum(o.add(o.add(e_int, cols), f32(l * dilation - pad + 1)), zero), w_f)
            i00 = o.squeeze(o.add(o.multiply(o.convert(p, "i32"), stride), o.convert(c, "i32")), i64([1]))  # (B, HW)
            corners = [o.gather(src, idx, i64(2), 1) for idx in  # (B, C, H*W) each
                       (i00, o.add(i00, np.int32(1)), o.add(i00, stride), o.add(o.add(i00, stride), np.int32(1)))]
            ga, ge = o.subtract(one, fa), o.subtract(one, fe)
            w_ga, w_fa = o.multiply(wt, ga), o.multiply(wt, fa)
            coef = (o.multiply(w_ga, ge), o.multiply(w_ga, fe), o.multiply(w_fa, ge), o.multiply(w_fa, fe))
            terms = [o.multiply(x, cf) for x, cf in zip(corners, coef)]
            tap = o.add(o.add(terms[0], terms[1]), o.add(terms[2], terms[3]))
            acc = tap if acc is None else o.add(acc, tap)
        return o.reshape(acc, shape, False)  # (B, C, H, W)

    out1 = direction(f0, w1, a1, b1)
    out2 = direction(f2, w2, a2, b2)
    return o.add(o.multiply(occ, out1), o.multiply(o.subtract(one, occ), out2))


def replace_synthesis(model, input_tensors: tuple[str, ...], output_tensor: str, kernel_size: int,
                      dilation: int) -> bool:
    """Swap the subgraph between the tensors `input_tensors` (the fused node's nine inputs) and `output_tensor` for
    build_synthesis. False (model unchanged) when any of the tensors is missing."""
    outputs = {}
    for node in model.get_ordered_ops():
        for out in node.outputs():
            for name in out.get_names():
                outputs[name] = out
    if any(t not in outputs for t in (*input_tensors, output_tensor)):
        return False
    new = build_synthesis(*(outputs[t] for t in input_tensors), kernel_size=kernel_size, dilation=dilation)
    old = outputs[output_tensor]
    old.get_tensor().set_names(set())
    for target in list(old.get_target_inputs()):
        target.replace_source_output(new.output(0))
    new.output(0).get_tensor().set_names({output_tensor})
    model.validate_nodes_and_infer_types()
    return True
