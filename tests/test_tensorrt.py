"""TensorRT engines of the graph `export.to_onnx` ships, run through the pycuda backend and checked against PyTorch on
real frames of an odd size (the graph's own reflect pad and crop at work): fp32, fp16 (strongly typed, the plugin's
fp16 + fp32-offsets form), INT8 (Q/DQ from calib) and an engine with the plugin library embedded; engines built on
demand and reused; the refusals. They need TensorRT, pycuda and a GPU (conftest skips them with the reason otherwise);
on such a machine the plugin library is built if missing, and a failed build fails the tests instead of skipping them.
The one-line refusal on machines without TensorRT runs everywhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.tensorrt_env import tensorrt_available
from tests.helpers import bikes_frames, crop, seeded_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _run(*argv: str, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.skipif(tensorrt_available() is None, reason="TensorRT and a GPU are here")
def test_trt_backend_without_tensorrt_one_line(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    (tmp_path / "pairs" / "p").mkdir(parents=True)
    for i, f in enumerate(bikes_frames()[:2]):
        Image.fromarray(crop(f, w=64, h=64)).save(tmp_path / "pairs" / "p" / f"{i}.png")
    r = _run("-m", "runtime.infer", str(tmp_path / "pairs"), "-o", str(tmp_path / "o"), "--backend", "trt",
             "--engine", str(engine))
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1, r.stderr
    assert any(s in err[0] for s in ("TensorRT Python package", "pycuda", "no NVIDIA GPU")), err[0]
    assert not (tmp_path / "o").exists()


# -- on a machine with TensorRT ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    """The plugin library: found, or built now; a failed build is a failure, not a skip."""
    from runtime.tensorrt_env import default_plugin_library

    lib = default_plugin_library()
    if lib is None:
        r = _run("-m", "plugins.build")
        lib = default_plugin_library()
        if lib is None:
            pytest.fail(f"python -m plugins.build did not produce the TensorRT plugin library:\n{r.stdout[-3000:]}"
                        f"\n{r.stderr[-3000:]}")
    return lib


@pytest.fixture(scope="module")
def work(tmp_path_factory, plugin):
    """A seeded checkpoint exported by `python -m export.to_onnx`, real 203x131 frame pairs (one triplet)."""
    d = tmp_path_factory.mktemp("trt")
    ckpt = seeded_checkpoint(d / "m.pth")
    onnx_path = d / "m.onnx"
    r = _run("-m", "export.to_onnx", str(ckpt), "-o", str(onnx_path))
    assert r.returncode == 0, r.stderr
    pairs = d / "pairs"
    frames = bikes_frames(5, 40)
    for name, (a, b, c) in (("t0", frames[0:3]), ("t1", frames[2:5])):
        (pairs / name).mkdir(parents=True)
        for fn, img in zip(("im1.png", "im2.png", "im3.png"), (a, b, c)):
            Image.fromarray(crop(img)).save(pairs / name / fn)
    return {"dir": d, "ckpt": ckpt, "onnx": onnx_path, "pairs": pairs, "plugin": plugin}


SMALL_PROFILE = ("--min", "1x3x32x32", "--opt", "1x3x131x203", "--max", "1x3x256x256")


@pytest.fixture(scope="module")
def engines(work):
    d, out = work["dir"], {}
    int8_onnx = d / "m.int8.onnx"
    r = _run("-m", "calib", str(work["pairs"]), "-o", str(int8_onnx), "--onnx", str(work["onnx"]), "--num", "2",
             "--size", "203x131")
    assert r.returncode == 0, r.stderr
    for name, src, flags in (("fp32", work["onnx"], ["--fp32"]), ("fp16", work["onnx"], ["--fp16"]),
                             ("int8", int8_onnx, ["--int8"]),
                             ("fp16_embedded", work["onnx"], ["--fp16", "--serialize-plugin"])):
        engine = d / f"{name}.engine"
        r = _run("-m", "runtime.build_engine", str(src), *flags, "-o", str(engine), *SMALL_PROFILE,
                 "--plugin", str(work["plugin"]))
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert "estimated device memory" in r.stderr
        out[name] = engine
    return out


@pytest.mark.tensorrt
@pytest.mark.parametrize("name", ["fp32", "fp16", "int8", "fp16_embedded"])
def test_engine_check_against_torch(work, engines, name, tmp_path):
    """runtime.infer --check runs the PyTorch model beside the engine and holds it to the precision's bound
    (fp32 max|d| <= 1e-3, fp16 >= 45 dB, int8 >= 35 dB against PyTorch fp32)."""
    rep = tmp_path / "r.json"
    env = {}
    if name == "fp16_embedded":  # the library on disk must not be needed: hide the build folder's copy
        env["SFADACOF_PLUGIN_DIR"] = str(tmp_path / "no-plugin-here")
    r = _run("-m", "runtime.infer", str(work["pairs"]), "-o", str(tmp_path / "o"), "--backend", "trt",
             "--engine", str(engines[name]), "--checkpoint", str(work["ckpt"]), "--check", "--report", str(rep),
             env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(rep.read_text())
    assert report["check"]["passed"] and report["summary"]["pairs"] == 2
    assert report["backend"]["precision"] == name.split("_")[0]
    meta = json.loads(Path(str(engines[name]) + ".json").read_text())
    assert meta["strongly_typed"] and meta["profile"]["opt"] == [1, 3, 131, 203]
    assert meta["version_compatible"] == (name == "fp16_embedded") == meta["plugin_serialized"]
    print(name, report["check"])


@pytest.mark.tensorrt
def test_pipelined_outputs_equal_single_calls(work, engines):
    from runtime.backends.tensorrt_backend import TensorRTBackend

    f0, f2 = (np.ascontiguousarray(crop(f).transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
              for f in (bikes_frames()[0], bikes_frames()[2]))
    with TensorRTBackend(engines["fp32"]) as b:
        single = b.infer(f0, f2)
        outs = list(b.infer_many([(f0, f2), (f2, f0), (f0, f2)]))
    np.testing.assert_array_equal(outs[0], single)
    np.testing.assert_array_equal(outs[2], single)
    assert not np.array_equal(outs[1], single)


@pytest.mark.tensorrt
def test_engine_built_on_demand_then_reused(work, tmp_path):
    """--backend trt without --engine: the first run builds and caches, the second finds the engine at once."""
    env = {"SFADACOF_CACHE": str(tmp_path / "cache")}
    argv = ["-m", "runtime.infer", str(work["pairs"]), "-o", str(tmp_path / "o"), "--backend", "trt",
            "--precision", "fp16", "--checkpoint", str(work["ckpt"]), "--check"]
    first = _run(*argv, env=env)
    assert first.returncode == 0, first.stderr
    assert "building one" in first.stderr and "engine built in" in first.stderr
    t0 = time.perf_counter()
    second = _run(*argv, env=env)
    assert second.returncode == 0 and "building" not in second.stderr, second.stderr
    print(f"second run {time.perf_counter() - t0:.1f} s")
    assert len(list((tmp_path / "cache" / "engines").glob("*.engine"))) == 1


@pytest.mark.tensorrt
def test_engine_refused_on_mismatch(engines, tmp_path):
    from runtime.backends.tensorrt_backend import TensorRTBackend
    from sfadacof.errors import UserError

    eng = tmp_path / "e.engine"
    eng.write_bytes(engines["fp32"].read_bytes())
    meta = json.loads(Path(str(engines["fp32"]) + ".json").read_text())
    meta["compute_capability"] = "1.0"
    Path(str(eng) + ".json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="compute capability 1.0"):
        TensorRTBackend(eng)
    f = np.ascontiguousarray(crop(bikes_frames()[0], 64, 64).transpose(2, 0, 1)[None], dtype=np.float32) / 255
    with TensorRTBackend(eng, check_sidecar=False) as b:  # the override still runs it
        assert b.infer(f, f).shape == (1, 3, 64, 64)
    with TensorRTBackend(engines["fp32"]) as b, pytest.raises(UserError, match="outside the engine's profile"):
        big = np.zeros((1, 3, 300, 300), np.float32)
        b.infer(big, big)
