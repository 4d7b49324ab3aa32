"""The ONNX node contract (plugins/onnx_node.py, imported by the exporter) and the native code state the same
op identity and limits; the Python wrappers expect the native ABI versions the headers declare."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugins import cpu_op, cuda_op, onnx_node

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _cpp_constant(header: str, name: str) -> str:
    text = (PLUGINS / header).read_text()
    m = re.search(rf"\b{name}\s*=\s*(\"[^\"]*\"|-?\d+)", text) or re.search(rf"#define\s+{name}\s+(\S+)", text)
    assert m, f"{name} not found in plugins/{header}"
    return m.group(1).strip('"')


def test_plugin_identity_matches_onnx_node():
    assert _cpp_constant("adacof_plugin.h", "kPLUGIN_NAME") == onnx_node.OP_TYPE
    assert _cpp_constant("adacof_plugin.h", "kPLUGIN_VERSION") == onnx_node.PLUGIN_VERSION
    assert _cpp_constant("adacof_plugin.h", "kPLUGIN_NAMESPACE") == onnx_node.PLUGIN_NAMESPACE
    assert onnx_node.PLUGIN_NAMESPACE == onnx_node.DOMAIN  # parsers >= 10.10 fall back to the node's domain
    assert _cpp_constant("adacof_plugin.h", "kFIELD_KERNEL_SIZE") == "kernel_size"
    assert _cpp_constant("adacof_plugin.h", "kFIELD_DILATION") == "dilation"
    assert _cpp_constant("adacof_plugin.h", "kFIELD_FP16_OFFSETS") == onnx_node.FP16_OFFSETS
    assert int(_cpp_constant("adacof_plugin.h", "kNB_INPUTS")) == len(onnx_node.INPUT_NAMES)


def test_limits_and_abi_versions_match():
    assert int(_cpp_constant("adacof_math.h", "kMaxKernelSize")) == onnx_node.MAX_KERNEL_SIZE
    assert int(_cpp_constant("adacof_math.h", "kMaxDilation")) == onnx_node.MAX_DILATION
    assert int(_cpp_constant("adacof_cpu.h", "SFADACOF_CPU_ABI_VERSION")) == cpu_op.ABI_VERSION
    assert int(_cpp_constant("adacof_kernels.h", "SFADACOF_CUDA_ABI_VERSION")) == cuda_op.ABI_VERSION


def test_make_attributes():
    onnx = pytest.importorskip("onnx")
    attrs = onnx_node.make_attributes(5, 1)
    assert attrs == {"kernel_size": 5, "dilation": 1, "plugin_version": "1", "plugin_namespace": "sfadacof"}
    node = onnx.helper.make_node(onnx_node.OP_TYPE, list(onnx_node.INPUT_NAMES), list(onnx_node.OUTPUT_NAMES),
                                 domain=onnx_node.DOMAIN, **attrs)
    types = {a.name: a.type for a in node.attribute}
    assert types["kernel_size"] == onnx.AttributeProto.INT and types["dilation"] == onnx.AttributeProto.INT
    assert types["plugin_version"] == onnx.AttributeProto.STRING
    assert onnx_node.kernel_pad(5, 1) == 2 and onnx_node.kernel_pad(3, 2) == 2 and onnx_node.kernel_pad(11, 1) == 5
    for bad in [(4, 1), (0, 1), (3, 0), (65, 1), (3, 65), (2.5, 1)]:
        with pytest.raises(ValueError):
            onnx_node.make_attributes(*bad)
    assert onnx_node.make_attributes(4, 2)["kernel_size"] == 4  # (K-1)*d even
    # fp16 offsets: an explicit INT attribute only when opted in; absent means off (the plugin's default)
    on = onnx.helper.make_node(onnx_node.OP_TYPE, ["x"], ["y"], **onnx_node.make_attributes(5, 1, fp16_offsets=True))
    assert [(a.name, a.type, a.i) for a in on.attribute if a.name == "fp16_offsets"] == [
        ("fp16_offsets", onnx.AttributeProto.INT, 1)]
    assert "fp16_offsets" not in onnx_node.make_attributes(5, 1, fp16_offsets=False)


def test_exported_graphs_never_opt_into_fp16_offsets(tmp_path, ckpt, ckpt_exports):
    """Neither the fp32 export (the default exporter's, of the session's seeded `ckpt`: conftest.py, no export here)
    nor its fp16 form (what runtime.build_engine --fp16 parses) carries fp16_offsets, and the fp16 form feeds the node
    fp32 offsets: the plugin's default refuses fp16 offsets, so no build may pick them."""
    onnx = pytest.importorskip("onnx")
    from export.cache import onnx_for_checkpoint
    from export.fp16_graph import convert_file

    path = onnx_for_checkpoint(ckpt, synthesis="plugin")  # ckpt_exports["default"] where the C++ kernel is built
    convert_file(path, tmp_path / "m16.onnx", synthesis="fp16")
    for f in (path, tmp_path / "m16.onnx"):
        m = onnx.load(str(f))
        node = next(n for n in m.graph.node if n.op_type == onnx_node.OP_TYPE)
        assert onnx_node.FP16_OFFSETS not in {a.name for a in node.attribute}, f
        types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
        assert {types[node.input[i]] for i in (3, 4, 6, 7)} == {onnx.TensorProto.FLOAT}, f


def test_ort_custom_op_runs_nodes_with_and_without_the_opt_in(tmp_path):
    """The ORT custom op (float32 throughout) gives the same frame for a node with fp16_offsets=1 as without it."""
    pytest.importorskip("onnxruntime_extensions")
    import numpy as np
    import onnx
    import onnx.helper as oh
    import onnxruntime as ort

    from runtime.backends import ort_custom_op

    k, rng = 3, np.random.default_rng(0)
    chans = {n: 3 if n.startswith("frame") else 1 if n == "occlusion" else k * k for n in onnx_node.INPUT_NAMES}
    feed = {n: rng.random((1, c, 8, 8), dtype=np.float32) for n, c in chans.items()}
    outs = []
    for opt_in in (False, True):
        node = oh.make_node(onnx_node.OP_TYPE, list(onnx_node.INPUT_NAMES), ["frame1"], domain=onnx_node.DOMAIN,
                            **onnx_node.make_attributes(k, 1, fp16_offsets=opt_in))
        g = oh.make_graph([node], "g", [oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, c, 8, 8])
                                        for n, c in chans.items()],
                          [oh.make_tensor_value_info("frame1", onnx.TensorProto.FLOAT, [1, 3, 8, 8])])
        m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid(onnx_node.DOMAIN, 1)])
        sess = ort.InferenceSession(m.SerializeToString(), ort_custom_op.session_options(),
                                    providers=["CPUExecutionProvider"])
        outs.append(ort_custom_op.run_session(sess, ["frame1"], feed)[0])
    assert outs[0].shape == (1, 3, 8, 8) and np.array_equal(outs[0], outs[1])
