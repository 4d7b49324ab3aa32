"""runtime.backends.ort_backend: OrtBackend on both synthesis forms (the plugin form through the C++ CPU kernel),
session options, one-line errors, and onnx_for_checkpoint's cache (keyed by checkpoint hash, options, versions;
atomic; reused), including the `--backend ort --checkpoint` path of runtime.backends.registry."""

from __future__ import annotations

import os
import time

import numpy as np
import onnx
import pytest

from export.cache import export_cache_key, onnx_for_checkpoint
from export.core import resolve_exporter
from runtime.backends.base import available_cores
from runtime.backends.ort_backend import OrtBackend, make_session_options
from runtime.backends.registry import BackendOptions, create_backend
from sfadacof.checkpoint import file_sha256, save_checkpoint
from sfadacof.errors import UserError

from tests.helpers import large_motion_exports, large_motion_model, real_pair, torch_forward

TOL = 1e-4


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """rwtd (the smallest variant) exported with the TorchScript exporter (fastest), both forms."""
    return large_motion_exports(tmp_path_factory.mktemp("ortb"), "rwtd", seed=5, epoch=2, name="rwtd.pth")


@pytest.mark.slow  # the module's TorchScript export of rwtd (graphs)
@pytest.mark.parametrize("form", ["plugin", "onnx"])
def test_infer_and_describe(graphs, form):
    f0, f2 = real_pair(101, 70, batch=2)
    with OrtBackend(graphs[form], threads=1) as b:
        out = b.infer(f0, f2)
        desc = b.describe()
        assert b.session.get_session_options().intra_op_num_threads == 1
    assert out.shape == f0.shape and out.dtype == np.float32
    assert float(np.abs(out - torch_forward(graphs["model"], f0, f2)).max()) <= TOL
    assert desc["backend"] == "ort" and desc["providers"] == ["CPUExecutionProvider"]
    assert desc["synthesis"] == form and desc["precision"] == "fp32" and desc["threads"] == 1
    assert desc["variant"] == "rwtd" and desc["checkpoint_sha256"] == file_sha256(graphs["ckpt"])
    assert (desc["custom_op"] is not None) == (form == "plugin")


def test_default_session_options_fit_the_machine():
    import onnxruntime as ort

    so = make_session_options(ort, None, "all", custom_op=False)
    assert so.intra_op_num_threads == available_cores() == len(os.sched_getaffinity(0))
    assert so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.slow  # the module's TorchScript export of rwtd (graphs)
def test_plugin_form_op_is_the_cpp_kernel(graphs, monkeypatch):
    """The custom node is computed by plugins.cpu_op (the C++ kernel): a spy around the real function sees one call
    per inference with the node's K and dilation, and the output is the C++ result (bit-identity of node and
    kernel on the op alone is in test_export.py)."""
    import plugins.cpu_op as cpu_op
    from runtime.backends.ort_custom_op import cpu_library_path

    calls = []
    real = cpu_op.adacof_synthesis_cpu

    def spy(*args, **kwargs):
        calls.append((args[0].shape, args[9], args[10]))
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_op, "adacof_synthesis_cpu", spy)
    assert cpu_library_path().endswith("libsfadacof_cpu.so")
    f0, f2 = real_pair(45, 37)
    with OrtBackend(graphs["plugin"]) as b:
        b.infer(f0, f2)
    assert calls == [((1, 3, 64, 64), 5, 1)]  # the 32-padded frame, K = 5, d = 1


@pytest.mark.slow  # the module's TorchScript export of rwtd (graphs)
def test_errors_are_one_line_user_errors(graphs, tmp_path):
    with pytest.raises(UserError, match="ONNX model not found"):
        OrtBackend(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 50)
    with pytest.raises(UserError) as e:
        OrtBackend(junk)
    assert str(junk) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="CUDAExecutionProvider"):
        OrtBackend(graphs["onnx"], device="cuda")
    with OrtBackend(graphs["onnx"]) as b:
        f0, _ = real_pair(45, 37)
        f2, _ = real_pair(45, 38)
        with pytest.raises(UserError, match="differ in shape"):
            b.infer(f0, f2)


@pytest.mark.slow  # the module's TorchScript export of rwtd (graphs)
def test_fp16_graph_runs_with_fp32_synthesis(graphs, tmp_path):
    from export.fp16_graph import convert_file

    dst = tmp_path / "p16.onnx"
    convert_file(graphs["plugin"], dst)
    m = onnx.load(str(dst))
    node = next(n for n in m.graph.node if n.op_type == "AdaCoFSynthesis")
    f0, f2 = real_pair(45, 37, batch=2)
    with OrtBackend(dst) as b:
        assert b.describe()["precision"] == "fp16"
        out = b.infer(f0, f2)
    assert node.domain == "sfadacof"
    ref = torch_forward(graphs["model"], f0, f2)
    err = np.abs(out - ref)
    # fp16 trunk: PSNR vs fp32 well above the runtime's 45 dB fp16 threshold, not fp32-exact
    psnr = 10 * np.log10(1.0 / float(np.mean(err.astype(np.float64) ** 2)))
    assert psnr > 45 and float(err.max()) > 1e-6


# -- onnx_for_checkpoint -----------------------------------------------------------------------------------------------

def test_cache_key_covers_checkpoint_options_and_versions():
    base = {"synthesis": "plugin", "precision": "fp32", "variant": "rwtd", "kernel_size": 5, "dilation": 1,
            "opset": 18, "exporter": "dynamo"}
    k = export_cache_key("a" * 64, base)
    assert k == export_cache_key("a" * 64, dict(base))
    assert k != export_cache_key("b" * 64, base)
    for key, value in (("synthesis", "onnx"), ("precision", "fp16"), ("opset", 17), ("exporter", "torchscript"),
                       ("dilation", 2)):
        assert k != export_cache_key("a" * 64, dict(base, **{key: value})), key


@pytest.mark.slow  # the module's TorchScript export of rwtd (graphs)
def test_onnx_for_checkpoint_exports_once_then_reuses(graphs, tmp_path, monkeypatch):
    monkeypatch.setenv("SFADACOF_CACHE", str(tmp_path / "cache"))
    t = time.perf_counter()
    p1 = onnx_for_checkpoint(graphs["ckpt"], synthesis="onnx", exporter="torchscript")
    first = time.perf_counter() - t
    assert p1.parent == tmp_path / "cache" / "onnx" and p1.is_file()
    meta = {p.key: p.value for p in onnx.load(str(p1), load_external_data=False).metadata_props}
    assert meta["checkpoint_sha256"] == file_sha256(graphs["ckpt"]) and meta["synthesis"] == "onnx"
    mtime = p1.stat().st_mtime_ns
    t = time.perf_counter()
    p2 = onnx_for_checkpoint(graphs["ckpt"], synthesis="onnx", exporter="torchscript")
    again = time.perf_counter() - t
    assert p2 == p1 and p1.stat().st_mtime_ns == mtime and again < first
    # another checkpoint (same variant, other weights) -> another file
    other = tmp_path / "other.pth"
    save_checkpoint(other, large_motion_model("rwtd", seed=6))
    p3 = onnx_for_checkpoint(other, synthesis="onnx", exporter="torchscript")
    assert p3 != p1 and p3.is_file()
    # atomic writes leave no temp files behind: each entry and the digest recorded beside it
    assert sorted(x.name for x in p1.parent.iterdir()) == sorted(
        [p1.name, p3.name, p1.name + ".sha256", p3.name + ".sha256"])


def test_registry_ort_backend_from_checkpoint(ckpt, ckpt_exports):
    """What `runtime.infer --backend ort --checkpoint CKPT` does: export (default exporter, plugin form) into the
    cache -- the session's `ckpt`, exported there on first use by the same onnx_for_checkpoint (conftest.py) -- and
    run it, within TOL of the model called directly."""
    from tests.helpers import seeded_model

    backend = create_backend("ort", BackendOptions(checkpoint=ckpt))
    with backend:
        # on the CPU the registry wraps it for frames too large to run whole (runtime/backends/large_frames.py)
        assert isinstance(backend.inner, OrtBackend) and backend.describe()["synthesis"] == "plugin"
        assert backend.inner.onnx_path == ckpt_exports["default"]  # the session cache's entry
        meta = {p.key: p.value for p in onnx.load(str(ckpt_exports["default"]), load_external_data=False).metadata_props}
        assert meta["exporter"] == resolve_exporter("auto") == "torchscript"  # the default exporter (export/core.py)
        assert meta["checkpoint_sha256"] == file_sha256(ckpt)
        f0, f2 = real_pair(45, 37)
        assert float(np.abs(backend.infer(f0, f2) - torch_forward(seeded_model(), f0, f2)).max()) <= TOL


@pytest.mark.slow  # the module's TorchScript export of rwtd (graphs)
def test_also_caches_the_other_form_from_the_same_trace(graphs, tmp_path, monkeypatch):
    """onnx_for_checkpoint(also=...): one trace writes both forms into the cache, each with its digest; asking for
    the other form then exports nothing (a spy around the real export_model counts the traces) and gives a
    standard-op graph that runs within TOL of the model."""
    import export.cache as cache

    traces = []
    real_export = cache.export_model
    monkeypatch.setattr(cache, "export_model", lambda *a, **kw: traces.append(kw) or real_export(*a, **kw))
    root = tmp_path / "c"
    plugin = onnx_for_checkpoint(graphs["ckpt"], synthesis="plugin", exporter="torchscript", cache_dir_override=root,
                                 also=("onnx",))
    assert len(traces) == 1
    std = onnx_for_checkpoint(graphs["ckpt"], synthesis="onnx", exporter="torchscript", cache_dir_override=root)
    assert len(traces) == 1 and std != plugin
    assert sorted(x.name for x in root.iterdir()) == sorted(
        [plugin.name, std.name, plugin.name + ".sha256", std.name + ".sha256"])
    assert cache.cached_export_ok(plugin) and cache.cached_export_ok(std)
    m = onnx.load(str(std), load_external_data=False)
    assert {p.key: p.value for p in m.metadata_props}["synthesis"] == "onnx"
    assert all(n.domain in ("", "ai.onnx") for n in m.graph.node)
    f0, f2 = real_pair(45, 37)
    with OrtBackend(std, threads=1) as b:
        assert float(np.abs(b.infer(f0, f2) - torch_forward(graphs["model"], f0, f2)).max()) <= TOL
    # asked again with `also`, nothing is traced: both entries are there
    assert onnx_for_checkpoint(graphs["ckpt"], synthesis="plugin", exporter="torchscript", cache_dir_override=root,
                               also=("onnx",)) == plugin and len(traces) == 1
    with pytest.raises(UserError, match="from an fp32 export only"):
        onnx_for_checkpoint(graphs["ckpt"], precision="fp16", exporter="torchscript", cache_dir_override=root,
                            also=("onnx",))


def test_onnx_for_checkpoint_bad_checkpoint_and_unwritable_cache(tmp_path, monkeypatch):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        onnx_for_checkpoint(bad)
    ck = tmp_path / "ok.pth"
    save_checkpoint(ck, large_motion_model("rwtd"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("SFADACOF_CACHE", str(blocker))  # a file where the cache folder should go
    with pytest.raises(UserError, match="cannot create the export cache"):
        onnx_for_checkpoint(ck, exporter="torchscript")
