"""FP16 ONNX for strongly typed TensorRT builds (every build of runtime.build_engine, 10.x and 11.x alike): a graph
whose types say what runs in half precision.

    python -m export.fp16_graph MODEL.onnx -o MODEL.fp16.onnx [--synthesis fp16|fp32]

Tool: ONNX Runtime's maintained converter, `onnxruntime.transformers.float16.convert_float_to_float16` (shipped in
the onnxruntime wheel, so no extra dependency), with keep_io_types=True (the engine still takes and returns fp32
frames) and a block list of nodes that stay fp32, the converter inserting Casts at their borders:
  * the offset heads: every node that feeds the synthesis node's alpha/beta inputs and nothing else, found
    structurally (ancestors of alpha1/beta1/alpha2/beta2 minus ancestors of the weight/occlusion inputs and the
    frames), so it needs no particular node naming from the exporter. Offsets of several pixels with fp16's
    ~1e-3 relative step would move taps by up to ~0.01 px and flip trunc() at integer boundaries.
  * the AdaCoFSynthesis node's offset inputs: the sampling coordinates i + k*d + alpha need fp32 -- at 1080p an fp16
    coordinate near 1900 has a step of 1 pixel, so trunc() and the bilinear fractions would be wrong.
The synthesis node itself, with `--synthesis fp16` (TensorRT's form), takes fp16 frames, weights and occlusion and
fp32 offsets -- the plugin's "fp16 + fp32 offsets" combination, whose kernel still computes coordinates, fractions,
bilinear weights and the accumulation in fp32 and rounds only its stored output. With `--synthesis fp32` (ONNX
Runtime's CPU form: its custom op is fp32) the whole node stays fp32 behind Casts.
The shared trunk, the weight and occlusion heads run in fp16.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from export.graph import ancestor_nodes
from plugins.onnx_node import INPUT_NAMES, OP_TYPE as SYNTHESIS_OP
from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command

OFFSET_INPUTS = tuple(i for i, n in enumerate(INPUT_NAMES) if n.startswith(("alpha", "beta")))
OTHER_INPUTS = tuple(i for i in range(len(INPUT_NAMES)) if i not in OFFSET_INPUTS)
SYNTHESIS_PRECISIONS = ("fp16", "fp32")


def _name_nodes(model: onnx.ModelProto) -> None:
    """The converter's node block list works by node name; exporters may leave names empty or repeated."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _ancestors(model: onnx.ModelProto, tensors: list[str]) -> set[str]:
    """Names of the nodes that (transitively) produce any of `tensors`."""
    return {node.name for node in ancestor_nodes(model, tensors)}


def synthesis_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == SYNTHESIS_OP]


def offset_head_nodes(model: onnx.ModelProto) -> set[str]:
    """Nodes computing only the alpha/beta offsets (see module docstring). Names nodes first."""
    _name_nodes(model)
    syn = synthesis_nodes(model)
    if not syn:
        raise UserError(f"graph has no {SYNTHESIS_OP} node: not an SF-AdaCoF export")
    heads: set[str] = set()
    for node in syn:
        if len(node.input) != 9:
            raise UserError(f"{SYNTHESIS_OP} node {node.name} has {len(node.input)} inputs, expected 9")
        offsets = _ancestors(model, [node.input[i] for i in OFFSET_INPUTS])
        shared = _ancestors(model, [node.input[i] for i in OTHER_INPUTS])
        heads |= offsets - shared
    return heads


def convert_to_fp16(model: onnx.ModelProto, synthesis: str = "fp32") -> tuple[onnx.ModelProto, dict]:
    """Return (fp16 model, summary of what stayed fp32). `synthesis`: the synthesis node's frame/weight/output type
    (its offsets are fp32 either way); the default fp32 form runs anywhere the fp32 node runs (ONNX Runtime's CPU custom
    op), runtime.build_engine asks for fp16."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    if synthesis not in SYNTHESIS_PRECISIONS:
        raise UserError(f"synthesis precision {synthesis!r}: choose {', '.join(SYNTHESIS_PRECISIONS)}")
    heads = offset_head_nodes(model)
    # Resize/Upsample run in fp16 in both ORT CPU and TensorRT; the default list would wrap every 2x upsample in
    # Casts for no accuracy gain here.
    op_block = [op for op in DEFAULT_OP_BLOCK_LIST if op not in ("Upsample", "Resize")]
    if synthesis == "fp32":
        op_block.append(SYNTHESIS_OP)
    # Both exporters' graphs (dynamo's, and TorchScript's after onnxscript's optimizer) list the initializers in
    # value_info too; given those, the converter stores the offset heads' weights in fp16 behind a Cast back to fp32
    # (`..._cast_to_fp32`), rounding the weights the heads must keep. An initializer carries its own type: the
    # entries go first, and the heads' weights stay fp32 initializers.
    inits = {t.name for t in model.graph.initializer}
    keep = [v for v in model.graph.value_info if v.name not in inits]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    out = convert_float_to_float16(model, keep_io_types=True, op_block_list=op_block, node_block_list=sorted(heads),
                                   disable_shape_infer=False)
    offsets_rewired = _fp32_offsets_into_synthesis(out) if synthesis == "fp16" else 0
    folded = fold_round_trip_casts(out)
    # The dynamo exporter also lists initializers in value_info, and the converter retypes those entries to fp16 even
    # where the initializer stays fp32 (the offset heads): a graph onnx.checker rejects. The initializer itself carries
    # its type, so the redundant entries go.
    inits = {t.name for t in out.graph.initializer}
    keep = [v for v in out.graph.value_info if v.name not in inits]
    del out.graph.value_info[:]
    out.graph.value_info.extend(keep)
    summary = {"round_trip_casts_folded": folded, "tool": "onnxruntime.transformers.float16.convert_float_to_float16",
               "keep_io_types": True, "synthesis": synthesis, "fp32_offset_inputs_rewired": offsets_rewired,
               "fp32_nodes": len(heads) + (len(synthesis_nodes(out)) if synthesis == "fp32" else 0),
               "offset_head_nodes": len(heads), "total_nodes": len(model.graph.node)}
    return out, summary


def _fp32_offsets_into_synthesis(model: onnx.ModelProto) -> int:
    """Feed the synthesis node's offset inputs from the fp32 offset heads directly, bypassing the Cast(fp16) the
    converter put in front of an fp16 node; returns how many inputs were rewired. A graph where an offset input is not
    such a Cast of an fp32 tensor cannot give the plugin fp32 offsets, so it is refused rather than built wrong."""
    producer = {o: n for n in model.graph.node for o in n.output}
    f32_known = _known_float_tensors(model)
    rewired = 0
    for node in synthesis_nodes(model):
        for i in OFFSET_INPUTS:
            cast = producer.get(node.input[i])
            if cast is not None and _cast_to(cast) == onnx.TensorProto.FLOAT16 and cast.input[0] in f32_known:
                node.input[i] = cast.input[0]
                rewired += 1
            elif node.input[i] not in f32_known:
                raise UserError(f"{SYNTHESIS_OP} node {node.name}: offset input {node.input[i]!r} is not fp32 after "
                                "the conversion; cannot keep the sampling coordinates in fp32")
    return rewired  # the bypassed Casts are dropped with the other dead nodes by fold_round_trip_casts


def _known_float_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors known to be fp32: graph inputs/initializers/value_info of type FLOAT, outputs of Cast(to=FLOAT)."""
    f32 = onnx.TensorProto.FLOAT
    known = {v.name for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
             if v.type.tensor_type.elem_type == f32}
    known |= {t.name for t in model.graph.initializer if t.data_type == f32}
    for n in model.graph.node:
        if n.op_type == "Cast" and onnx.helper.get_attribute_value(n.attribute[0]) == f32:
            known.update(n.output)
    return known


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)


def fold_round_trip_casts(model: onnx.ModelProto) -> int:
    """Replace Cast(fp32) of Cast(fp16) of an fp32 tensor x by x itself; returns how many were folded.

    The converter wraps fp32 islands (the synthesis node, the offset heads) and keep_io_types graph inputs/outputs in
    such pairs, so without this the synthesis would sample frames rounded to fp16 and the fp32 output of the
    synthesis would be rounded to fp16 on its way out (each ~2.4e-4 worst case at 1.0). Dropping a rounding only
    makes the graph more exact; nothing else changes.
    """
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    f32_known = _known_float_tensors(model)
    f16 = onnx.TensorProto.FLOAT16
    graph_outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    for n in g.node:
        if _cast_to(n) != onnx.TensorProto.FLOAT:
            continue
        inner = producer.get(n.input[0])
        if inner is None or _cast_to(inner) != f16 or inner.input[0] not in f32_known:
            continue
        rename[n.output[0]] = inner.input[0]
    folded = 0
    cast_of = {n.output[0]: n for n in g.node if n.op_type == "Cast"}
    for old, new in rename.items():
        if old in graph_outputs:
            # the graph output name must survive: rename the fp32 producer's output instead
            src = producer.get(new)
            if src is None or new in graph_outputs or any(i.name == new for i in g.input):
                continue
            g.node.remove(cast_of[old])  # the Cast(fp32) that produced the output; its Cast(fp16) is now dead
            src.output[list(src.output).index(new)] = old
            _rename_inputs(g, new, old)
        else:
            _rename_inputs(g, old, new)
        folded += 1
    _topological_sort(model)  # first: the dead-node sweep walks backwards in topological order
    _drop_dead_nodes(model)
    return folded


def _rename_inputs(g: onnx.GraphProto, old: str, new: str) -> None:
    """Every node input named `old` reads `new` instead."""
    for n in g.node:
        for i, t in enumerate(n.input):
            if t == old:
                n.input[i] = new


def _drop_dead_nodes(model: onnx.ModelProto) -> None:
    g = model.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(t for t in n.input if t)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)


def _topological_sort(model: onnx.ModelProto) -> None:
    """ONNX requires nodes in topological order; the converter appends its Casts at the end."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(t in ready for t in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise UserError(f"graph has a cycle or a dangling input at node {rest[0].name}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


def is_fp16_graph(model: onnx.ModelProto) -> bool:
    """True when most float initializers are fp16 (the output of this pass)."""
    f16 = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    f32 = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    return f16 > f32


def convert_file(src: Path, dst: Path, synthesis: str = "fp32") -> dict:
    from sfadacof.outputs import atomic_write_bytes

    try:
        model = onnx.load(str(src))
    except Exception as e:  # onnx raises DecodeError, OSError, ...
        raise UserError(f"{src}: not a readable ONNX model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    out, summary = convert_to_fp16(model, synthesis)
    data = out.SerializeToString()
    atomic_write_bytes(dst, lambda tmp: tmp.write_bytes(data))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("export.fp16_graph", __doc__)
    p.add_argument("onnx", type=Path, help="the fp32 export to convert (python -m export.to_onnx)")
    p.add_argument("-o", "--output", type=Path, default=None, help="default: MODEL.fp16.onnx beside the input")
    p.add_argument("--synthesis", choices=SYNTHESIS_PRECISIONS, default="fp16",
                   help="fp16: the TensorRT plugin's fp16 + fp32-offsets form (default); fp32: the node stays fp32 "
                        "(ONNX Runtime's CPU custom op)")
    return p


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    dst = args.output or args.onnx.with_suffix(".fp16.onnx")
    s = convert_file(args.onnx, dst, args.synthesis)
    node = "the synthesis node in fp32" if args.synthesis == "fp32" else "the synthesis node in fp16 with fp32 offsets"
    kept = f"{s['offset_head_nodes']} of {s['total_nodes']} nodes kept fp32 (the offset heads)"
    print(f"{dst}: fp16 graph, {kept}, {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
