"""Reading the exported graph: which Conv belongs to which part of the network, the calibration subgraph, and the
checks that a Q/DQ graph is what TensorRT's explicit-quantization path accepts.

Conv nodes are mapped to the PyTorch module that produced them, so that "quantize the encoder" means the same thing
for every exporter. The module path comes from, in order:
  1. the weight initializer's name (both torch exporters keep parameter names: `...get_kernel.moduleConv1.0.weight`);
  2. the node name's scope (TorchScript exporter: `/get_kernel/moduleConv1/moduleConv1.0/Conv`);
  3. the dynamo exporter's `pkg.torch.onnx.name_scopes` metadata.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from export.graph import ancestor_nodes, frame_inputs
from sfadacof.errors import UserError

# Layer groups, in network order. `enc<n>`: the level-n encoder block and its pooling conv; `fd<n>`: the feature-
# differencing convs of level n (SF-AdaCoF / noShare only); `dec<n>`: Deconv<n> and Upsample<n>; `heads`: the seven
# offset / weight / occlusion heads (their outputs are sub-pixel offsets and softmax weights fed to the synthesis).
GROUPS: tuple[str, ...] = ("enc1", "enc2", "enc3", "enc4", "enc5", "fd1", "fd2", "fd3", "fd4", "fd5",
                           "dec5", "dec4", "dec3", "dec2", "heads")
ALIASES: dict[str, tuple[str, ...]] = {
    "enc": ("enc1", "enc2", "enc3", "enc4", "enc5"),
    "fd": ("fd1", "fd2", "fd3", "fd4", "fd5"),
    "dec": ("dec5", "dec4", "dec3", "dec2"),
    "unet": ("enc1", "enc2", "enc3", "enc4", "enc5", "dec5", "dec4", "dec3", "dec2"),
    "all": GROUPS,
    "none": (),
}
# The safe default: the U-Net convolutions (encoder, decoder). The heads stay float because their outputs are
# sub-pixel offsets: an int8 step on a head's input moves every sampling tap. The feature-differencing convs stay
# float as well: they are <2% of the MACs and their 1-channel outputs gate the skip tensors multiplicatively.
DEFAULT_GROUPS = "unet"

_MODULE_RE = re.compile(r"(module(?:Conv|Pool|Deconv|Upsample)(\d)(?:_1)?|flowconv(\d)_(?:FD|pr|ne)|"
                        r"module(?:Weight[12]|Alpha[12]|Beta[12]|Occlusion))")
STANDARD_DOMAINS = ("", "ai.onnx")


def parse_groups(spec: str) -> tuple[str, ...]:
    """'unet' / 'enc,dec4' / 'unet,-dec2' (a leading '-' removes) / 'all' -> ordered group names."""
    chosen: list[str] = []
    for part in (p.strip().lower() for p in spec.split(",")):
        if not part:
            continue
        remove = part.startswith("-")
        name = part[1:] if remove else part
        names = ALIASES.get(name, (name,) if name in GROUPS else None)
        if names is None:
            raise UserError(f"--quantize: unknown layer group {name!r}; choose from "
                            f"{', '.join(list(ALIASES) + list(GROUPS))} (prefix '-' to remove)")
        if remove:
            chosen = [n for n in chosen if n not in names]
        else:
            chosen.extend(n for n in names if n not in chosen)
    return tuple(g for g in GROUPS if g in chosen)


def group_of_module(path: str) -> str | None:
    """'get_kernel.moduleConv3.2' -> 'enc3'; None when the path is not a kernel-estimation module."""
    m = _MODULE_RE.search(path)
    if not m:
        return None
    name = m.group(1)
    if name.startswith(("moduleConv", "modulePool")):
        return f"enc{m.group(2)}"
    if name.startswith(("moduleDeconv", "moduleUpsample")):
        return f"dec{m.group(2)}"
    if name.startswith("flowconv"):
        return f"fd{m.group(3)}"
    return "heads"


def _node_scope(node: onnx.NodeProto) -> str:
    for p in node.metadata_props:
        if p.key in ("pkg.torch.onnx.name_scopes", "namespace"):
            return p.value
    return node.name


@dataclass
class ConvInfo:
    node: str
    group: str | None
    module: str
    weight: str


def conv_nodes(model: onnx.ModelProto) -> list[ConvInfo]:
    """Every Conv node of the main graph with its layer group (None = not recognised, never quantized)."""
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        weight = node.input[1] if len(node.input) > 1 else ""
        group = None
        module = ""
        for source in (weight, node.name, _node_scope(node)):
            g = group_of_module(source.replace("/", "."))
            if g is not None:
                group, module = g, source
                break
        out.append(ConvInfo(node.name, group, module, weight))
    return out


def nodes_for_groups(model: onnx.ModelProto, groups: tuple[str, ...]) -> list[str]:
    convs = conv_nodes(model)
    unnamed = [c for c in convs if not c.node]
    if unnamed:
        raise UserError("the graph has Conv nodes without names; ONNX Runtime's quantizer selects nodes by name")
    return [c.node for c in convs if c.group in groups]


def check_groups_recognised(model: onnx.ModelProto, path: str) -> None:
    convs = conv_nodes(model)
    if not convs:
        raise UserError(f"{path}: the graph has no Conv nodes; is it an SF-AdaCoF export?")
    unknown = [c.node for c in convs if c.group is None]
    if len(unknown) == len(convs):
        raise UserError(f"{path}: no Conv node could be mapped to a model module (weights named like "
                        f"{convs[0].weight!r}); export with export.to_onnx so parameter names are kept")


def consumers_by_tensor(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes reading it, in graph order."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return consumers


def custom_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain not in STANDARD_DOMAINS]


def calibration_subgraph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The part of the graph the calibrator has to run: the ancestors of every Conv, from the graph inputs.

    The synthesis (custom AdaCoFSynthesis node in the plugin form, ~1,500 gather/arithmetic nodes in the onnx form)
    contains no Conv and is downstream of all of them, so it is cut off. This is how the plugin graph is calibrated
    without loading the custom op into the calibrator's session, and it keeps the onnx form's calibration cheap.
    The tensor names are the full graph's, so the ranges apply to it unchanged."""
    return _ancestors_model(model, [n.output[0] for n in model.graph.node if n.op_type == "Conv"],
                            "calibration_subgraph")


def estimator_subgraph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The kernel estimator alone (ancestors of the last Convs, i.e. those no other Conv depends on): where all
    the quantized work is, so its FP32/INT8 speed shows what quantization buys without the float synthesis."""
    g = model.graph
    # keyed by output: node names may be empty
    upstream_of_conv = {n.output[0] for n in ancestor_nodes(model, [t for n in g.node if n.op_type == "Conv"
                                                                     for t in n.input])}
    last = [n.output[0] for n in g.node if n.op_type == "Conv" and n.output[0] not in upstream_of_conv]
    return _ancestors_model(model, last, "kernel_estimator")


def _ancestors_model(model: onnx.ModelProto, conv_outputs: list[str], name: str) -> onnx.ModelProto:
    # Not onnx.utils.Extractor: it needs a value_info for every output it cuts at, from shape inference over the
    # whole graph, and on the TorchScript exporter's graph (onnx 1.23, tests/test_calib.py) inference
    # leaves the Conv outputs without one ("names were not found in value_infos"); on the dynamo graph it works.
    g = model.graph
    nodes = ancestor_nodes(model, conv_outputs)  # in the source's (topological) order
    used = {t for n in nodes for t in n.input}
    inits = [t for t in g.initializer if t.name in used]
    inputs = [i for i in g.input if i.name in frame_inputs(model)]
    # Outputs with element type only: shapes are left to the calibrator's own shape inference.
    outputs = [onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in conv_outputs]
    sub = onnx.helper.make_model(onnx.helper.make_graph(nodes, name, inputs, outputs, inits),
                                 opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    bad = custom_nodes(sub)
    if bad:
        raise UserError(f"a non-standard node ({bad[0].op_type}, domain {bad[0].domain!r}) lies upstream of a Conv; "
                        "the calibrator cannot run it")
    # Opset imports copied from the source minus custom domains no remaining node uses.
    used = {n.domain for n in sub.graph.node}
    keep = [o for o in sub.opset_import if o.domain in STANDARD_DOMAINS or o.domain in used]
    del sub.opset_import[:]
    sub.opset_import.extend(keep)
    return sub


# ---------------------------------------------------------------------------------------------------------------
# Q/DQ inventory and the TensorRT checks


@dataclass
class QdqReport:
    quantized_convs: list[str] = field(default_factory=list)  # Conv nodes whose data and weight inputs come via DQ
    float_convs: list[str] = field(default_factory=list)
    q_nodes: int = 0
    dq_nodes: int = 0
    problems: list[str] = field(default_factory=list)  # empty = acceptable to TensorRT's explicit quantization
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _const(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    c = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    c[n.output[0]] = numpy_helper.to_array(a.t)
    return c


def inspect_qdq(model: onnx.ModelProto) -> QdqReport:
    """Walk the graph and list what TensorRT (10.x/11.x explicit quantization, `--int8` / strongly typed) refuses.

    TensorRT's rules checked here: Q/DQ are int8 with zero point 0 (symmetric; TensorRT has no zero-point
    support); activations use per-tensor scales, weights per-tensor or per-output-channel scales along axis 0 of the
    Conv weight; DequantizeLinear never reads int32 (the bias stays float: TensorRT folds it itself); every
    activation DequantizeLinear is fed by a QuantizeLinear (a Q->DQ pair TensorRT can fuse into the consumer); and
    Q/DQ only feed Convs (nothing else was asked for, so a Q/DQ elsewhere would be the quantizer deciding on its own).
    """
    const = _const(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers = consumers_by_tensor(model)
    rep = QdqReport(op_counts=dict(Counter(n.op_type for n in model.graph.node)))
    opset = max((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), default=0)
    if opset < 13:
        rep.problems.append(f"opset {opset} < 13: per-channel Q/DQ (axis attribute) needs opset 13")
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.domain not in STANDARD_DOMAINS:
            rep.problems.append(f"{n.name}: {n.op_type} in domain {n.domain!r} (TensorRT parses only ai.onnx Q/DQ)")
        if n.op_type == "QuantizeLinear":
            rep.q_nodes += 1
        else:
            rep.dq_nodes += 1
        scale = const.get(n.input[1])
        zp = const.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if scale is None:
            rep.problems.append(f"{n.name}: scale is not a constant")
            continue
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            rep.problems.append(f"{n.name}: scale not finite and positive")
        if zp is None:
            if n.op_type == "QuantizeLinear":
                rep.problems.append(f"{n.name}: no zero point (output would be uint8)")
        elif zp.dtype != np.int8:
            rep.problems.append(f"{n.name}: zero point is {zp.dtype}, TensorRT needs int8")
        elif np.any(zp != 0):
            rep.problems.append(f"{n.name}: zero point not 0 (asymmetric); TensorRT needs symmetric int8")
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if n.op_type == "DequantizeLinear":
            data = const.get(n.input[0])
            if data is not None:  # a weight: int8 constant -> DQ -> Conv weight input
                if data.dtype != np.int8:
                    rep.problems.append(f"{n.name}: dequantizes a {data.dtype} constant (TensorRT: int8 only; "
                                        "quantized biases are refused)")
                users = consumers.get(n.output[0], [])
                if not users or any(u.op_type != "Conv" or u.input[1] != n.output[0] for u in users):
                    rep.problems.append(f"{n.name}: a dequantized constant used other than as a Conv weight")
                if scale.size > 1 and (axis != 0 or scale.size != data.shape[0]):
                    rep.problems.append(f"{n.name}: per-channel weight scale must run along axis 0 "
                                        f"(got axis {axis}, {scale.size} scales for shape {data.shape})")
            else:
                src = producers.get(n.input[0])
                if src is None or src.op_type != "QuantizeLinear":
                    rep.problems.append(f"{n.name}: activation DequantizeLinear not fed by a QuantizeLinear")
                if scale.size != 1:
                    rep.problems.append(f"{n.name}: per-channel activation scale (TensorRT: per-tensor only)")
                for u in consumers.get(n.output[0], []):
                    if u.op_type != "Conv":
                        rep.problems.append(f"{n.name}: feeds a {u.op_type} ({u.name}); only Convs were chosen")
        elif scale.size != 1:
            rep.problems.append(f"{n.name}: per-channel activation scale (TensorRT: per-tensor only)")
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        srcs = [producers.get(i) for i in n.input[:2]]
        via_dq = [s is not None and s.op_type == "DequantizeLinear" for s in srcs]
        if all(via_dq):
            rep.quantized_convs.append(n.name)
        elif not any(via_dq):
            rep.float_convs.append(n.name)
        else:
            rep.problems.append(f"{n.name}: only one of data/weight is quantized")
        if len(n.input) > 2 and n.input[2] in producers and producers[n.input[2]].op_type == "DequantizeLinear":
            rep.problems.append(f"{n.name}: quantized bias (TensorRT wants a float bias)")
    return rep
