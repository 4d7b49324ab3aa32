"""export.to_onnx: both synthesis forms in ONNX Runtime against the PyTorch model and the independent authors'
forward, the op set of each form, the custom node contract, metadata, dynamic shapes, the standard-op synthesis
against the reference op, and one-line errors.

One sf_adacof checkpoint with large offsets (+-3..8 px, both signs) is exported once per module with the default
exporter (both forms from one trace; TorchScript + onnxscript's optimizer, checked against the dynamo exporter's
graph); frames are real bikes.mp4 crops two frames apart (real motion), batch 2, at
odd sizes and at a multiple of 32. Every variant is exported in test_export_variants.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from export.core import DEFAULT_OPSET, resolve_exporter
from export.standard_synthesis import lower_synthesis_nodes
from export.to_onnx import export_checkpoint, main, standard_form_path
from plugins.onnx_node import DOMAIN, INPUT_NAMES, OP_TYPE, make_attributes
from runtime.backends.ort_backend import OrtBackend
from sfadacof import __version__
from sfadacof.checkpoint import file_sha256, save_checkpoint
from sfadacof.synthesis import adacof_synthesis

from tests.helpers import large_motion_checkpoint, large_motion_model, offset_range, real_pair, torch_forward
from tests.helpers import REPO_ROOT
from .reference_forward import reference_forward

TOL = 1e-4  # max |ORT - PyTorch|; float32 rounding is ~1e-7 here (see runtime/parity.py for the reasoning)
SIZES = [(37, 45), (70, 101), (64, 96)]  # (H, W): odd, odd, multiple of 32 (the pad is then 0 rows/columns)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    model, ckpt = large_motion_checkpoint(d, "sf_adacof", seed=3, epoch=7, name="sf_large_motion.pth")
    infos = export_checkpoint(ckpt, d / "sf.onnx", synthesis="both")
    return {"model": model, "ckpt": ckpt, "plugin": d / "sf.onnx", "onnx": d / "sf.std.onnx",
            "infos": {i.synthesis: i for i in infos}}


@pytest.fixture(scope="module")
def backends(exported):
    with OrtBackend(exported["plugin"]) as p, OrtBackend(exported["onnx"]) as o:
        yield {"plugin": p, "onnx": o}


@pytest.mark.parametrize("form", ["plugin", "onnx"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def test_ort_matches_pytorch_and_authors_forward(exported, backends, form, size):
    h, w = size
    f0, f2 = real_pair(w, h, batch=2)
    lo, hi = offset_range(exported["model"], f0, f2)
    assert lo < -3 and hi > 3, f"offsets {lo:.2f}..{hi:.2f}: not the large two-sided motion this test needs"
    out = backends[form].infer(f0, f2)
    assert out.shape == (2, 3, h, w) and out.dtype == np.float32
    ref = torch_forward(exported["model"], f0, f2)
    sd = exported["model"].state_dict()
    with torch.no_grad():
        authors = reference_forward(sd, torch.from_numpy(f0), torch.from_numpy(f2)).numpy()
    err_model, err_authors = float(np.abs(out - ref).max()), float(np.abs(out - authors).max())
    assert err_model <= TOL, f"{form} {w}x{h}: max |ORT - PyTorch| = {err_model}"
    assert err_authors <= TOL, f"{form} {w}x{h}: max |ORT - authors' forward| = {err_authors}"
    # The outputs are images, not near-zero noise: a broken graph returning zeros would fail above anyway, but make
    # sure the comparison is between frames of real content.
    assert 0.05 < float(ref.mean()) < 0.95 and float(ref.std()) > 0.02


def test_both_forms_agree_with_each_other(backends):
    f0, f2 = real_pair(101, 70, batch=2)
    a, b = backends["plugin"].infer(f0, f2), backends["onnx"].infer(f0, f2)
    assert float(np.abs(a - b).max()) <= 1e-5


def test_plugin_form_has_exactly_the_custom_node(exported):
    m = onnx.load(str(exported["plugin"]))
    custom = [n for n in m.graph.node if n.domain not in ("", "ai.onnx")]
    assert len(custom) == 1
    node = custom[0]
    assert (node.op_type, node.domain) == (OP_TYPE, DOMAIN) == ("AdaCoFSynthesis", "sfadacof")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"kernel_size": 5, "dilation": 1, "plugin_version": b"1", "plugin_namespace": b"sfadacof"}
    types = {a.name: a.type for a in node.attribute}
    assert types["kernel_size"] == types["dilation"] == onnx.AttributeProto.INT
    assert types["plugin_version"] == types["plugin_namespace"] == onnx.AttributeProto.STRING
    assert len(node.input) == 9 and len(node.output) == 1
    assert list(node.input[2:]) == list(INPUT_NAMES[2:])  # weight1 ... occlusion, in the contract's order
    # inputs 0/1 are the reflect-padded frames (Pad nodes on the graph inputs), not the raw inputs
    producers = {o: n for n in m.graph.node for o in n.output}
    for i, graph_input in ((0, "frame0"), (1, "frame2")):
        pad = producers[node.input[i]]
        assert pad.op_type == "Pad" and pad.input[0] == graph_input
        assert helper.get_attribute_value(next(a for a in pad.attribute if a.name == "mode")) == b"reflect"
    # alpha/beta come from the offset heads' last conv, weights from the Softmax, occlusion from the Sigmoid
    assert [producers[node.input[k]].op_type for k in range(2, 9)] == \
        ["Softmax", "Conv", "Conv", "Softmax", "Conv", "Conv", "Sigmoid"]
    # one Slice pair crops the node's output back to H x W, then the graph output
    assert {o.domain: o.version for o in m.opset_import} == {"": DEFAULT_OPSET, DOMAIN: 1}
    assert "GridSample" not in {n.op_type for n in m.graph.node}


def test_onnx_form_is_standard_ops_only(exported):
    m = onnx.load(str(exported["onnx"]))
    ops = {n.op_type for n in m.graph.node}
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"}
    assert "GridSample" not in ops and OP_TYPE not in ops
    assert {"Sign", "Abs", "Floor", "Clip", "GatherElements"} <= ops  # trunc toward zero, per-corner clamp, gathers
    onnx.checker.check_model(m, full_check=True)
    # the trunk is the plugin form's, node for node: only the synthesis differs
    p = onnx.load(str(exported["plugin"]))
    conv = lambda model: [(n.input[1], n.input[2] if len(n.input) > 2 else "") for n in model.graph.node  # noqa: E731
                          if n.op_type == "Conv"]
    assert conv(m) == conv(p) and len(conv(m)) > 100


def test_graph_io_and_dynamic_axes(exported):
    for path in (exported["plugin"], exported["onnx"]):
        m = onnx.load(str(path), load_external_data=False)
        assert [i.name for i in m.graph.input] == ["frame0", "frame2"]
        assert [o.name for o in m.graph.output] == ["frame1"]
        for v in list(m.graph.input) + list(m.graph.output):
            t = v.type.tensor_type
            assert t.elem_type == TensorProto.FLOAT
            dims = t.shape.dim
            assert dims[1].dim_value == 3
            for k in (0, 2, 3):  # batch, height, width are symbolic
                assert dims[k].dim_param and not dims[k].dim_value, f"{path.name} {v.name} dim {k}: {dims[k]}"


def test_metadata(exported):
    for form in ("plugin", "onnx"):
        m = onnx.load(str(exported[form]), load_external_data=False)
        meta = {p.key: p.value for p in m.metadata_props}
        assert meta["variant"] == "sf_adacof"
        assert meta["kernel_size"] == "5" and meta["dilation"] == "1"
        assert meta["checkpoint_sha256"] == file_sha256(exported["ckpt"])
        assert meta["checkpoint_file"] == "sf_large_motion.pth" and meta["checkpoint_epoch"] == "7"
        assert meta["opset"] == str(DEFAULT_OPSET)
        assert meta["sfadacof_version"] == __version__
        assert meta["synthesis"] == form
        assert meta["exporter"] == resolve_exporter("auto")
        assert meta["custom_op"] == ("sfadacof::AdaCoFSynthesis v1" if form == "plugin" else "none")
        assert m.producer_name == "sfadacof"
        # no absolute source paths of the build machine in the file
        assert not any("stack_trace" in p.key for n in m.graph.node for p in n.metadata_props)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(exported["plugin"].stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    info = exported["infos"]["plugin"]
    assert info.size_bytes == exported["plugin"].stat().st_size > 30e6  # 8.6M fp32 parameters


def _io(m: onnx.ModelProto) -> list:
    """Graph inputs and outputs: name, dtype, dims (symbolic names or sizes)."""
    return [(v.name, v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
            for v in list(m.graph.input) + list(m.graph.output)]


def _hashable(value):
    if isinstance(value, TensorProto):  # a tensor attribute (ConstantOfShape's value): its dtype, shape and bytes
        a = onnx.numpy_helper.to_array(value)
        return (str(a.dtype), a.shape, a.tobytes())
    return tuple(value) if isinstance(value, list) else value


def _computing_nodes(m: onnx.ModelProto) -> Counter:
    """The nodes that compute on float tensors (every one but the int64 shape arithmetic), as (domain, op type,
    attributes with ONNX's defaults filled in, and for a Conv its weight's and bias' initializer names)."""
    m = onnx.shape_inference.infer_shapes(m)  # types for the standard-op synthesis' nodes too (added untyped)
    types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.input) +
             list(m.graph.output)}
    opset = {o.domain: o.version for o in m.opset_import}[""]
    out = Counter()
    for n in m.graph.node:
        if all(types.get(o) == TensorProto.INT64 for o in n.output):
            continue
        assert all(o in types for o in n.output), f"{n.op_type} {n.name}: output without a type"
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.domain in ("", "ai.onnx"):
            schema = onnx.defs.get_schema(n.op_type, opset)
            for name, a in schema.attributes.items():
                if name not in attrs and a.default_value.type:
                    attrs[name] = helper.get_attribute_value(a.default_value)
        key = tuple(sorted((k, _hashable(v)) for k, v in attrs.items()))
        weights = tuple(n.input[1:]) if n.op_type == "Conv" else ()
        out[(n.domain, n.op_type, key, weights)] += 1
    return out


def test_default_exporter_gives_the_dynamo_exporters_graph(exported, tmp_path):
    """The default exporter (TorchScript + onnxscript's optimizer, ~5x faster) against torch.onnx's dynamo exporter
    on the same checkpoint: the same graph where it computes -- inputs/outputs (names, dtypes, dynamic axes), opset
    and custom domain, every float node with its attributes and the weights it reads (same names, same values), the
    custom node's contract -- and the same outputs in ONNX Runtime on real frames at two sizes, both forms. What may
    differ is only the int64 shape arithmetic feeding the Pad amounts and the crop (spelled with more nodes)."""
    assert resolve_exporter("auto") == "torchscript"
    default = {form: onnx.load(str(exported[form])) for form in ("plugin", "onnx")}
    assert {p.key: p.value for p in default["plugin"].metadata_props}["exporter"] == "torchscript"
    dyn_path = tmp_path / "dyn.onnx"
    infos = export_checkpoint(exported["ckpt"], dyn_path, synthesis="both", exporter="dynamo")
    assert [i.exporter for i in infos] == ["dynamo", "dynamo"]
    dynamo = {"plugin": onnx.load(str(dyn_path)), "onnx": onnx.load(str(standard_form_path(dyn_path)))}
    for form in ("plugin", "onnx"):
        a, b = default[form], dynamo[form]
        assert _io(a) == _io(b)
        assert {(o.domain, o.version) for o in a.opset_import} == {(o.domain, o.version) for o in b.opset_import}
        ca, cb = _computing_nodes(a), _computing_nodes(b)
        assert ca == cb, f"{form}: only in the default: {ca - cb}; only in dynamo's: {cb - ca}"
        assert sum(c for k, c in ca.items() if k[1] == "Conv") == 130 and \
            sum(c for k, c in ca.items() if k[1] == "Resize") == 15
        # the custom node's tensors are named alike (NODE_INPUT_TENSORS), so the same Conv weights feed them
        custom = lambda m: [(n.domain, n.op_type, list(n.input), list(n.output))  # noqa: E731
                            for n in m.graph.node if n.domain not in ("", "ai.onnx")]
        assert custom(a) == custom(b)
        wa = {t.name: onnx.numpy_helper.to_array(t) for t in a.graph.initializer if t.name.startswith("model.")}
        wb = {t.name: onnx.numpy_helper.to_array(t) for t in b.graph.initializer if t.name.startswith("model.")}
        assert wa.keys() == wb.keys() and len(wa) > 150  # every Conv weight and bias (188 in sf_adacof)
        assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    for form, dyn in (("plugin", dyn_path), ("onnx", standard_form_path(dyn_path))):
        with OrtBackend(exported[form]) as x, OrtBackend(dyn) as y:  # one session each for both sizes (dynamic axes)
            for (w, h) in ((45, 37), (128, 96)):
                f0, f2 = real_pair(w, h, batch=2)
                d = float(np.abs(x.infer(f0, f2) - y.infer(f0, f2)).max())
                assert d <= 1e-6, f"{form} {w}x{h}: max |default - dynamo| = {d}"


# -- the standard-op synthesis and the ORT custom op, on the op alone -------------------------------------------------

def _synthesis_graph(k: int, d: int, lower: bool) -> onnx.ModelProto:
    node = helper.make_node(OP_TYPE, list(INPUT_NAMES), ["frame1"], domain=DOMAIN, **make_attributes(k, d))
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", None, "H", "W"]) for n in INPUT_NAMES]
    out = helper.make_tensor_value_info("frame1", TensorProto.FLOAT, ["B", 3, "H", "W"])
    m = helper.make_model(helper.make_graph([node], "synthesis", ins, [out]),
                          opset_imports=[helper.make_operatorsetid("", DEFAULT_OPSET), helper.make_operatorsetid(DOMAIN, 1)])
    if lower:
        assert lower_synthesis_nodes(m) == 1
    onnx.checker.check_model(m, full_check=True)
    return m


def _random_op_inputs(k: int, b: int, h: int, w: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {"frame0": rng.random((b, 3, h, w), dtype=np.float32), "frame2": rng.random((b, 3, h, w), dtype=np.float32),
            "occlusion": rng.random((b, 1, h, w), dtype=np.float32)}
    for n in ("weight1", "weight2"):
        logits = rng.standard_normal((b, k * k, h, w)).astype(np.float32)
        feed[n] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # softmax-normalised, as the model's
    for n in ("alpha1", "beta1", "alpha2", "beta2"):
        x = rng.uniform(-2.5 * h, 2.5 * h, (b, k * k, h, w)).astype(np.float32) * 0.2  # beyond the edges, both ways
        x[..., ::4] = np.round(x[..., ::4])  # exact integers, negative ones included (trunc == floor only there)
        x[..., 1::7] = -np.abs(x[..., 1::7]) - 0.25  # negative fractions: trunc and floor differ by one pixel
        feed[n] = x
    return feed


def _torch_reference(feed: dict[str, np.ndarray], k: int, d: int) -> np.ndarray:
    t = {n: torch.from_numpy(v) for n, v in feed.items()}
    pad = ((k - 1) * d) // 2
    o1 = adacof_synthesis(F.pad(t["frame0"], [pad] * 4, mode="replicate"), t["weight1"], t["alpha1"], t["beta1"], d)
    o2 = adacof_synthesis(F.pad(t["frame2"], [pad] * 4, mode="replicate"), t["weight2"], t["alpha2"], t["beta2"], d)
    return (t["occlusion"] * o1 + (1 - t["occlusion"]) * o2).numpy()


@pytest.mark.parametrize("k,d,b,h,w", [(5, 1, 2, 37, 45), (3, 2, 2, 21, 34), (11, 1, 1, 16, 23)])
def test_op_alone_standard_form_and_cpp_custom_op_vs_reference(k, d, b, h, w):
    import onnxruntime as ort

    from runtime.backends.ort_custom_op import session_options
    from plugins.cpu_op import adacof_synthesis_cpu

    feed = _random_op_inputs(k, b, h, w, seed=k * 100 + d)
    ref = _torch_reference(feed, k, d)
    std = ort.InferenceSession(_synthesis_graph(k, d, lower=True).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, feed)[0]
    plug = ort.InferenceSession(_synthesis_graph(k, d, lower=False).SerializeToString(), session_options(),
                                providers=["CPUExecutionProvider"]).run(None, feed)[0]
    direct = adacof_synthesis_cpu(*[feed[n] for n in INPUT_NAMES], k, d)
    assert std.shape == plug.shape == ref.shape == (b, 3, h, w)
    assert float(np.abs(std - ref).max()) <= 2e-6, "standard-op synthesis vs reference op"
    # ORT's custom node IS the C++ kernel: bit-identical to calling it directly
    assert np.array_equal(plug, direct)
    assert float(np.abs(plug - ref).max()) <= 2e-6


# -- errors ----------------------------------------------------------------------------------------------------------

def _run_main(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code, capsys.readouterr().err


def test_corrupt_checkpoint_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"PK\x03\x04 definitely not a torch zip" + bytes(range(256)) * 4)
    code, err = _run_main([bad, "-o", tmp_path / "x.onnx"], capsys)
    assert code == 2 and err.count("\n") == 1 and str(bad) in err and "not a readable PyTorch checkpoint" in err
    assert not (tmp_path / "x.onnx").exists()


def test_wrong_checkpoint_is_one_line_error(tmp_path, capsys):
    other = tmp_path / "classifier.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}}, other)
    code, err = _run_main([other, "-o", tmp_path / "x.onnx"], capsys)
    assert code == 2 and err.count("\n") == 1 and str(other) in err and "no known variant" in err
    # a real checkpoint forced to the wrong variant: names the mismatch
    ck = tmp_path / "rwtd.pth"
    save_checkpoint(ck, large_motion_model("rwtd"))
    code, err = _run_main([ck, "--variant", "adacof", "-o", tmp_path / "y.onnx"], capsys)
    assert code == 2 and err.count("\n") == 1 and str(ck) in err and "does not match variant adacof" in err
    code, err = _run_main([ck, "--opset", "9", "-o", tmp_path / "z.onnx"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--opset: must be in 13..20, got 9" in err
    assert not any(tmp_path.glob("*.onnx")) and not any(tmp_path.glob(".*tmp"))


def test_cli_process_missing_checkpoint_exit_status(tmp_path):
    missing = tmp_path / "nope.pth"
    r = subprocess.run([sys.executable, "-m", "export.to_onnx", str(missing), "-o", str(tmp_path / "o.onnx")],
                       capture_output=True, text=True, cwd=REPO_ROOT)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {missing}: checkpoint file not found"]
    assert "Traceback" not in r.stderr


def test_standard_form_path_naming():
    assert standard_form_path(Path("/a/model.onnx")) == Path("/a/model.std.onnx")
    assert standard_form_path(Path("m")) == Path("m.std.onnx")
