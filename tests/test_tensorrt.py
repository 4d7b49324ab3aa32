"""TensorRT engines and the pycuda backend against PyTorch on real frames (need TensorRT + pycuda + a GPU + the plugin
library; skipped with the reason otherwise), plus the one-line refusal on machines without them."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests._runtime_fixtures import bikes_frames, crop, seeded_model, single_torch_thread  # noqa: F401 (autouse)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_trt_backend_without_tensorrt_one_line(tmp_path, capsys):
    from runtime.infer import main

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    from PIL import Image

    (tmp_path / "pairs" / "p").mkdir(parents=True)
    for i, f in enumerate(bikes_frames()[:2]):
        Image.fromarray(crop(f, w=64, h=64)).save(tmp_path / "pairs" / "p" / f"{i}.png")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "pairs"), "-o", str(tmp_path / "o"), "--backend", "trt", "--engine", str(engine)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "TensorRT Python package not installed" in err[0]
    assert not (tmp_path / "o").exists()


def _frames_nchw(w=203, h=131):
    f0, _, f2 = (crop(f, w=w, h=h) for f in bikes_frames())
    return [np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255) for a in (f0, f2)]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """fp32 and fp16 engines of a seeded model (graph: torch-exported estimator + the AdaCoFSynthesis node)."""
    from runtime.backends.tensorrt_backend import default_plugin_library
    from runtime.build_engine import build
    from tests.test_build_engine_fp16 import export_with_synthesis

    plugin = default_plugin_library()
    if plugin is None:
        pytest.skip("plugin library not built (python -m plugins.build)")
    d = tmp_path_factory.mktemp("trt")
    model = seeded_model()
    onnx_path = d / "m.onnx"
    import onnx

    onnx.save(export_with_synthesis(model, onnx_path), str(onnx_path))
    out = {}
    for prec in ("fp32", "fp16"):
        args = Namespace(onnx=onnx_path, fp16=prec == "fp16", fp32=prec == "fp32", int8=False, output=d / f"{prec}.engine",
                         plugin=plugin, serialize_plugin=False, min="1x3x64x64", opt="1x3x160x224", max="2x3x320x320",
                         timing_cache=d / "timing.cache", workspace=1024, strongly_typed=False, verbose=False)
        out[prec] = build(args)
    return model, out, plugin


@pytest.mark.tensorrt
def test_engine_matches_torch(engines):
    from runtime.accuracy import Thresholds, compare, violations
    from runtime.backends.tensorrt_backend import TensorRTBackend

    model, paths, _ = engines
    f0, f2 = _frames_nchw()
    with torch.no_grad():
        ref = model(torch.from_numpy(f0), torch.from_numpy(f2)).numpy()
    with TensorRTBackend(paths["fp32"]) as b:
        s32 = compare(b.infer(f0, f2), ref)
        outs = list(b.infer_many([(f0, f2), (f2, f0), (f0, f2)]))  # pipelined path: same numbers, in order
        np.testing.assert_array_equal(outs[0], outs[2])
        np.testing.assert_allclose(outs[0], b.infer(f0, f2), atol=0, rtol=0)
    with TensorRTBackend(paths["fp16"]) as b:
        s16 = compare(b.infer(f0, f2), ref)
    print(f"TRT fp32 vs torch: {s32}; fp16: {s16}")
    assert violations(s32, Thresholds.for_precision("fp32")) == []
    assert violations(s16, Thresholds.for_precision("fp16")) == []
    meta = json.loads(Path(str(paths["fp16"]) + ".json").read_text())
    assert meta["precision"] == "fp16" and meta["profile"]["opt"] == [1, 3, 160, 224]


@pytest.mark.tensorrt
def test_engine_refused_on_mismatch(engines, tmp_path):
    from runtime.backends.tensorrt_backend import TensorRTBackend
    from sfadacof.errors import UserError

    _, paths, _ = engines
    eng = tmp_path / "e.engine"
    eng.write_bytes(Path(paths["fp32"]).read_bytes())
    meta = json.loads(Path(str(paths["fp32"]) + ".json").read_text())
    meta["compute_capability"] = "1.0"
    Path(str(eng) + ".json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="compute capability 1.0"):
        TensorRTBackend(eng)
    with TensorRTBackend(eng, check_sidecar=False) as b:  # the override still runs it
        f0, f2 = _frames_nchw(64, 64)
        assert b.infer(f0, f2).shape == (1, 3, 64, 64)
    with TensorRTBackend(paths["fp32"]) as b, pytest.raises(UserError, match="outside the engine's profile"):
        b.infer(*_frames_nchw(32, 32))
