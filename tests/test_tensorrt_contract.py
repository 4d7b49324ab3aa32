"""The TensorRT path's logic that runs without TensorRT: the engine cache (key, reuse, one build for concurrent runs),
the activation-memory estimate, the plugin loader's error reporting, and `--backend auto` / on-demand `trt` on a
machine without TensorRT. The cache and the loader are driven through stand-ins for TensorRT's side only (the build
function, the plugin registry), since TensorRT cannot run here; what they decide is the code under test."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import onnx
import onnx.helper as oh
import pytest
from PIL import Image

from plugins.onnx_node import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION
from runtime import tensorrt_env
from runtime.engine_cache import Target, cached_engine, engine_cache_key
from runtime.engine_meta import EngineMeta, Profile, sidecar_path, write_sidecar
from runtime.memory_estimate import peak_activation_bytes, weight_bytes
from sfadacof.checkpoint import file_sha256
from sfadacof.errors import UserError
from tests.helpers import bikes_frames, crop

REPO = Path(__file__).resolve().parents[1]
TARGET = Target("10.16.0.1", "NVIDIA H100 80GB HBM3", "9.0")


# -- engine cache ------------------------------------------------------------------------------------------------------

def _fake_build(req) -> None:
    """Stands in for TensorRT's build: writes an engine and its sidecar as runtime.build_engine does, and counts."""
    time.sleep(0.3)  # long enough for a concurrent run to reach the lock
    req.engine.write_bytes(b"engine " + req.precision.encode())
    with open(req.engine.parent / "builds.log", "a") as f:
        f.write(f"{req.engine.name}\n")
    write_sidecar(req.engine, EngineMeta(tensorrt_version=TARGET.tensorrt_version, gpu_name=TARGET.gpu_name,
                                         compute_capability=TARGET.compute_capability, precision=req.precision,
                                         profile=req.profile.to_json(), onnx_path=str(req.onnx), onnx_sha256="",
                                         engine_sha256=file_sha256(req.engine)))


def _builds(root: Path) -> list[str]:
    log = root / "builds.log"
    return log.read_text().split() if log.is_file() else []


def test_cache_key_covers_everything_that_invalidates_an_engine():
    base = dict(onnx_sha256="a" * 64, plugin_sha256="b" * 64, precision="fp16", profile=Profile())
    k = engine_cache_key(TARGET, **base)
    assert k == engine_cache_key(Target(*vars(TARGET).values()), **dict(base))  # deterministic
    variants = [
        (Target("10.16.0.2", TARGET.gpu_name, "9.0"), base),
        (Target(TARGET.tensorrt_version, "NVIDIA H200", "9.0"), base),
        (Target(TARGET.tensorrt_version, TARGET.gpu_name, "8.9"), base),
        (TARGET, {**base, "onnx_sha256": "c" * 64}),
        (TARGET, {**base, "plugin_sha256": "d" * 64}),
        (TARGET, {**base, "precision": "fp32"}),
        (TARGET, {**base, "profile": Profile.from_args(None, None, "1x3x2160x3840")}),
    ]
    keys = {engine_cache_key(t, **kw) for t, kw in variants}
    assert len(keys) == len(variants) and k not in keys


@pytest.fixture()
def cache_inputs(tmp_path) -> tuple[Path, Path, Path]:
    """(an ONNX file, a plugin library, the cache root) as bytes the cache hashes."""
    onnx_path, plugin = tmp_path / "m.onnx", tmp_path / "libp.so"
    onnx_path.write_bytes(b"graph")
    plugin.write_bytes(b"plugin")
    return onnx_path, plugin, tmp_path / "cache"


def test_cache_builds_once_then_reuses(cache_inputs):
    onnx_path, plugin, root = cache_inputs
    kw = dict(precision="fp16", profile=Profile(), plugin=plugin, root=root, target=TARGET, build=_fake_build)
    first = cached_engine(onnx_path, **kw)
    assert first.read_bytes() == b"engine fp16" and sidecar_path(first).is_file()
    assert cached_engine(onnx_path, **kw) == first and _builds(root) == [first.name]
    # a changed plugin library is another key: a second build, the first entry untouched
    plugin.write_bytes(b"plugin v2")
    second = cached_engine(onnx_path, **kw)
    assert second != first and _builds(root) == [first.name, second.name] and first.is_file()
    # an entry without its sidecar (a build killed between the two writes) is not trusted: rebuilt
    sidecar_path(second).unlink()
    assert cached_engine(onnx_path, **kw) == second and len(_builds(root)) == 3


def test_cache_rebuilds_an_altered_engine(cache_inputs, capsys):
    """An engine changed in place after its sidecar was written (same length, sidecar intact) is not used: one note
    line on stderr, and it is built again (issue 23)."""
    onnx_path, plugin, root = cache_inputs
    kw = dict(precision="fp32", profile=Profile(), plugin=plugin, root=root, target=TARGET, build=_fake_build)
    first = cached_engine(onnx_path, **kw)
    capsys.readouterr()
    first.write_bytes(b"ENGINE fp32")  # same length, other bytes
    assert cached_engine(onnx_path, **kw) == first and len(_builds(root)) == 2
    assert first.read_bytes() == b"engine fp32"
    err = capsys.readouterr().err.splitlines()
    assert sum("does not match the sha256 its sidecar recorded" in line for line in err) == 1, err
    assert cached_engine(onnx_path, **kw) == first and len(_builds(root)) == 2  # then reused


def _cache_in_process(args) -> str:
    onnx_path, plugin, root = args
    return str(cached_engine(Path(onnx_path), precision="fp32", profile=Profile(), plugin=Path(plugin),
                             root=Path(root), target=TARGET, build=_fake_build))


@pytest.mark.slow  # three spawned interpreters (~4 s CPU)
def test_concurrent_runs_build_once(cache_inputs):
    onnx_path, plugin, root = cache_inputs
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_cache_in_process, [(str(onnx_path), str(plugin), str(root))] * 3)
    assert len(set(paths)) == 1 and len(_builds(root)) == 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory, ckpt, ckpt_exports):
    """The seeded model's plugin-form graph by the default exporter (what users build engines from): the session's
    export of `ckpt` (conftest.py: no export here), copied out of the cache so that no test here can touch the entry
    the other files read."""
    import shutil

    from export.cache import onnx_for_checkpoint

    path = tmp_path_factory.mktemp("exp") / "m.onnx"
    shutil.copyfile(onnx_for_checkpoint(ckpt, synthesis="plugin"), path)  # == ckpt_exports["default"] when built
    return path


# -- activation memory estimate ----------------------------------------------------------------------------------------

def test_peak_activation_estimate_by_hand():
    """x(1,3,H,W) -> Conv(8 ch, 3x3 pad 1) -> a -> Relu -> b -> Add(b, a) -> y. At the Relu, x is dead (its last
    reader was the Conv), a and b live: 16 channels; at the Add, a, b and y: 24 channels. fp32, so the peak is
    24*H*W*4 bytes; weights 8*3*3*3 + 8 floats. (H, W multiples of 32, as the model's padded frames are.)"""
    h, w = 96, 128
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    wt = oh.make_tensor("wt", onnx.TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * 216)
    bias = oh.make_tensor("bias", onnx.TensorProto.FLOAT, [8], [0.0] * 8)
    nodes = [oh.make_node("Conv", ["x", "wt", "bias"], ["a"], pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["a"], ["b"]), oh.make_node("Add", ["b", "a"], ["y"])]
    m = oh.make_model(oh.make_graph(nodes, "g", [x], [y], [wt, bias]), opset_imports=[oh.make_opsetid("", 17)])
    assert peak_activation_bytes(m, (1, 3, h, w)) == 24 * h * w * 4
    assert peak_activation_bytes(m, (2, 3, h, w)) == 2 * 24 * h * w * 4
    assert weight_bytes(m) == (216 + 8) * 4


def test_tensor_sizes_of_the_exported_model_match_a_run_at_that_size(exported):
    """On the real export (the default exporter's plugin form: what runtime.build_engine parses), the probe-and-scale
    sizes equal the sizes of every tensor before the synthesis node in a real ONNX Runtime run at another size
    (96x160, odd-sized 90x150 padded to it), and the peak covers the six K^2 maps in fp32."""
    import numpy as np
    import onnxruntime as ort

    from runtime.memory_estimate import tensor_sizes

    m = onnx.load(str(exported))
    est = tensor_sizes(m, (1, 3, 90, 150))
    syn = next(n for n in m.graph.node if n.op_type == OP_TYPE)
    before = [n for n in m.graph.node[:list(m.graph.node).index(syn)]]
    sub = onnx.ModelProto()
    sub.CopyFrom(m)
    del sub.graph.node[:]
    sub.graph.node.extend(before)
    del sub.graph.output[:]
    names = [o for n in before for o in n.output]
    typed = onnx.shape_inference.infer_shapes(m).graph.value_info
    types = {v.name: v.type.tensor_type.elem_type for v in typed}
    sub.graph.output.extend(oh.make_tensor_value_info(t, types.get(t, onnx.TensorProto.FLOAT), None) for t in names)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(sub.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 3, 90, 150), dtype=np.float32)
    real = dict(zip(names, (a.nbytes for a in sess.run(names, {"frame0": x, "frame2": x}))))
    assert {t: est[t] for t in names} == real
    assert peak_activation_bytes(m, (1, 3, 256, 256)) > 256 * 256 * 4 * (2 * 25 * 3)


# -- plugin loader -----------------------------------------------------------------------------------------------------

class _Registry:
    """TensorRT's registry as far as the loader sees it: load_library returns a handle or None, creators by key."""

    def __init__(self, handle, registers: bool) -> None:
        self.handle, self.registers, self.loads, self.creators = handle, registers, [], []

    def load_library(self, path):
        self.loads.append(path)
        if self.registers:
            self.creators.append((OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE))
        return self.handle

    def get_creator(self, name, version, namespace):
        return object() if (name, version, namespace) in self.creators else None


def _fake_trt(registry):
    return SimpleNamespace(init_libnvinfer_plugins=lambda logger, ns: True, get_plugin_registry=lambda: registry)


def test_plugin_loader_names_the_missing_dependency(tmp_path):
    """A real shared library whose dependency is gone: TensorRT's load_library gives None; the one-line error carries
    the dynamic loader's own message naming the missing library."""
    dep = tmp_path / "libsfadacof_gone_dep.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(dep)], input=b"int gone(void){return 1;}",
                   check=True)
    lib = tmp_path / "libplugin_like.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-x", "c", "-", "-o", str(lib), f"-L{tmp_path}", "-lsfadacof_gone_dep"],
                   input=b"int gone(void); int f(void){return gone();}", check=True)
    dep.unlink()
    reg = _Registry(handle=None, registers=False)
    with pytest.raises(UserError) as e:
        tensorrt_env.load_plugin_library(_fake_trt(reg), lib, logger=None)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{lib}: TensorRT could not load the plugin library: ")
    assert "libsfadacof_gone_dep.so" in msg


def test_plugin_loader_loads_once_and_confirms_the_creator(tmp_path, monkeypatch):
    monkeypatch.setattr(tensorrt_env, "_loaded", {})
    lib = tmp_path / "libp.so"
    lib.write_bytes(b"x")
    good = _Registry(handle="capsule", registers=True)
    sha = tensorrt_env.load_plugin_library(_fake_trt(good), lib, logger=None)
    assert len(sha) == 64 and good.loads == [str(lib.resolve())]
    # a second load in the same process (TensorRT would return None: already loaded) is not attempted
    assert tensorrt_env.load_plugin_library(_fake_trt(good), tmp_path / "." / "libp.so", logger=None) == sha
    assert good.loads == [str(lib.resolve())]
    # a library that loads but registers no AdaCoFSynthesis creator
    other = tmp_path / "libother.so"
    other.write_bytes(b"y")
    silent = _Registry(handle="capsule", registers=False)
    with pytest.raises(UserError, match=f"no {PLUGIN_NAMESPACE}::{OP_TYPE} v{PLUGIN_VERSION} creator is registered"):
        tensorrt_env.load_plugin_library(_fake_trt(silent), other, logger=None)
    with pytest.raises(UserError, match="plugin library not found"):
        tensorrt_env.load_plugin_library(_fake_trt(good), tmp_path / "none.so", logger=None)


# -- backends on a machine without TensorRT ----------------------------------------------------------------------------

@pytest.fixture()
def pairs(tmp_path):
    d = tmp_path / "pairs" / "p"
    d.mkdir(parents=True)
    for i, f in enumerate(bikes_frames()[:2]):
        Image.fromarray(crop(f, w=64, h=64)).save(d / f"{i}.png")
    return tmp_path / "pairs"


@pytest.mark.skipif(tensorrt_env.tensorrt_available() is None, reason="TensorRT and a GPU are here")
def test_auto_backend_falls_back_to_the_cpu_default_and_says_why(tmp_path, pairs, ckpt, ckpt_exports, monkeypatch):
    """In-process runtime.infer (the command's logic; its process behaviour is test_infer's and test_signals'), on
    `ckpt`, whose standard-op graph is in the session cache (conftest.py): no export here. The CPU default's
    precision is measured at 64x64, as in test_infer.py's default-backend test (one measurement for both: the
    session's cache holds it)."""
    from runtime.backends import cpu_choice
    from runtime.infer import main

    monkeypatch.setattr(cpu_choice, "MEASURE_SIZE", (64, 64))

    rep = tmp_path / "r.json"
    assert main([str(pairs), "-o", str(tmp_path / "o"), "--backend", "auto", "--checkpoint", str(ckpt),
                 "--report", str(rep)]) == 0
    b = json.loads(rep.read_text())["backend"]
    assert b["backend"] == "openvino" and b["chosen_by"].startswith("auto -> openvino: openvino ")
    assert "(CPU default; " in b["chosen_by"]
    assert "TensorRT" in b["chosen_by"] or "pycuda" in b["chosen_by"] or "GPU" in b["chosen_by"]
    assert (tmp_path / "o" / "p.png").is_file()


@pytest.mark.skipif(tensorrt_env.tensorrt_available() is None, reason="TensorRT and a GPU are here")
def test_trt_backend_without_engine_says_what_is_missing_before_exporting(tmp_path, pairs, monkeypatch, capsys):
    """In-process runtime.infer (exit status and stderr as the command gives them: sfadacof.errors.cli_command)."""
    from runtime.infer import main

    monkeypatch.setenv("SFADACOF_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as e:
        main([str(pairs), "-o", str(tmp_path / "o"), "--backend", "trt"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    # the line names the first thing missing here, found independently of runtime.tensorrt_env
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT Python package not installed" in lines[0] and "tensorrt-cu13" in lines[0], lines
    elif importlib.util.find_spec("pycuda") is None:
        assert "pycuda" in lines[0], lines
    else:
        assert any(w in lines[0] for w in ("GPU", "CUDA", "TensorRT")), lines
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize("built,runtime", [("trt10", "11.1.0.5"), ("trt11", "10.16.0.1")])
def test_plugin_of_another_major_is_refused_before_loading(built, runtime, monkeypatch):
    """A plugin built with the other major's headers (build/trt10, build/trt11: see plugins/README.md, built only
    where the headers were fetched) is refused in one line before TensorRT is asked to load it."""
    from plugins._libs import DEFAULT_BUILD_DIR, PLUGIN_LIBRARY, library_filename

    lib = DEFAULT_BUILD_DIR / built / library_filename(PLUGIN_LIBRARY)
    if not lib.is_file():
        pytest.skip(f"{lib} not built (needs fetched TensorRT headers, see plugins/README.md)")
    monkeypatch.setattr(tensorrt_env, "_loaded", {})
    reg = _Registry(handle="capsule", registers=True)
    trt = _fake_trt(reg)
    trt.__version__ = runtime
    with pytest.raises(UserError, match=f"built with TensorRT {built[3:]}\\.\\d+ headers, this runtime is TensorRT "
                                        f"{runtime}"):
        tensorrt_env.load_plugin_library(trt, lib, logger=None)
    assert reg.loads == []
    trt.__version__ = {"trt10": "10.16.0.1", "trt11": "11.1.0.5"}[built]  # the same major: loaded
    assert len(tensorrt_env.load_plugin_library(trt, lib, logger=None)) == 64 and len(reg.loads) == 1


# -- build_engine's calls into TensorRT ---------------------------------------------------------------------------------

class _FakeTRT:
    """Records what runtime.build_engine asks of TensorRT's Python API (names as in the 10.x/11.x bindings; the
    header check below ties each enum to the real headers where they were fetched)."""

    class Logger:
        VERBOSE, WARNING = 0, 2

        def __init__(self, level):
            self.level = level

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class BuilderFlag:
        TF32, VERSION_COMPATIBLE = 6, 13

    class MemoryPoolType:
        WORKSPACE = 0

    def __init__(self, version: str, timing_cache_matches: bool = True, timing_cache_serializes: bool = True) -> None:
        self.__version__, self.calls = version, {}
        self.registry = _Registry(handle="capsule", registers=True)
        fake = self

        class TimingCache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                if not timing_cache_serializes:
                    raise RuntimeError("timing cache serialization failed")
                return self.blob + b"+new timings"

        class Config:
            def __init__(self):
                # TF32 is on by default (NvInfer.h: BuilderFlag::kTF32 "Enabled by default")
                self.flags, self.plugins_to_serialize, self.cache = {fake.BuilderFlag.TF32}, None, None

            def set_memory_pool_limit(self, pool, size):
                fake.calls["workspace"] = size

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)

            def get_flag(self, flag):
                return flag in self.flags

            def create_timing_cache(self, blob):
                return TimingCache(bytes(blob))

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls["timing_cache"] = (cache.blob, ignore_mismatch)
                self.cache = cache
                return timing_cache_matches  # False: made on another device/version and ignore_mismatch=False

            def get_timing_cache(self):
                return self.cache

            def add_optimization_profile(self, p):
                fake.calls["profile"] = p.shapes

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        class Network:
            num_inputs = 2

            def get_input(self, i):
                return SimpleNamespace(name=("frame0", "frame2")[i])

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.calls["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                fake.calls["config"] = Config()
                return fake.calls["config"]

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"serialized engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                fake.calls["parsed"] = path
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser

    def init_libnvinfer_plugins(self, logger, ns):
        return True

    def get_plugin_registry(self):
        return self.registry


@pytest.mark.parametrize("version,flags", [("10.16.0.1", 1 << 1), ("11.1.0.5", 0)])
def test_build_engine_requests(exported, tmp_path, monkeypatch, version, flags, capsys):
    """Strongly typed on both majors (10.x: the flag; 11.x: always, no flag); --fp16 parses the fp16 graph whose
    synthesis node gets fp32 offsets; --serialize-plugin sets VERSION_COMPATIBLE with plugins_to_serialize and the
    sidecar says so; the memory estimate and the build notice are printed."""
    import runtime.build_engine as be
    from runtime.engine_meta import read_sidecar

    fake = _FakeTRT(version)
    monkeypatch.setattr(be, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(be, "gpu_info", lambda device=0: ("NVIDIA Fake", "9.0"))
    monkeypatch.setattr(tensorrt_env, "_loaded", {})
    plugin = tmp_path / "libsfadacof_trt_plugin.so"
    plugin.write_bytes(b"plugin")
    engine = tmp_path / "m.fp16.engine"
    be.main([str(exported), "--fp16", "-o", str(engine), "--plugin", str(plugin), "--serialize-plugin",
             "--max", "1x3x256x256"])
    assert fake.calls["network_flags"] == flags
    config = fake.calls["config"]
    assert config.flags == {_FakeTRT.BuilderFlag.VERSION_COMPATIBLE}  # TF32 cleared
    assert config.plugins_to_serialize == [str(plugin.resolve())]
    assert fake.calls["profile"]["frame0"] == ((1, 3, 32, 32), (1, 3, 256, 256), (1, 3, 256, 256))
    parsed = onnx.load(fake.calls["parsed"])
    onnx.checker.check_model(parsed, full_check=True)  # types consistent throughout (what ORT and TensorRT read)
    syn = next(n for n in parsed.graph.node if n.op_type == OP_TYPE)
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(parsed).graph.value_info}
    assert [types[syn.input[i]] for i in (0, 3, 8)] == [onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT,
                                                        onnx.TensorProto.FLOAT16]
    meta = read_sidecar(engine)
    assert meta.version_compatible and meta.plugin_serialized and meta.strongly_typed and meta.precision == "fp16"
    assert meta.tf32 is False
    assert engine.read_bytes() == b"serialized engine"
    # the fp16 graph is named after the engine, without a second ".fp16"
    assert fake.calls["parsed"] == str(tmp_path / "m.fp16.engine.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["libsfadacof_trt_plugin.so", "m.fp16.engine",
                                                         "m.fp16.engine.json", "m.fp16.engine.onnx"]
    err = capsys.readouterr().err
    assert "estimated device memory at the profile's max 1x3x256x256: activations <=" in err
    assert "this may take minutes" in err


def _fake_build_env(monkeypatch, fake):
    import runtime.build_engine as be

    monkeypatch.setattr(be, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(be, "gpu_info", lambda device=0: ("NVIDIA Fake", "9.0"))
    monkeypatch.setattr(tensorrt_env, "_loaded", {})
    return be


@pytest.mark.parametrize("version", ["10.16.0.1", "11.1.0.5"])
def test_fp32_build_clears_tf32_and_writes_engine_cache_and_sidecar(exported, tmp_path, monkeypatch, version):
    """An fp32 build (the default; no plugin embedding) asks for no builder flag at all: TF32, on by default in
    TensorRT, is cleared; the timing cache is read, checked (ignore_mismatch=False) and written with the engine."""
    from runtime.engine_meta import read_sidecar

    fake = _FakeTRT(version)
    be = _fake_build_env(monkeypatch, fake)
    plugin = tmp_path / "libp.so"
    plugin.write_bytes(b"plugin")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old timings")
    engine = tmp_path / "out" / "m.engine"
    be.main([str(exported), "-o", str(engine), "--plugin", str(plugin), "--timing-cache", str(cache),
             "--max", "1x3x256x256"])
    assert fake.calls["config"].flags == set()
    assert fake.calls["timing_cache"] == (b"old timings", False)
    assert cache.read_bytes() == b"old timings+new timings"
    meta = read_sidecar(engine)
    assert meta.precision == "fp32" and meta.tf32 is False and not meta.version_compatible
    assert sorted(p.name for p in engine.parent.iterdir()) == ["m.engine", "m.engine.json"]


def test_foreign_timing_cache_is_refused_in_one_line(exported, tmp_path, monkeypatch, capsys):
    """set_timing_cache returns False (a cache made on another GPU or TensorRT version): exit 2, one line naming
    the file, nothing written, the cache file untouched."""
    be = _fake_build_env(monkeypatch, _FakeTRT("10.16.0.1", timing_cache_matches=False))
    plugin = tmp_path / "libp.so"
    plugin.write_bytes(b"plugin")
    cache = tmp_path / "foreign.cache"
    cache.write_bytes(b"timings of another GPU")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as e:
        be.main([str(exported), "--fp16", "-o", str(out / "m.engine"), "--plugin", str(plugin),
                 "--timing-cache", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith(f"error: {cache}: timing cache made on another GPU or TensorRT")
    assert [line for line in err if line.startswith("error")] == [err[-1]]
    assert cache.read_bytes() == b"timings of another GPU"
    assert list(out.iterdir()) == []  # no engine, no sidecar, and the fp16 graph written for the build removed


def test_engine_and_sidecar_are_written_together_or_not_at_all(exported, tmp_path, monkeypatch, capsys):
    """A timing cache that fails to serialize after the build, or a sidecar that cannot be written: no engine is
    left without its sidecar (nor a sidecar without its engine), and the timing cache is not half updated."""
    plugin = tmp_path / "libp.so"
    plugin.write_bytes(b"plugin")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old timings")
    out = tmp_path / "out"
    out.mkdir()
    be = _fake_build_env(monkeypatch, _FakeTRT("10.16.0.1", timing_cache_serializes=False))
    with pytest.raises(SystemExit) as e:
        be.main([str(exported), "-o", str(out / "m.engine"), "--plugin", str(plugin), "--timing-cache", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "could not serialize the updated timing cache" in err[-1] and str(cache) in err[-1]
    assert list(out.iterdir()) == [] and cache.read_bytes() == b"old timings"
    # the sidecar's rename fails (a full disk, a lost mount) after the engine's and the timing cache's were renamed
    # into place: both are undone (a folder in the sidecar's place is refused before any work, by check_outputs)
    import sfadacof.outputs as outputs
    real_replace = outputs.os.replace

    def failing_replace(src, dst):
        if Path(dst).name == "m.engine.json":
            raise OSError(28, "No space left on device", str(src), None, str(dst))  # as os.replace names both
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing_replace)
    be = _fake_build_env(monkeypatch, _FakeTRT("10.16.0.1"))
    with pytest.raises(SystemExit) as e:
        be.main([str(exported), "-o", str(out / "m.engine"), "--plugin", str(plugin), "--timing-cache", str(cache)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and err[-1] == f"error: {out / 'm.engine.json'}: No space left on device"
    assert list(out.iterdir()) == []  # the engine renamed into place was removed again: no engine without sidecar
    assert cache.read_bytes() == b"old timings"  # renamed into place, then its old content put back


def test_engine_cache_names_its_fp16_graph_once(exported, tmp_path, monkeypatch):
    """runtime.engine_cache building through runtime.build_engine: MODEL.fp16.KEY.engine with MODEL.fp16.KEY.engine.onnx
    and .json beside it, no "fp16.fp16" anywhere."""
    import runtime.build_engine as be

    _fake_build_env(monkeypatch, _FakeTRT("10.16.0.1"))
    plugin = tmp_path / "libp.so"
    plugin.write_bytes(b"plugin")
    root = tmp_path / "cache"
    path = cached_engine(exported, precision="fp16", profile=Profile.from_args(None, None, "1x3x256x256"),
                         plugin=plugin, root=root, target=TARGET, build=be.build_engine)
    names = sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))
    assert path.name.startswith("m.fp16.") and path.name.endswith(".engine")
    assert names == [path.name, path.name + ".json", path.name + ".onnx"]
    assert not any("fp16.fp16" in n for n in names)


def test_build_engine_refuses_to_overwrite_its_input(exported, tmp_path, capsys):
    from runtime.build_engine import main

    with pytest.raises(SystemExit) as e:
        main([str(exported), "-o", str(exported)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and str(exported) in err[0]


def test_tensorrt_enums_used_exist_in_both_majors_headers():
    """Every `trt.<Enum>.<NAME>` runtime/ uses exists as `k<NAME>` in that enum of the 10.16 and 11.1 headers (fetched
    into .trt/, see plugins/README.md; skipped where they were not)."""
    import re

    heads = {v: REPO / ".trt" / v / "include" for v in ("v10.16", "v11.1")}
    if not all(h.is_dir() for h in heads.values()):
        pytest.skip("TensorRT headers not fetched into .trt/ (plugins/README.md)")
    used = set()
    for f in ("runtime/build_engine.py", "runtime/backends/tensorrt_backend.py", "runtime/tensorrt_env.py"):
        used |= set(re.findall(r"trt\.([A-Z]\w+)\.([A-Z][A-Z0-9_]+)\b", (REPO / f).read_text()))
    assert ("BuilderFlag", "VERSION_COMPATIBLE") in used and ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") in used
    enum_of = {"Logger": "Severity"}
    for v, inc in heads.items():
        text = "\n".join(p.read_text(errors="replace") for p in inc.glob("NvInfer*.h"))
        for enum, name in sorted(used):
            body = re.search(r"enum class " + enum_of.get(enum, enum) + r"\b[^{]*\{(.*?)\};", text, re.S)
            assert body and re.search(r"\bk" + name + r"\b", body.group(1)), f"{v}: {enum}.{name}"


# -- TensorRTBackend opening an engine ----------------------------------------------------------------------------------

def _runtime_trt(version: str):
    """TensorRT's runtime side as TensorRTBackend._open uses it (names as in the 10.x/11.x bindings): a Runtime whose
    deserialize_cuda_engine returns a two-input, one-output engine, and the plugin registry that records loads."""
    import numpy as np

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i):
            return ("frame0", "frame2", "frame1")[i]

        def get_tensor_mode(self, name):
            return "input" if name != "frame1" else "output"

        def get_tensor_dtype(self, name):
            return "float"

        def create_execution_context(self):
            return object()

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False
            trt.runtimes.append(self)

        def deserialize_cuda_engine(self, data):
            return Engine()

    registry = _Registry(handle="capsule", registers=True)
    trt = SimpleNamespace(__version__=version, Logger=_FakeTRT.Logger, Runtime=Runtime, runtimes=[],
                          TensorIOMode=SimpleNamespace(INPUT="input"), nptype=lambda t: np.float32,
                          init_libnvinfer_plugins=lambda logger, ns: True, get_plugin_registry=lambda: registry)
    return trt, registry


@pytest.mark.parametrize("built,runtime", [("10.16.1.11", "10.16.1.11"), ("10.8.0.43", "11.1.0.5")])
def test_engine_with_embedded_plugin_loads_no_plugin_from_disk(tmp_path, monkeypatch, capsys, built, runtime):
    """An engine built with --serialize-plugin (version-compatible, plugin embedded) opens without loading the on-disk
    plugin library, even when --plugin names one (a notice says so), with host code allowed; a 10.x such engine opens
    on an 11.x runtime (TensorRT's documented rule). An engine without the embedded plugin loads the library once."""
    from runtime.backends import tensorrt_backend as tb
    from sfadacof.checkpoint import file_sha256

    monkeypatch.setattr(tb, "gpu_info", lambda device=0: ("NVIDIA Fake", "9.0"))
    plugin = tmp_path / "libsfadacof_trt_plugin.so"
    plugin.write_bytes(b"an on-disk plugin build")
    for embedded in (True, False):
        monkeypatch.setattr(tensorrt_env, "_loaded", {})
        engine = tmp_path / f"m.{embedded}.engine"
        engine.write_bytes(b"engine")
        write_sidecar(engine, EngineMeta(tensorrt_version=built if embedded else runtime, gpu_name="NVIDIA Fake",
                                         compute_capability="9.0", precision="fp16", profile=Profile().to_json(),
                                         onnx_path="m.onnx", onnx_sha256="a" * 64, engine_sha256=file_sha256(engine),
                                         plugin_path=str(plugin), plugin_sha256=file_sha256(plugin),
                                         plugin_serialized=embedded, version_compatible=embedded))
        trt, registry = _runtime_trt(runtime)
        be = object.__new__(tb.TensorRTBackend)
        be.trt, be.cuda, be.device, be.engine_path = trt, SimpleNamespace(Stream=object), 0, engine
        be._open(plugin, check_sidecar=True)
        err = capsys.readouterr().err
        if embedded:
            assert registry.loads == [] and be.plugin_sha256 is None
            assert trt.runtimes[0].engine_host_code_allowed
            assert err.strip() == f"{engine}: the engine embeds the plugin library; {plugin} is not loaded"
        else:
            assert registry.loads == [str(plugin.resolve())] and be.plugin_sha256 == file_sha256(plugin)
            assert not trt.runtimes[0].engine_host_code_allowed and err == ""
        assert [n for n, _ in be.inputs] == ["frame0", "frame2"] and be.output_names == ["frame1"]


def test_gpu_extra_admits_no_pycuda_that_fails_to_build_with_cuda_13():
    """pycuda builds from source against the local CUDA; before 2025.1.2 its cuCtxCreate call does not compile with
    CUDA 13 (the project's toolkit; inducer/pycuda#485, fixed by #487 in 2025.1.2), so the gpu extra must exclude
    those releases and admit the fixed ones."""
    import tomllib

    from packaging.requirements import Requirement

    gpu = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    spec = next(r.specifier for r in map(Requirement, gpu) if r.name == "pycuda")
    assert [v for v in ("2024.1", "2024.1.2", "2025.1", "2025.1.1", "2025.1.2", "2025.1.3", "2026.1")
            if spec.contains(v)] == ["2025.1.2", "2025.1.3", "2026.1"]
