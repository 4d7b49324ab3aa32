"""runtime.backends.openvino_backend against independent references: the PyTorch model on real frames (fp32 within
1e-3; bf16 >= 45 dB with the offset heads and the synthesis checked to run in fp32, both in the compiled runtime
graph and by the offsets themselves), the OpenVINO synthesis against the export's own standard-op lowering,
compiled models cached per shape, one-line refusals, `auto` picking the CPU default, and runtime.benchmark listing
every CPU backend with its ratios."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from runtime.backends import openvino_backend as ovb
from runtime.backends.openvino_backend import OpenVINOBackend, native_bf16
from runtime.backends.registry import CPU_DEFAULT, BackendOptions, create_backend
from sfadacof.errors import UserError
from tests.helpers import large_motion_exports, real_pair, torch_forward

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

NATIVE_BF16 = native_bf16()


def _bf16_missing() -> str:
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (f"bf16 needs BF16 in OpenVINO's CPU OPTIMIZATION_CAPABILITIES (a CPU with AVX512_BF16 or AMX-BF16); this "
            f"CPU's are {', '.join(caps)}: the backend refuses bf16 here, so its bf16 numbers cannot be measured")


needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason=_bf16_missing() if not NATIVE_BF16 else "")
OFFSET_TENSORS = ("alpha1", "beta1", "alpha2", "beta2")


def psnr(out: np.ndarray, ref: np.ndarray) -> float:
    """PSNR of clipped float frames (as runtime.accuracy computes it), in float64."""
    d = np.clip(out.astype(np.float64), 0, 1) - np.clip(ref.astype(np.float64), 0, 1)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@pytest.fixture(scope="module")
def shipped(shipped_exports):
    """The shipped default weights: the standard-op export (the run's, conftest.py's shipped_exports: made once per
    run by the default exporter, TorchScript, shared with test_large_frames and test_cpu_choice; read only) and the
    torch model."""
    from sfadacof.checkpoint import load_checkpoint

    loaded = load_checkpoint(None)
    return {"model": loaded.model, "onnx": shipped_exports["onnx"], "sha": loaded.sha256}


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """A model whose offsets sit at +-3..8 px (tests.helpers.large_motion_model): taps read far outside the tap
    grid, across the frame's edges, and cross integers; exported in both forms."""
    return large_motion_exports(tmp_path_factory.mktemp("ov_moving"), "sf_adacof", seed=3)


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_fp32_matches_pytorch_on_real_frames(cpu_op, shipped):
    """Shipped weights, real bikes frames at an odd size (pad-and-crop): within 1e-3 of PyTorch."""
    f0, f2 = real_pair(203, 131)
    with OpenVINOBackend(shipped["onnx"], precision="fp32", threads=1) as b:
        out = b.infer(f0, f2)
        desc = b.describe()
    assert out.shape == f0.shape and out.dtype == np.float32
    assert float(np.abs(out - torch_forward(shipped["model"], f0, f2)).max()) <= 1e-3
    assert desc["backend"] == "openvino" and desc["precision"] == "fp32" and desc["threads"] == 1
    assert desc["checkpoint_sha256"] == shipped["sha"] and "C++ CPU kernel" in desc["synthesis"]


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_fp32_batch_equals_onnx_runtime_on_the_same_graph(shipped):
    """Batch 2 (the second item 17 px further right): OpenVINO equals ONNX Runtime on the same standard-op graph
    within float32 rounding. (Against PyTorch one value of this crop differs by 7e-3 in both runtimes: a beta
    offset of -0.9999994 sits on the op's jump at negative integers, where trunc() switches from extrapolating
    2*S(r) - S(r+1) to reading S(r-1), so a 1e-7 difference in the convolutions flips it. That belongs to the op,
    MODEL.md's formula, not to a runtime.)"""
    from runtime.backends.ort_backend import OrtBackend

    f0, f2 = real_pair(203, 131, batch=2)
    with OpenVINOBackend(shipped["onnx"], threads=1) as b:
        out = b.infer(f0, f2)
    with OrtBackend(shipped["onnx"], threads=1) as o:
        ref = o.infer(f0, f2)
    assert float(np.abs(out - ref).max()) <= 1e-5
    import torch

    with torch.inference_mode():
        want, maps = shipped["model"].forward_with_maps(torch.from_numpy(f0), torch.from_numpy(f2))
    near = maps.near_discontinuity(1e-4)[:, :, :131, :203].numpy()  # the op's jumps (runtime/accuracy.py)
    d = np.abs(out - want.numpy())
    assert float(np.where(near, 0, d).max()) <= 1e-3  # every pixel clear of a jump within the fp32 bound
    assert int(near.sum()) <= 0.01 * near.size and float(np.median(d)) < 1e-6


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_kernel_and_gather_synthesis_equal_the_export_lowering_with_large_offsets(cpu_op, moving):
    """The default synthesis (the C++ kernel as two OpenVINO nodes) and OpenVINO's Gather form (openvino_synthesis.py)
    against PyTorch and against the export's own standard-op lowering, batch 2, with offsets of several pixels both
    ways (reads across the edges, clamped corners)."""
    f0, f2 = real_pair(101, 70, batch=2)
    with OpenVINOBackend(moving["onnx"], threads=1, synthesis="ops") as b:
        lowered = b.infer(f0, f2)
        assert "standard ops" in b.describe()["synthesis"]
    with OpenVINOBackend(moving["onnx"], threads=1, synthesis="gather") as b:
        gather = b.infer(f0, f2)
        assert "Gather(batch_dims=1)" in b.describe()["synthesis"]
    with OpenVINOBackend(moving["onnx"], threads=2) as b:  # the default form, the kernel on 2 threads
        kernel = b.infer(f0, f2)
        assert b.synthesis_form == "kernel" and "C++ CPU kernel" in b.describe()["synthesis"]
        # the two kernel nodes ran as the plugin's Reference nodes, in f32; none of the lowering's gathers is left
        executed = b.runtime_precisions(f0.shape)
        assert [p for layer, p, _ in executed if layer == "Reference"] == ["f32"] * 2
        assert not any(layer in ("Gather", "GatherElements") for layer, _, _ in executed)
        # in the order that keeps one direction's maps alive at a time (the 1080p peak, openvino_synthesis.py):
        # direction 1's heads, its kernel node, direction 2's heads, the second node
        refs = [i for i, (layer, _, _) in enumerate(executed) if layer == "Reference"]

        def convs_of(direction):
            return [i for i, (layer, _, names) in enumerate(executed) if layer == "Convolution" and any(
                f"/module{h}{direction}/" in n for h in ("Weight", "Alpha", "Beta") for n in names)]
        assert len(convs_of(1)) == len(convs_of(2)) == 3 * 4
        assert max(convs_of(1)) < refs[0] < min(convs_of(2)) and max(convs_of(2)) < refs[1]
    reference = torch_forward(moving["model"], f0, f2)
    for fast in (gather, kernel):
        assert float(np.abs(fast - lowered).max()) <= 1e-5  # float32 summation order only
        assert float(np.abs(fast - reference).max()) <= 1e-3


def _kernel_node_model(kernel_size: int, dilation: int, shape):
    """A graph of the fused op's nine named inputs whose synthesis output is a placeholder, with the kernel node
    swapped in (replace_synthesis) -- the node alone, apart from any export -- and the list its errors go to."""
    import openvino as ov
    from openvino import opset13 as o

    from export.core import NODE_INPUT_TENSORS, NODE_OUTPUT_TENSOR
    from runtime.backends.openvino_synthesis import replace_synthesis

    b, c, h, w = shape
    shapes = [(b, c, h, w)] * 2 + [(b, kernel_size ** 2, h, w)] * 6 + [(b, 1, h, w)]
    params = [o.parameter(list(sh), np.float32, name=n) for sh, n in zip(shapes, NODE_INPUT_TENSORS)]
    for p, n in zip(params, NODE_INPUT_TENSORS):
        p.output(0).get_tensor().set_names({n})
    placeholder = o.multiply(params[0], o.constant(np.float32(2.0)))
    placeholder.output(0).get_tensor().set_names({NODE_OUTPUT_TENSOR})
    model = ov.Model([o.result(placeholder)], params)
    errors: list = []
    assert replace_synthesis(model, NODE_INPUT_TENSORS, NODE_OUTPUT_TENSOR, kernel_size, dilation, form="kernel",
                             threads=2, errors=errors)
    return ov.Core().compile_model(model, "CPU").create_infer_request(), errors


@pytest.mark.parametrize("k,d", [(5, 1), (3, 2)])
def test_kernel_node_computes_the_spec_formula(cpu_op, k, d):
    """The kernel node inside OpenVINO against the spec's formula as a float64 loop (tests/naive_synthesis.py):
    batch 2, offsets up to +-6 px both ways (taps beyond the edges, clamped corners), weights of both signs."""
    from runtime.backends.openvino_synthesis import infer_with_kernel
    from tests.naive_synthesis import naive_fused

    shape = (2, 3, 9, 11)
    request, errors = _kernel_node_model(k, d, shape)
    rng = np.random.default_rng(7)
    b, c, h, w = shape
    maps = [rng.uniform(-1, 1, (b, k * k, h, w)), rng.uniform(-6, 6, (b, k * k, h, w)),
            rng.uniform(-6, 6, (b, k * k, h, w))]
    inputs = [rng.random(shape), rng.random(shape), *maps, *[m[:, ::-1] for m in maps], rng.random((b, 1, h, w))]
    inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
    infer_with_kernel(request, dict(enumerate(inputs)), errors)
    out = request.get_output_tensor(0).data
    # float32 arithmetic against float64: 25 taps of values in [0, 1] with weights in [-1, 1]
    assert float(np.abs(out - naive_fused(*inputs, k, d)).max()) <= 1e-5
    assert errors == []


def test_kernel_node_error_is_raised_in_python_not_aborted(cpu_op):
    """A failing evaluate() (kernel_size 4: (K-1)*d odd, which the kernel refuses) must not unwind into OpenVINO's
    C++: the node records it, infer fails, and infer_with_kernel raises the node's own message as one line."""
    from runtime.backends.openvino_synthesis import infer_with_kernel

    shape = (1, 3, 5, 6)
    request, errors = _kernel_node_model(4, 1, shape)
    feed = {i: np.zeros(t.get_shape(), np.float32) for i, t in enumerate(request.input_tensors)}
    with pytest.raises(RuntimeError, match=r"synthesis node \(C\+\+ CPU kernel\): .*kernel_size") as e:
        infer_with_kernel(request, feed, errors)
    assert "\n" not in str(e.value) and errors == []  # raised once, then cleared for the next call


def test_kernel_nodes_run_on_every_core_the_process_may_use(cpu_op, monkeypatch):
    """OpenVINO pins the thread that runs infer to one core unless told not to; the kernel nodes start their
    threads from it, so with pinning they would all share one core (0.22 against 0.12 s a 960x512 frame on 2
    cores). The affinity the nodes see inside infer must be the process's."""
    import os

    from runtime.backends import openvino_synthesis as osyn
    from runtime.backends.openvino_int8 import SHIPPED_INT8

    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip(f"this process may use {len(allowed)} core: pinning could not narrow it")
    seen = []
    real = cpu_op.adacof_direction_cpu

    def recording(*args, **kwargs):
        seen.append(os.sched_getaffinity(0))
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_op, "adacof_direction_cpu", recording)
    monkeypatch.setattr(osyn, "_KernelStep", None)  # the node class binds the function when it is defined
    f0, f2 = real_pair(64, 64)
    with OpenVINOBackend(SHIPPED_INT8, precision="int8", threads=2) as b:
        b.infer(f0, f2)
    assert len(seen) == 2 and all(s == allowed for s in seen), (seen, allowed)


def _offsets(backend: OpenVINOBackend, f0, f2) -> np.ndarray:
    """The four offset maps the backend computes (extra outputs added before its first compile)."""
    backend.model.add_outputs(list(OFFSET_TENSORS))
    backend.infer(f0, f2)
    request = backend._request(f0.shape)
    return np.concatenate([request.get_tensor(n).data.ravel().copy() for n in OFFSET_TENSORS])


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
@needs_bf16
def test_bf16_accuracy_and_fp32_offsets(cpu_op, shipped):
    """bf16 on real frames: >= 45 dB against fp32 PyTorch; in the compiled runtime graph every offset-head
    convolution and the synthesis (the kernel node; or, as the export's ops, every gather) run in f32 while the
    trunk's convolutions run in bf16."""
    f0, f2 = real_pair(320, 192)
    with OpenVINOBackend(shipped["onnx"], precision="bf16", threads=1) as b:
        out = b.infer(f0, f2)
        desc = b.describe()
        executed = b.runtime_precisions(f0.shape)
        offset_convs = b._offset_convs
    assert psnr(out, torch_forward(shipped["model"], f0, f2)) >= 45.0
    assert desc["precision"] == "bf16" and desc["kept_fp32"]["offset_heads"] > 0
    assert len(offset_convs) == 4 * 4  # four convolutions in each of the four offset heads
    convs = [(prec, names) for layer, prec, names in executed if layer == "Convolution"]
    head_convs = [prec for prec, names in convs if offset_convs & set(names)]
    assert head_convs and all(p == "f32" for p in head_convs)
    assert {p for p, names in convs if not offset_convs & set(names)} == {"bf16"}
    # the synthesis: the default's kernel node runs as the plugin's Reference node in f32; the export's lowering
    # (synthesis="ops") keeps every gather of its taps f32
    assert [p for layer, p, _ in executed if layer == "Reference"] == ["f32"] * 2
    with OpenVINOBackend(shipped["onnx"], precision="bf16", threads=1, synthesis="ops") as b:
        lowered = b.infer(f0, f2)
        gathers = [prec for layer, prec, _ in b.runtime_precisions(f0.shape)
                   if layer in ("Gather", "GatherElements")]
    assert len(gathers) >= 4 * 25 * 2 and set(gathers) == {"f32"}
    assert float(np.abs(lowered - out).max()) <= 1e-5  # the same bf16 network, the same synthesis up to rounding


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
@needs_bf16
def test_bf16_offsets_are_computed_in_fp32(moving):
    """The offsets themselves: with the heads kept fp32, the bf16 model's offsets differ from the fp32 model's only
    by what the bf16 trunk features feed them; letting OpenVINO run the heads in bf16 as well (the same model without
    the marks) makes them several times worse."""
    import openvino as ov

    f0, f2 = real_pair(160, 96)
    with OpenVINOBackend(moving["onnx"], precision="fp32", threads=1) as b:
        ref = _offsets(b, f0, f2)
    with OpenVINOBackend(moving["onnx"], precision="bf16", threads=1) as b:
        kept = _offsets(b, f0, f2)
    with OpenVINOBackend(moving["onnx"], precision="fp32", threads=1) as b:
        b.model.add_outputs(list(OFFSET_TENSORS))
        b.model.reshape({n: list(f0.shape) for n in b.input_names})
        compiled = ov.Core().compile_model(b.model, "CPU", {**b.config(), "INFERENCE_PRECISION_HINT": "bf16"})
        request = compiled.create_infer_request()
        request.infer({0: f0, 1: f2})
        unmarked = np.concatenate([request.get_tensor(n).data.ravel().copy() for n in OFFSET_TENSORS])
    assert float(np.abs(ref).max()) > 3.0  # offsets of several pixels
    err_kept, err_bf16 = float(np.abs(kept - ref).mean()), float(np.abs(unmarked - ref).mean())
    assert err_kept * 3 < err_bf16, (err_kept, err_bf16)


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
@needs_bf16
def test_bf16_refuses_a_model_whose_offset_heads_would_run_in_bf16(moving, monkeypatch):
    """The guard after every bf16 compile: the same model without the fp32 marks (as an OpenVINO that dropped them
    would give) compiles with its offset-head convolutions in bf16, and the backend refuses to run it in one line."""
    monkeypatch.setattr(ovb, "keep_fp32", lambda model, ids: model)
    f0, f2 = real_pair(64, 64)
    with OpenVINOBackend(moving["onnx"], precision="bf16", threads=1) as b:
        with pytest.raises(UserError, match="ran offset-head convolutions in bf16 \\(.+\\); the offsets must stay fp32"):
            b.infer(f0, f2)


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_ir_hint_that_does_not_survive_the_ir_is_refused(moving, monkeypatch):
    """keep_fp32's read-back check, on the real serializer (no bf16 CPU needed): the export's offset heads marked
    with the supported key come back marked, every one; marked with a key the IR does not carry as the precision
    attribute they come back unmarked, and bf16 is refused in one line naming this OpenVINO."""
    import openvino as ov

    model = ov.Core().read_model(str(moving["onnx"]))
    ids = ovb.fp32_regions(model)["offset_heads"]
    assert len(ids) > 16
    marked = ovb.keep_fp32(model, ids)
    assert sum(1 for n in marked.get_ordered_ops() if any(k.startswith(ovb._KEEP_PRECISION_ATTRS)
                                                          for k in n.get_rt_info().keys())) == len(ids)
    monkeypatch.setattr(ovb, "_KEEP_PRECISION_KEY", "sfadacof_not_a_precision_hint")
    again = ov.Core().read_model(str(moving["onnx"]))  # a fresh model: instance ids are per model object
    ids = ovb.fp32_regions(again)["offset_heads"]
    with pytest.raises(UserError, match=f"this OpenVINO \\({ov.__version__}\\) does not carry the fp32 hint "
                                        f"through its IR \\(0 of {len(ids)} nodes marked\\); use --precision fp32"):
        ovb.keep_fp32(again, ids)


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_compiled_models_are_cached_per_shape(moving):
    f0, f2 = real_pair(64, 64)
    g0, g2 = real_pair(96, 64)
    h0, h2 = real_pair(64, 96)
    with OpenVINOBackend(moving["onnx"], threads=1, max_shapes=2) as b:
        first = b.infer(f0, f2)
        request = b._request(f0.shape)
        b.infer(g0, g2)
        assert b._request(f0.shape) is request  # same shape: no recompile
        assert np.array_equal(b.infer(f0, f2), first)
        b.infer(h0, h2)  # a third shape drops the least recently used one (96x64)
        assert sorted(b._compiled) == sorted([f0.shape, h0.shape])
    assert b._compiled == {}


def _tiny_graph(path, custom: bool):
    """A two-input ONNX graph of the export's I/O names: frame1 = the custom AdaCoFSynthesis node (the plugin form's
    marker) or a plain Add. What the refusals below read before any model runs (ort_backend.inspect_graph)."""
    import onnx
    import onnx.helper as oh

    from plugins import onnx_node

    io = [oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 3, 32, 32]) for n in ("frame0", "frame2")]
    node = (oh.make_node(onnx_node.OP_TYPE, ["frame0", "frame2"], ["frame1"], domain=onnx_node.DOMAIN) if custom
            else oh.make_node("Add", ["frame0", "frame2"], ["frame1"]))
    out = oh.make_tensor_value_info("frame1", onnx.TensorProto.FLOAT, [1, 3, 32, 32])
    opsets = [oh.make_opsetid("", 17)] + ([oh.make_opsetid(onnx_node.DOMAIN, 1)] if custom else [])
    onnx.save(oh.make_model(oh.make_graph([node], "g", io, [out]), opset_imports=opsets), str(path))
    return path


def test_one_line_refusals(tmp_path, monkeypatch):
    """The refusals made before a model runs, on tiny graphs (the plugin form's custom node, a standard-op graph)."""
    plugin, std = _tiny_graph(tmp_path / "p.onnx", custom=True), _tiny_graph(tmp_path / "s.onnx", custom=False)
    with pytest.raises(UserError, match=f"^{plugin}: the plugin form \\(custom AdaCoFSynthesis node\\) does not run"):
        OpenVINOBackend(plugin)
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match=f"^{bad}: not a readable ONNX model"):
        OpenVINOBackend(bad)
    with pytest.raises(UserError, match="choose fp32 or bf16"):
        create_backend("openvino", BackendOptions(onnx=std, precision="fp16"))
    with pytest.raises(UserError, match="bf16 runs on --backend openvino"):
        create_backend("ort", BackendOptions(onnx=std, precision="bf16"))
    with pytest.raises(UserError, match="CPU only"):
        create_backend("openvino", BackendOptions(onnx=std, device="cuda"))
    monkeypatch.setattr(ovb, "native_bf16", lambda core=None: False)
    with pytest.raises(UserError, match="no native bf16"):
        OpenVINOBackend(std, precision="bf16")


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_frames_of_two_shapes_are_refused(moving):
    with pytest.raises(UserError, match="frames differ in shape"):
        with OpenVINOBackend(moving["onnx"]) as b:
            b.infer(*real_pair(64, 64)[:1], real_pair(96, 64)[1])


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_auto_picks_openvino_on_this_machine_and_says_why(moving, monkeypatch, tmp_path):
    """No TensorRT/GPU here: `auto` runs the CPU default, OpenVINO, in the precision measured fastest here (bf16
    a candidate only where the CPU has native bf16; runtime/backends/cpu_choice.py, measured at 64x64 here)."""
    from runtime.backends import cpu_choice
    from runtime.tensorrt_env import tensorrt_available

    if tensorrt_available() is None:
        pytest.skip("TensorRT and a GPU are here: auto picks trt")
    assert CPU_DEFAULT == "openvino"
    monkeypatch.setattr(cpu_choice, "MEASURE_SIZE", (64, 64))
    monkeypatch.setenv("SFADACOF_CACHE", str(tmp_path / "cache"))
    with create_backend("auto", BackendOptions(onnx=moving["onnx"])) as b:
        desc = b.describe()
        f0, f2 = real_pair(64, 64)
        out = b.infer(f0, f2)
    precision = desc["chosen_by_measurement"]["winner"]
    assert precision in (("fp32", "bf16") if NATIVE_BF16 else ("fp32",))
    assert desc["backend"] == "openvino" and desc["precision"] == precision
    assert desc["chosen_by"].startswith(f"auto -> openvino: openvino {precision} (CPU default; measured: ")
    assert psnr(out, torch_forward(moving["model"], f0, f2)) >= 45.0


@pytest.mark.slow  # the module's TorchScript exports (shipped, moving)
def test_auto_falls_back_to_ort_without_openvino(moving, monkeypatch):
    from runtime.tensorrt_env import tensorrt_available

    if tensorrt_available() is None:
        pytest.skip("TensorRT and a GPU are here: auto picks trt")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with create_backend("auto", BackendOptions(onnx=moving["onnx"])) as b:
        desc = b.describe()
    assert desc["backend"] == "ort" and "openvino is not installed" in desc["chosen_by"]


def test_benchmark_lists_every_cpu_backend_with_ratios(tmp_path, capsys, cpu_op, ckpt, ckpt_exports):
    """runtime.benchmark with its default backends and precisions on a tiny size: torch, ort and openvino (fp32, and
    bf16 where native) in one run, each with its ratio and speed-up against torch fp32. One round (each configuration
    and round is a process of its own: the rounds' interleaving is test_benchmark.py's)."""
    from runtime.benchmark import main

    out = tmp_path / "b.json"  # ckpt's exports are in the session cache (conftest.py): no export here
    assert main(["--sizes", "64x64", "--iters", "2", "--warmup", "1", "--rounds", "1", "--checkpoint", str(ckpt),
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    rows = {(r["backend"], r["precision"]): r for r in rep["results"]}
    expected = {("torch", "fp32"), ("ort", "fp32"), ("openvino", "fp32")} | (
        {("openvino", "bf16")} if NATIVE_BF16 else set())
    assert expected <= set(rows), (set(rows), rep["skipped"])
    assert ("ort", "fp32") in rows, rep["skipped"]  # cpu_op (conftest.py): the custom op is built, ORT must run
    for r in rows.values():
        assert r["vs_torch"] > 0 and r["speedup_vs_torch"] == pytest.approx(1 / r["vs_torch"])
    assert rows[("torch", "fp32")]["vs_torch"] == 1.0
    table = capsys.readouterr().out
    assert "x torch" in table and "speed-up" in table and "openvino" in table


@pytest.mark.slow
def test_openvino_int8_command_quantizes_all_but_the_offset_heads(tmp_path, cpu_op, shipped):
    """calib.openvino_int8 on real frames (a pairs folder of bikes triplets) with the shipped weights: the IR runs on
    --backend openvino as int8 -- the compiled model executes u8/i8 convolutions (int8 really ran), its offset-head
    convolutions in f32 -- and agrees with the fp32 model on a held-aside real pair at >= 51 dB (README's figure
    for the shipped weights: 32 calibration pairs at 448x256 there, 3 at 96x64 here); inputs are left as they were."""
    pytest.importorskip("nncf")
    from calib.openvino_int8 import main as int8_main
    from tests.helpers import bikes_frames, crop, save_frames, tree_digest

    f = bikes_frames(9, 40)
    for i in range(3):
        save_frames(tmp_path / "pairs" / f"t{i}", [crop(f[3 * i + k], 96, 64, x=200 + 60 * i) for k in range(3)],
                    names=["im1.png", "im2.png", "im3.png"])
    before = (tree_digest(tmp_path / "pairs"), tree_digest(shipped["onnx"]))
    out, rep = tmp_path / "m.int8.xml", tmp_path / "r.json"
    assert int8_main([str(tmp_path / "pairs"), "-o", str(out), "--onnx", str(shipped["onnx"]), "--num", "3",
                      "--size", "96x64", "--eval-count", "1", "--report", str(rep)]) == 0
    assert (tree_digest(tmp_path / "pairs"), tree_digest(shipped["onnx"])) == before
    assert out.is_file() and out.with_suffix(".bin").is_file()
    report = json.loads(rep.read_text())
    assert report["fake_quantize_nodes"] > 0 and report["ignored_nodes"] > 0
    f0, f2 = real_pair(96, 64, x=420, y=150)  # not one of the calibration crops
    with OpenVINOBackend(out, precision="fp32", threads=1) as b:
        desc = b.describe()
        got = b.infer(f0, f2)
        executed = b.runtime_precisions(f0.shape)
        offset_convs = fp32_regions_convs(b)
    assert desc["precision"] == "int8" and "nncf" in desc["int8"] and "C++ CPU kernel" in desc["synthesis"]
    assert desc["checkpoint_sha256"] == shipped["sha"]
    convs = [(p, names) for layer, p, names in executed if layer == "Convolution"]
    int8 = [p for p, _ in convs if p in ("u8", "i8")]
    assert len(int8) >= 0.5 * len(convs), sorted({p for p, _ in convs})  # most of the U-Net ran in int8
    head = [p for p, names in convs if offset_convs & set(names)]
    assert head and set(head) == {"f32"}  # the offset heads did not
    assert psnr(got, torch_forward(shipped["model"], f0, f2)) >= 51.0  # the fp32 model itself (no compile needed)


def fp32_regions_convs(backend: OpenVINOBackend) -> set[str]:
    """Friendly names of the offset heads' convolutions in the backend's model (ovb.fp32_regions)."""
    ids = ovb.fp32_regions(backend.model)["offset_heads"]
    return {n.get_friendly_name() for n in backend.model.get_ordered_ops()
            if n.get_instance_id() in ids and n.get_type_name() == "Convolution"}
