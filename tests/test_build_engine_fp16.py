"""export.fp16_graph on the real exporter's SF-AdaCoF graph (export.core.export_model, plugin form): which nodes stay
fp32, and the fp16 graph run whole in ONNX Runtime on CPU -- the AdaCoFSynthesis node by the project's C++ custom op
-- against PyTorch fp32 on real frames. TensorRT's fp16 synthesis form (fp16 node inputs) has no CPU kernel: there
the graph runs up to the node's inputs and what the plugin computes on them is emulated in torch."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
import torch

from export.fp16_graph import convert_to_fp16, fold_round_trip_casts, offset_head_nodes, synthesis_nodes
from sfadacof.metrics import psnr
from sfadacof.models import KernelMaps, pad_to_multiple
from tests.helpers import bikes_frames, crop, seeded_model

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The real exporter's plugin form (export.core.export_model; TorchScript, the fastest -- the default exporter
    is tested in test_export.py) of a seeded model."""
    from export.core import export_model

    model = seeded_model()
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    export_model(model, path, synthesis="plugin", exporter="torchscript")
    return model, onnx.load(str(path))


@pytest.fixture(scope="module")
def padded_frames():
    f0, _, f2 = (crop(f) for f in bikes_frames())  # 203x131 -> 224x160 after the model's reflect pad
    t = [pad_to_multiple(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255) for a in (f0, f2)]
    return t[0], t[1]


def test_round_trip_casts_are_folded_so_fp32_values_are_not_rounded():
    """fold_round_trip_casts on a small graph: x (fp32) -> Cast(fp16) -> Cast(fp32) -> Relu -> y. The pair is folded
    (the Relu reads x, the dead Casts are gone) and ONNX Runtime then gives relu(x) bit for bit on values fp16 cannot
    hold, where the unfolded graph rounds them (checked on the same inputs)."""
    io = lambda n: oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 64])  # noqa: E731
    nodes = [oh.make_node("Cast", ["x"], ["h"], to=onnx.TensorProto.FLOAT16),
             oh.make_node("Cast", ["h"], ["f"], to=onnx.TensorProto.FLOAT), oh.make_node("Relu", ["f"], ["y"])]
    m = oh.make_model(oh.make_graph(nodes, "g", [io("x")], [io("y")]), opset_imports=[oh.make_opsetid("", 17)])
    x = (np.random.default_rng(0).standard_normal((1, 64)) * 3 + 1e-4).astype(np.float32)
    run = lambda model: ort.InferenceSession(model.SerializeToString(),  # noqa: E731
                                             providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert not np.array_equal(run(m), np.maximum(x, 0))  # unfolded: rounded to fp16 on the way
    folded = onnx.ModelProto.FromString(m.SerializeToString())
    assert fold_round_trip_casts(folded) == 1
    assert [(n.op_type, list(n.input)) for n in folded.graph.node] == [("Relu", ["x"])]
    assert np.array_equal(run(folded), np.maximum(x, 0))


@pytest.mark.slow  # the module's export of the sf_adacof model (graph)
def test_offset_heads_found_structurally(graph):
    _, m = graph
    heads = offset_head_nodes(onnx.ModelProto.FromString(m.SerializeToString()))
    # independent check by the torch exporter's scope names: exactly the alpha/beta head modules
    by_name = {n.name for n in m.graph.node if re.search(r"module(Alpha|Beta)[12]", n.name)}
    assert by_name and heads == by_name


@pytest.mark.slow  # the module's export of the sf_adacof model (graph)
def test_fp16_graph_types(graph):
    _, m = graph
    out, summary = convert_to_fp16(onnx.ModelProto.FromString(m.SerializeToString()))
    inits = {t.name: t.data_type for t in out.graph.initializer}
    conv_w = {n.name: n.input[1] for n in out.graph.node if n.op_type == "Conv"}
    head_convs = [w for name, w in conv_w.items() if re.search(r"module(Alpha|Beta)[12]", name)]
    trunk_convs = [w for name, w in conv_w.items() if re.search(r"moduleConv1/|moduleDeconv2/|moduleWeight1", name)]
    assert len(head_convs) == 16 and trunk_convs
    assert all(inits[w] == onnx.TensorProto.FLOAT for w in head_convs)
    assert all(inits[w] == onnx.TensorProto.FLOAT16 for w in trunk_convs)
    assert [i.type.tensor_type.elem_type for i in out.graph.input] == [onnx.TensorProto.FLOAT] * 2
    assert out.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # every input of the synthesis node is produced in fp32 (Cast to FLOAT, an fp32 head, or a graph input)
    syn = synthesis_nodes(out)[0]
    producer = {o: n for n in out.graph.node for o in n.output}
    for t in syn.input:
        p = producer.get(t)
        assert p is None or (p.op_type == "Cast" and oh.get_attribute_value(p.attribute[0]) == onnx.TensorProto.FLOAT) \
            or re.search(r"module(Alpha|Beta)[12]", p.name), (t, p and p.op_type)
    assert summary["offset_head_nodes"] == len({n.name for n in m.graph.node if re.search(r"module(Alpha|Beta)", n.name)})


@pytest.mark.slow  # the module's export of the sf_adacof model (graph)
def test_fp16_graph_in_ort_cpu_vs_torch_fp32(graph, padded_frames, tmp_path, cpu_op):
    """The whole fp16 graph in ONNX Runtime on CPU, its synthesis node run by the project's C++ custom op (cpu_op,
    conftest.py: built or failed, never skipped), against the PyTorch fp32 model on real 203x131 bikes frames
    (seeded random model with offsets of a few px): the fp32 graph within 1e-4, the fp16 graph >= 45 dB."""
    from runtime.backends.ort_backend import OrtBackend

    model, m = graph
    f0, f2 = padded_frames
    fp16, _ = convert_to_fp16(onnx.ModelProto.FromString(m.SerializeToString()))
    onnx.save(fp16, str(tmp_path / "m.fp16.onnx"))
    onnx.save(m, str(tmp_path / "m.onnx"))
    with torch.no_grad():
        ref = model(f0, f2)  # inputs are already 32-multiples: no pad, no crop
    outs = {}
    for name, path in (("fp32", tmp_path / "m.onnx"), ("fp16", tmp_path / "m.fp16.onnx")):
        with OrtBackend(path, threads=1) as b:
            assert b.describe()["synthesis"] == "plugin"
            outs[name] = torch.from_numpy(np.asarray(b.infer(f0.numpy(), f2.numpy()), dtype=np.float32))
    p32 = psnr(outs["fp32"].clamp(0, 1), ref.clamp(0, 1))
    p16 = psnr(outs["fp16"].clamp(0, 1), ref.clamp(0, 1))
    print(f"ORT CPU fp32 graph vs torch: {p32:.2f} dB, max|d| {(outs['fp32'] - ref).abs().max():.2e}; "
          f"fp16 graph vs torch fp32: {p16:.2f} dB, max|d| {(outs['fp16'] - ref).abs().max():.2e}")
    assert (outs["fp32"] - ref).abs().max() < 1e-4
    assert p16 >= 45.0
    assert (outs["fp16"] - ref).abs().max() > 0  # float16 really ran


@pytest.mark.slow  # the module's export of the sf_adacof model (graph)
def test_fp16_synthesis_form_types_and_accuracy(graph, padded_frames):
    """TensorRT's form (--synthesis fp16): the node takes fp16 frames/weights/occlusion and fp32 offsets straight from
    the fp32 offset heads, and returns fp16. Emulating what the plugin computes for those types (fp32 arithmetic on the
    values it receives, output rounded to fp16) stays >= 45 dB against the PyTorch fp32 model on real frames."""
    model, m = graph
    f0, f2 = padded_frames
    out, summary = convert_to_fp16(onnx.ModelProto.FromString(m.SerializeToString()), synthesis="fp16")
    assert summary["fp32_offset_inputs_rewired"] == 4
    typed = onnx.shape_inference.infer_shapes(out)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(typed.graph.input) + list(typed.graph.value_info) + list(typed.graph.output)}
    syn = synthesis_nodes(out)[0]
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    got = [types.get(t) for t in syn.input]
    assert got == [f16, f16, f16, f32, f32, f16, f32, f32, f16], got
    producer = {o: n for n in out.graph.node for o in n.output}
    for i in (3, 4, 6, 7):  # no Cast between the fp32 heads and the node: the offsets are never rounded to fp16
        assert producer[syn.input[i]].op_type != "Cast" and re.search(r"module(Alpha|Beta)[12]", producer[syn.input[i]].name)
    # ORT up to the node's inputs, in the types the node receives; then the reference op in fp32 on those values
    sub = onnx.ModelProto.FromString(out.SerializeToString())
    needed, keep = set(syn.input), []
    for n in reversed(list(sub.graph.node)):  # only the node's ancestors (the crop after it reads its output)
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(n.input)
    del sub.graph.node[:]
    sub.graph.node.extend(reversed(keep))
    del sub.graph.output[:]
    sub.graph.output.extend(oh.make_tensor_value_info(t, types[t], None) for t in syn.input)
    sess = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
    vals = sess.run(None, {"frame0": f0.numpy(), "frame2": f2.numpy()})
    assert [v.dtype for v in vals] == [np.float16 if t == f16 else np.float32 for t in got]
    t = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in vals]
    with torch.no_grad():
        ref = model(f0, f2)
        emulated = model.synthesize(t[0], t[1], KernelMaps(*t[2:])).half().float()
    p16 = psnr(emulated.clamp(0, 1), ref.clamp(0, 1))
    print(f"fp16 synthesis form vs torch fp32: {p16:.2f} dB, max|d| {(emulated - ref).abs().max():.2e}")
    assert p16 >= 45.0
