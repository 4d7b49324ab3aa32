"""Small ONNX graph queries shared by export, runtime and calib (no graph is changed here).

    frame_inputs(model)            -- the graph inputs that are not initializers (frame0, frame2 for an export)
    ancestor_nodes(model, tensors) -- the nodes that (transitively) produce any of `tensors`, in graph order

These walks are hand-written on purpose. onnx.utils.Extractor would cut a subgraph too, but it needs a value_info
for every tensor it cuts at, from shape inference over the whole graph: on the dynamo exporter's graph (with the
custom synthesis node) that works, on the TorchScript exporter's graph the Conv outputs get none and it refuses
("names were not found in value_infos"). It also returns a new model without the source's metadata, while
export.fp16_graph needs node names inside the graph it converts. onnx-graphsurgeon was not added: it would not
remove either walk.
"""

from __future__ import annotations

import onnx


def frame_inputs(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def ancestor_nodes(model: onnx.ModelProto, tensors) -> list[onnx.NodeProto]:
    """Nodes producing any of `tensors` directly or through other nodes, in the graph's (topological) order."""
    nodes = model.graph.node
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    found: set[int] = set()
    stack = [t for t in tensors if t]
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in found:
            continue
        found.add(i)
        stack.extend(t for t in nodes[i].input if t)
    return [nodes[i] for i in sorted(found)]
