"""Device memory an engine will reserve for activations, estimated from the ONNX graph before TensorRT builds it.

TensorRT sizes an execution context's memory for the largest shape of its optimisation profile, so a profile's max
decides whether an engine fits a GPU at all. The estimate is the peak, over the graph's nodes in topological order,
of the bytes of every tensor alive at that node (produced and still to be consumed), at the given input shape and
in the graph's own types (so an fp16 graph counts 2 bytes where it is fp16). TensorRT fuses element-wise layers into
their producers and reuses memory the same way, so the real figure is usually lower: this is an upper estimate.

Tensor sizes come from one small probe run in ONNX Runtime (CPU) of everything before the synthesis node, at
PROBE x PROBE: ONNX shape inference cannot follow the graph's shape-computed reflect pad, while the network is fully
convolutional on a padded frame, so every 4-D tensor's size scales exactly with batch x padded pixels. The synthesis
node and what follows it (the crop, the output cast) are frame-sized.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, shape_inference

from plugins.onnx_node import OP_TYPE

PROBE = 64  # a multiple of the model's pad multiple (32): the probe's padded size is the probe itself
SIZE_MULTIPLE = 32


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    typed = shape_inference.infer_shapes(model)
    return {v.name: v.type.tensor_type.elem_type
            for v in list(typed.graph.input) + list(typed.graph.value_info) + list(typed.graph.output)
            if v.type.tensor_type.elem_type}


def tensor_sizes(model: onnx.ModelProto, shape: tuple[int, ...]) -> dict[str, int]:
    """Bytes of every tensor of the graph at frame input `shape` (NCHW)."""
    import onnxruntime as ort

    n, c, h, w = shape
    padded = -(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE * -(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE
    scale = n * padded / (PROBE * PROBE)
    types = _elem_types(model)
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    # everything downstream of a synthesis node is frame-sized; the rest is probed
    downstream: set[str] = set()
    for node in model.graph.node:
        if node.op_type == OP_TYPE or any(t in downstream for t in node.input):
            downstream.update(node.output)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    keep = [nd for nd in probe.graph.node if not any(o in downstream for o in nd.output)]
    del probe.graph.node[:]
    probe.graph.node.extend(keep)
    del probe.graph.output[:]
    names = [o for nd in keep for o in nd.output if o]
    probe.graph.output.extend(helper.make_tensor_value_info(t, types.get(t, onnx.TensorProto.FLOAT), None)
                              for t in names)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as it is
    opts.log_severity_level = 3  # the cut graph leaves initializers unused: ORT's warnings about that are noise
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {vi.name: np.random.default_rng(0).random((1, c, PROBE, PROBE)).astype(
        helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)) for vi in inputs}
    sizes = {vi.name: n * c * h * w * helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).itemsize
             for vi in inputs}
    for name, arr in zip(names, sess.run(names, feed)):
        sizes[name] = int(arr.nbytes * scale) if arr.ndim == 4 else arr.nbytes
    frame_elems = int(n * c * padded)
    for name in downstream:
        sizes[name] = frame_elems * helper.tensor_dtype_to_np_dtype(types.get(name, onnx.TensorProto.FLOAT)).itemsize
    return sizes


def peak_activation_bytes(model: onnx.ModelProto, shape: tuple[int, ...]) -> int:
    """Peak bytes of simultaneously live activations (graph inputs included, weights excluded)."""
    sizes = tensor_sizes(model, shape)
    inits = {t.name for t in model.graph.initializer}
    nodes = list(model.graph.node)
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            if t:
                last_use[t] = i
    end = len(nodes)
    for o in model.graph.output:
        last_use[o.name] = end
    born = {vi.name: -1 for vi in model.graph.input if vi.name not in inits}
    for i, n in enumerate(nodes):
        for t in n.output:
            if t:
                born.setdefault(t, i)
    peak = 0
    for i in range(len(nodes)):
        live = sum(sizes.get(t, 0) for t, b in born.items() if b <= i <= last_use.get(t, b))
        peak = max(peak, live)
    return peak


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in model.graph.initializer)
