"""runtime.triton_repo: what it writes is parsed back as Triton's ModelConfig (protobuf text format, tritonclient's
schema) and checked against the model's real inputs and outputs (the ONNX file as ONNX Runtime loads it; an engine's
sidecar); the copied model gives the same frames as the source graph. No Triton server runs here (no registry package
ships one that starts on this machine), so serving itself is not exercised."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
import pytest

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is part of the dev extra")
from google.protobuf import text_format  # noqa: E402

from runtime.engine_meta import EngineMeta, Profile, write_sidecar  # noqa: E402
from runtime.triton_repo import main  # noqa: E402
from sfadacof.checkpoint import load_checkpoint  # noqa: E402
from tests.helpers import bikes_frames, crop, torch_forward  # noqa: E402

ORT_TYPES = {"tensor(float)": pb.TYPE_FP32}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, ckpt, ckpt_exports):
    """The session's seeded checkpoint in both forms, as the default exporter writes them (conftest.py: exported
    once per session), copied here so that no command of this module can touch the session cache."""
    import shutil

    d = tmp_path_factory.mktemp("triton")
    shutil.copyfile(ckpt_exports["default"], d / "m.onnx")
    shutil.copyfile(ckpt_exports["onnx"], d / "m.std.onnx")
    return d


def _config(path) -> "pb.ModelConfig":
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def test_onnx_repository_matches_the_model(graphs, ckpt, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["--onnx", str(graphs / "m.std.onnx"), "-o", str(repo), "--instances", "2"]) == 0
    cfg = _config(repo / "sfadacof" / "config.pbtxt")
    sess = ort.InferenceSession(str(repo / "sfadacof" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    real_in, real_out = sess.get_inputs(), sess.get_outputs()
    assert cfg.name == "sfadacof" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 4
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == \
        [(i.name, ORT_TYPES[i.type], [3, -1, -1]) for i in real_in]
    assert [(o.name, o.data_type) for o in cfg.output] == [(o.name, ORT_TYPES[o.type]) for o in real_out]
    for t in list(real_in) + list(real_out):  # the batch and spatial dims Triton leaves free are free in the graph
        assert isinstance(t.shape[0], str) and t.shape[1] == 3 and all(isinstance(d, str) for d in t.shape[2:])
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(2, pb.ModelInstanceGroup.KIND_CPU)]
    # the served file is the graph given, byte for byte, and it computes the model: on a real batch of two
    # different pairs it gives the PyTorch model's frames within the fp32 bound (runtime.accuracy's 1e-3)
    assert (repo / "sfadacof" / "1" / "model.onnx").read_bytes() == (graphs / "m.std.onnx").read_bytes()
    f0, f2 = (np.stack([crop(f, 96, 64, x=300 + 17 * b).transpose(2, 0, 1) for b in range(2)]).astype(np.float32)
              / 255 for f in (bikes_frames()[0], bikes_frames()[2]))
    served = sess.run(None, {"frame0": f0, "frame2": f2})[0]
    want = torch_forward(load_checkpoint(ckpt).model.eval(), f0, f2)
    assert served.shape == want.shape == (2, 3, 64, 96)
    assert np.abs(served - want).max() <= 1e-3
    assert np.abs(want[0] - want[1]).max() > 0.1  # the two batch items really differ
    readme = (repo / "README.md").read_text()
    assert "tritonserver --model-repository" in readme and f"python {repo.resolve()}/client.py" in readme
    # a CPU model: no --gpus (a machine without a GPU would refuse it), no $PWD (the repository's path is written),
    # the release rule with the graph's own opset
    assert "--gpus" not in readme and "$PWD" not in readme and f"-v {repo.resolve()}:/models" in readme
    assert "opset 18" in readme and "1.14 or later" in readme
    _client_sends_two_real_frames(repo, graphs / "m.std.onnx", tmp_path)
    # a second run replaces the model folder whole, and leaves no staging folder behind
    assert main(["--onnx", str(graphs / "m.std.onnx"), "-o", str(repo), "--kind", "gpu", "--max-batch", "8"]) == 0
    cfg = _config(repo / "sfadacof" / "config.pbtxt")
    assert cfg.max_batch_size == 8 and cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "client.py", "sfadacof"]


def test_engine_repository_follows_the_sidecar(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"a serialized engine")
    profile = Profile.from_args(None, None, "2x3x1088x1920")
    write_sidecar(engine, EngineMeta(tensorrt_version="10.16.0.1", gpu_name="NVIDIA H100", compute_capability="9.0",
                                     precision="fp16", profile=profile.to_json(), onnx_path="m.onnx",
                                     onnx_sha256="a" * 64, inputs=["frame0", "frame2"], outputs=["frame1"]))
    repo = tmp_path / "repo"
    assert main(["--engine", str(engine), "-o", str(repo), "--name", "vfi"]) == 0
    cfg = _config(repo / "vfi" / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 2
    assert [g.kind for g in cfg.instance_group] == [pb.ModelInstanceGroup.KIND_GPU]
    assert (repo / "vfi" / "1" / "model.plan").read_bytes() == b"a serialized engine"
    assert (repo / "vfi" / "1" / "model.plan.json").is_file()
    readme = (repo / "README.md").read_text()
    assert "libsfadacof_trt_register.so" in readme and "--gpus all" in readme and "$PWD" not in readme
    # the release rule with the engine's own TensorRT, and a check of an image that holds it
    assert "TensorRT 10.16.0.1" in readme and "libnvinfer.so.10.16.0.1" in readme
    lib = re.search(r"-v (\S+):/plugins -e LD_PRELOAD=/plugins/(\S+)", readme)
    assert lib is not None and lib.group(2) == "libsfadacof_trt_register.so" and Path(lib.group(1)).is_dir()


@pytest.mark.parametrize("case", ["plugin_form", "batch_above_profile", "output_is_input", "cpu_engine"])
def test_refusals_are_one_line(graphs, tmp_path, capsys, case):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"x")
    write_sidecar(engine, EngineMeta(tensorrt_version="10.16.0.1", gpu_name="g", compute_capability="9.0",
                                     precision="fp32", profile=Profile().to_json(), onnx_path="m.onnx",
                                     onnx_sha256="a" * 64, inputs=["frame0", "frame2"], outputs=["frame1"]))
    argv, expect = {
        "plugin_form": (["--onnx", str(graphs / "m.onnx"), "-o", str(tmp_path / "r")], "--synthesis onnx"),
        "batch_above_profile": (["--engine", str(engine), "-o", str(tmp_path / "r"), "--max-batch", "4"],
                                "batches up to 1"),
        "output_is_input": (["--onnx", str(graphs / "m.std.onnx"), "-o", str(graphs / "m.std.onnx")], "m.std.onnx"),
        "cpu_engine": (["--engine", str(engine), "-o", str(tmp_path / "r"), "--kind", "cpu"], "runs on a GPU"),
    }[case]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "r" / "sfadacof").exists()


def _client_sends_two_real_frames(repo, onnx_path, tmp_path):
    """The generated client.py, run as written, with ONNX Runtime on the served graph standing in for the server:
    its default frames exist and are the repository's real example frames, and the saved PNG is the model's
    middle frame of them (8-bit, rounded)."""
    import runpy
    import types

    client = runpy.run_path(str(repo / "client.py"))
    for path in (client["FRAME0"], client["FRAME2"]):
        with Image.open(path) as im:
            want = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
        assert np.array_equal(client["load"](path)[0], want.transpose(2, 0, 1))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    class Server:  # tritonclient's InferenceServerClient, answered by ORT on the served graph
        def __init__(self, url):
            assert url == "localhost:8001"

        def infer(self, model, inputs):
            assert model == "sfadacof"
            out = sess.run(None, {i.name(): i.data for i in inputs})[0]
            return types.SimpleNamespace(as_numpy=lambda name: out)

    class Input:
        def __init__(self, name, shape, dtype):
            assert dtype == "FP32"
            self._name, self.shape = name, shape

        def name(self):
            return self._name

        def set_data_from_numpy(self, a):
            assert list(a.shape) == self.shape and a.dtype == np.float32
            self.data = a

    grpc = types.ModuleType("tritonclient.grpc")
    grpc.InferenceServerClient, grpc.InferInput = Server, Input
    import sys
    saved = {k: sys.modules.get(k) for k in ("tritonclient", "tritonclient.grpc")}
    sys.modules["tritonclient"], sys.modules["tritonclient.grpc"] = types.ModuleType("tritonclient"), grpc
    try:
        out = tmp_path / "frame1.png"
        client["main"]([client["FRAME0"], client["FRAME2"], str(out)])
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    f0, f2 = (client["load"](p) for p in (client["FRAME0"], client["FRAME2"]))
    ref = sess.run(None, {"frame0": f0, "frame2": f2})[0][0]
    with Image.open(out) as im:
        got = np.asarray(im)
    assert np.array_equal(got, np.round(np.clip(ref, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8))
