"""The TensorRT stand-ins of tests/test_tensorrt_contract.py against TensorRT's real Python API: every class member,
enum value and module function a stand-in offers (and so every one runtime/ may call through it) must exist in the
10.x and 11.x bindings. The bindings are NVIDIA's wheels `tensorrt-cu12-bindings` (10.x) and `tensorrt-cu13-bindings`
(11.x), fetched into the git-ignored .trt/wheels (plugins/README.md, "Two TensorRT majors"); they import against stub
libnvinfer/libnvinfer_plugin/libnvonnxparser libraries built here, which define the nine entry points the bindings
link to and nothing else (no TensorRT runs: the API is introspected, never called). Skipped where the wheels were not
fetched."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".trt" / "wheels"

# The symbols the bindings' tensorrt.so leaves to libnvinfer, libnvinfer_plugin and libnvonnxparser (nm -D -u).
STUB = """
void *createInferBuilder_INTERNAL(void) { return 0; }
void *createInferRefitter_INTERNAL(void) { return 0; }
void *createInferRuntime_INTERNAL(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return 0; }
void *getBuilderPluginRegistry(void) { return 0; }
void *getPluginRegistry(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void) { return 0; }
"""

PROBE = """
import json, sys
import tensorrt_bindings as trt
missing = []
for owner, name in json.loads(sys.argv[1]):
    obj = trt if owner == "" else getattr(trt, owner, None)
    if obj is None or not hasattr(obj, name):
        missing.append(f"{owner}.{name}" if owner else name)
print(json.dumps({"version": trt.__version__, "missing": missing}))
"""


def _members(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


def stand_in_names() -> set[tuple[str, str]]:
    """(TensorRT class, member) for every member the stand-ins define; "" for module-level names."""
    from tests.test_tensorrt_contract import _FakeTRT, _Registry, _runtime_trt

    fake = _FakeTRT("10.16.0.1")
    builder = fake.Builder(None)
    config = builder.create_builder_config()
    network = builder.create_network(0)
    objects = {"Builder": builder, "IBuilderConfig": config, "INetworkDefinition": network,
               "IOptimizationProfile": builder.create_optimization_profile(),
               "OnnxParser": fake.OnnxParser(network, None), "ITimingCache": config.create_timing_cache(b""),
               "IPluginRegistry": _Registry(None, False)}
    names = {(cls, n) for cls, obj in objects.items() for n in _members(type(obj))}
    names.add(("IBuilderConfig", "plugins_to_serialize"))  # set as an attribute (a property of the real class)
    for enum in ("Logger", "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType"):
        names |= {(enum, n) for n in _members(getattr(_FakeTRT, enum))}
    names |= {("", n) for n in ("Logger", "Builder", "OnnxParser", "init_libnvinfer_plugins", "get_plugin_registry")}

    trt, _ = _runtime_trt("10.16.0.1")
    runtime = trt.Runtime(None)
    engine = runtime.deserialize_cuda_engine(b"")
    names |= {("Runtime", n) for n in _members(type(runtime))} | {("Runtime", "engine_host_code_allowed")}
    names |= {("ICudaEngine", n) for n in _members(type(engine))}
    names |= {("TensorIOMode", n) for n in vars(trt.TensorIOMode)}
    names |= {("", n) for n in ("Runtime", "TensorIOMode", "nptype")}
    return names


def _bindings(tmp_path: Path, wheel: Path) -> tuple[Path, Path]:
    """(folder holding tensorrt_bindings, folder of stub libraries for its major)."""
    major = re.search(r"-(\d+)\.\d+\.", wheel.name).group(1)
    site = tmp_path / wheel.stem / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    stubs = tmp_path / wheel.stem / "stubs"
    stubs.mkdir()
    src = stubs / "stub.c"
    src.write_text(STUB)
    for lib in ("nvinfer", "nvinfer_plugin", "nvonnxparser"):
        so = f"lib{lib}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(stubs / so), f"-Wl,-soname,{so}"], check=True)
    return site, stubs


def _wheels() -> list[Path]:
    found = {m: sorted(WHEELS.glob(f"tensorrt_cu*_bindings-{m}.*-cp{sys.version_info[0]}{sys.version_info[1]}-*.whl"))
             for m in ("10", "11")}
    if not all(found.values()) or shutil.which("cc") is None:
        pytest.skip("TensorRT binding wheels of both majors not in .trt/wheels (plugins/README.md), or no cc")
    return [found["10"][-1], found["11"][-1]]


def probe(tmp_path: Path, wheel: Path, names: set[tuple[str, str]]) -> dict:
    site, stubs = _bindings(tmp_path, wheel)
    r = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(names))], capture_output=True, text=True,
                       timeout=120, env={"PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(stubs), "PATH": "/usr/bin"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_every_name_the_stand_ins_offer_exists_in_both_majors(tmp_path):
    names = stand_in_names()
    assert {("IBuilderConfig", "clear_flag"), ("BuilderFlag", "TF32"), ("IBuilderConfig", "set_timing_cache"),
            ("ITimingCache", "serialize"), ("Runtime", "engine_host_code_allowed")} <= names
    for wheel in _wheels():
        got = probe(tmp_path, wheel, names)
        assert got["missing"] == [], (got["version"], got["missing"])


def test_the_probe_finds_names_a_major_lacks(tmp_path):
    """The check can fail: 11.x removed the FP16 builder flag that 10.x still has (deprecated), and neither has a
    made-up member."""
    made_up = {("BuilderFlag", "FP16"), ("IBuilderConfig", "clear_flags")}
    w10, w11 = _wheels()
    assert probe(tmp_path, w10, made_up)["missing"] == ["IBuilderConfig.clear_flags"]
    assert probe(tmp_path, w11, made_up)["missing"] == ["BuilderFlag.FP16", "IBuilderConfig.clear_flags"]
