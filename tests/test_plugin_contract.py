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
