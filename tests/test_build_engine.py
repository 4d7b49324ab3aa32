"""build_engine without TensorRT: profile parsing/validation, sidecar round trip and refusal reasons, and the one-line
error when TensorRT is missing. The TensorRT build itself is in tests/test_tensorrt.py (skipped without it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import onnx.helper as oh
import pytest

from runtime.engine_meta import (DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT, EngineMeta, Profile, mismatches, parse_shape,
                                 read_sidecar, sidecar_path, write_sidecar)
from sfadacof.errors import UserError



def test_parse_shape():
    assert parse_shape("1x3x1088x1920") == (1, 3, 1088, 1920)
    assert parse_shape(" 2,3,256,256 ") == (2, 3, 256, 256)
    for bad, why in [("1x3x1088", "4 dimensions"), ("1x4x256x256", "3 channels"), ("0x3x256x256", "batch"),
                     ("1x3x16x256", "at least 32"), ("1x3xhx256", "NxCxHxW")]:
        with pytest.raises(UserError, match=why):
            parse_shape(bad, "--min")


def test_profile_defaults_and_widening():
    p = Profile.from_args(None, None, None)
    # 1080p frames as they are (the graph pads inside), in either orientation, at batch 1
    assert (p.min, p.opt, p.max) == (DEFAULT_MIN, DEFAULT_OPT, DEFAULT_MAX) == \
        ((1, 3, 32, 32), (1, 3, 1080, 1920), (1, 3, 1920, 1920))
    assert p.contains((1, 3, 1080, 1920)) is None and p.contains((1, 3, 1920, 1080)) is None
    # a small max alone: min keeps its default, opt is clamped into [min, max]
    p = Profile.from_args(None, None, "1x3x720x1280")
    assert p.max == (1, 3, 720, 1280) and p.opt == (1, 3, 720, 1280) and p.min == (1, 3, 32, 32)
    # a min above the default max pulls opt and max up to it
    p = Profile.from_args("1x3x2160x3840", None, None)
    assert p.opt == (1, 3, 2160, 3840) and p.max == (1, 3, 2160, 3840)
    # an opt outside the defaults widens min/max around it
    p = Profile.from_args(None, "8x3x32x64", None)
    assert p.min == (1, 3, 32, 32) and p.max == (8, 3, 1920, 1920) and p.opt == (8, 3, 32, 64)
    with pytest.raises(UserError, match="min <= opt <= max"):
        Profile.from_args("1x3x512x512", "1x3x256x256", None)


def test_profile_contains():
    p = Profile()
    assert p.contains((1, 3, 540, 960)) is None
    assert "outside the engine's profile" in p.contains((1, 3, 4320, 7680))
    assert "N=2" in p.contains((2, 3, 256, 256))


def _meta(**kw) -> EngineMeta:
    base = dict(tensorrt_version="10.8.0.43", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                precision="fp16", profile=Profile().to_json(), onnx_path="m.onnx", onnx_sha256="a" * 64,
                engine_sha256="e" * 64, plugin_path="build/libsfadacof_plugin.so", plugin_sha256="b" * 64)
    base.update(kw)
    return EngineMeta(**base)


def test_sidecar_roundtrip_and_mismatch_reasons(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    meta = _meta()
    assert write_sidecar(engine, meta) == sidecar_path(engine) == tmp_path / "m.engine.json"
    back = read_sidecar(engine)
    assert back == meta and Profile.from_json(back.profile) == Profile()
    ok = dict(tensorrt_version="10.8.0.43", compute_capability="9.0", engine_sha256="e" * 64, plugin_sha256="b" * 64)
    assert mismatches(back, **ok) == []
    r = mismatches(back, **{**ok, "tensorrt_version": "10.9.0.34"})
    assert r == ["built with TensorRT 10.8.0.43, this machine has 10.9.0.34"]
    r = mismatches(back, **{**ok, "compute_capability": "8.6"})
    assert len(r) == 1 and "compute capability 9.0" in r[0] and "8.6" in r[0]
    assert "sha256 differs" in mismatches(back, **{**ok, "engine_sha256": "f" * 64})[0]
    assert "plugin library differs" in mismatches(back, **{**ok, "plugin_sha256": "c" * 64})[0]
    # a plugin serialized into the engine makes the library on disk irrelevant
    assert mismatches(_meta(plugin_serialized=True, version_compatible=True), **{**ok, "plugin_sha256": "c" * 64}) == []


def test_version_compatible_engines_follow_tensorrts_documented_rule():
    """TensorRT's rule (support matrix 11.4, "Engine Portability"): a version-compatible engine runs on its release
    and later ones of its major; across majors only 10 -> 11 and 8 -> 9 or 10; never on an older runtime; from 8.6."""
    ok = dict(compute_capability="9.0", engine_sha256="e" * 64, plugin_sha256="b" * 64)

    def runs(built: str, here: str) -> bool:
        vc = _meta(tensorrt_version=built, version_compatible=True, plugin_serialized=True)
        r = mismatches(vc, tensorrt_version=here, **ok)
        assert r == [] or (len(r) == 1 and "version-compatible engine built with TensorRT " + built in r[0]
                           and here in r[0]), r
        return r == []

    for built, here in [("10.8.0.43", "10.8.0.43"), ("10.8.0.43", "10.9.0.34"), ("10.8.0.43", "10.16.0.1"),
                        ("10.8.0.43", "11.1.0.5"), ("10.16.1.11", "11.4.0.106"), ("11.0.0.1", "11.1.0.5"),
                        ("8.6.1.6", "8.6.1.6"), ("8.6.1.6", "9.3.0.1"), ("8.6.1.6", "10.16.0.1")]:
        assert runs(built, here), (built, here)
    for built, here in [("10.8.0.43", "10.7.0.23"), ("11.1.0.5", "10.16.0.1"), ("11.4.0.106", "11.1.0.5"),
                        ("10.8.0.43", "12.0.0.1"), ("8.6.1.6", "11.1.0.5"), ("9.3.0.1", "10.16.0.1"),
                        ("8.5.3.1", "8.6.1.6"), ("10.8.0.43", "9.3.0.1")]:
        assert not runs(built, here), (built, here)
    # a plain engine needs the exact release
    assert mismatches(_meta(), tensorrt_version="10.9.0.34", **ok) == [
        "built with TensorRT 10.8.0.43, this machine has 10.9.0.34"]


def test_sidecar_missing_or_corrupt(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(UserError, match="sidecar missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(UserError, match="unreadable engine sidecar"):
        read_sidecar(engine)


def _tiny_onnx(path: Path) -> Path:
    x = [oh.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["n", 3, "h", "w"]) for n in ("frame0", "frame2")]
    y = oh.make_tensor_value_info("frame1", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])
    g = oh.make_graph([oh.make_node("Add", ["frame0", "frame2"], ["frame1"])], "g", x, [y])
    onnx.save(oh.make_model(g), str(path))
    return path


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_one_line(tmp_path, capsys):
    """runtime.build_engine's main in-process (exit status and stderr as the command gives them)."""
    from runtime.build_engine import main

    model = _tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as e:
        main([str(model), "--fp16"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: TensorRT Python package not installed (pip install tensorrt-cu13 (or the sfadacof[gpu] extra) on a "
        "machine with an NVIDIA GPU)"]
    assert not list(tmp_path.glob("*.engine*"))


def test_build_engine_argument_errors(tmp_path, capsys):
    from runtime.build_engine import main

    for argv, expect in [([str(tmp_path / "none.onnx"), "--fp16"], "none.onnx: ONNX model not found"),
                         ([str(_tiny_onnx(tmp_path / "m.onnx")), "--min", "1x3x512x512", "--opt", "1x3x256x256"],
                          "min <= opt <= max")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and expect in err[0]
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m.onnx"), "--fp16", "--int8"])  # argparse: mutually exclusive
