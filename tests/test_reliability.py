"""Bad and edge inputs across the CLIs (issue: reliability and security): each ends as one line and a non-zero
exit before any work, never a traceback, and no input is ever modified."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from runtime.infer import main as infer_main
from sfadacof.images import load_image
from sfadacof.checkpoint import load_checkpoint
from sfadacof.errors import UserError
from tests.helpers import bikes_frames, crop, png_header_only, save_frames, write_bikes_pair, write_video

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py



def write_pair(folder: Path, size: int = 64) -> Path:
    return write_bikes_pair(folder, size)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(fn, capsys, code: int = 2) -> str:
    with pytest.raises(SystemExit) as e:
        fn()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == code and len(err) == 1, (e.value.code, err)
    return err[0]


class Evil:
    """A pickle payload: unpickling it runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# -- 1. code from checkpoints -----------------------------------------------------------------------------------------

def test_training_resume_refuses_pickle_payload(tmp_path, capsys):
    from sfadacof.train import main as train_main

    frames = save_frames(tmp_path / "frames", [crop(f, w=64, h=64) for f in bikes_frames(count=4, start=40)])
    out, marker = tmp_path / "out", tmp_path / "PWNED"
    out.mkdir()
    torch.save({"state_dict": {}, "optimizer": Evil(marker)}, out / "last.pth")
    line = one_line_error(lambda: train_main(["--data", str(frames), "--out", str(out), "--crop", "32", "--batch", "1",
                                              "--max-steps", "1", "--quiet"]), capsys)
    assert not marker.exists()
    assert "last.pth" in line and "posix.system" in line and "weights_only" not in line


def test_checkpoint_loader_message_does_not_suggest_unsafe_load(tmp_path):
    p, marker = tmp_path / "evil.pth", tmp_path / "PWNED"
    torch.save(Evil(marker), p)
    with pytest.raises(UserError) as e:
        load_checkpoint(p)
    assert not marker.exists()
    msg = str(e.value)
    assert "\n" not in msg and "weights_only" not in msg and "could run code" in msg and "posix.system" in msg


# -- 3. outputs never overwrite inputs --------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["report_is_input_image", "output_is_pair_folder", "output_is_input_folder",
                                  "report_inside_input", "output_is_checkpoint"])
def test_infer_refuses_outputs_on_inputs(tmp_path, ckpt, capsys, case):
    pairs = tmp_path / "pairs"
    write_pair(pairs / "a")
    ck = tmp_path / "ck.pth"
    ck.write_bytes(ckpt.read_bytes())
    before, ck_before = snapshot(pairs), ck.read_bytes()
    out, report = tmp_path / "out", None
    if case == "report_is_input_image":
        report = pairs / "a" / "im1.png"
    elif case == "output_is_pair_folder":
        out = pairs / "a"
    elif case == "output_is_input_folder":
        out = pairs
    elif case == "report_inside_input":
        report = pairs / "r.json"
    elif case == "output_is_checkpoint":
        report = ck
    argv = [str(pairs), "-o", str(out), "--checkpoint", str(ck), "--backend", "torch"]
    argv += ["--report", str(report)] if report else []
    line = one_line_error(lambda: infer_main(argv), capsys)
    assert "input" in line
    assert snapshot(pairs) == before and ck.read_bytes() == ck_before
    assert not (tmp_path / "out").exists()


def test_export_refuses_output_equal_to_checkpoint(tmp_path, ckpt, capsys):
    from export.to_onnx import main as export_main

    ck = tmp_path / "ck.pth"
    ck.write_bytes(ckpt.read_bytes())
    line = one_line_error(lambda: export_main([str(ck), "-o", str(ck)]), capsys)
    assert "is the input" in line and ck.read_bytes() == ckpt.read_bytes()


def test_calib_refuses_output_equal_to_model(tmp_path, capsys):
    from calib.__main__ import main as calib_main

    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes")
    write_pair(tmp_path / "data" / "a")
    line = one_line_error(lambda: calib_main([str(tmp_path / "data"), "-o", str(model), "--onnx", str(model)]),
                          capsys)
    assert "is the input" in line and model.read_bytes() == b"model bytes"


@contextmanager
def read_only(folder: Path):
    """A folder nobody can create files in: chmod for ordinary users; root ignores modes, so for root the folder
    is made immutable (chattr +i). Skips where neither works."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = lambda: folder.chmod(0o755)  # noqa: E731
    else:
        r = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot make a read-only folder as root here: {r.stderr.decode().strip()}")
        undo = lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)  # noqa: E731
    try:
        yield folder
    finally:
        undo()


def test_read_only_outputs_refused_before_work(tmp_path, ckpt, capsys):
    """-o and --report in a read-only folder: one line before the run (no frame written first)."""
    pairs = tmp_path / "pairs"
    write_pair(pairs / "a")
    seq = save_frames(tmp_path / "seq", [crop(f, w=64, h=64) for f in bikes_frames(count=2, start=40)])
    with read_only(tmp_path / "ro") as ro:
        base = [str(pairs), "--checkpoint", str(ckpt), "--backend", "torch"]
        line = one_line_error(lambda: infer_main(base + ["-o", str(ro / "out")]), capsys)
        assert "cannot be written" in line
        line = one_line_error(lambda: infer_main(base + ["-o", str(tmp_path / "out"), "--report",
                                                         str(ro / "r.json")]), capsys)
        assert "--report" in line and not (tmp_path / "out").exists()
        line = one_line_error(lambda: infer_main([str(seq), "-o", str(ro / "v.mp4"), "--checkpoint", str(ckpt),
                                                  "--backend", "torch"]), capsys)
        assert "cannot be written" in line
        from sfadacof.evaluate import main as evaluate_main

        line = one_line_error(lambda: evaluate_main([str(seq), "--baselines-only", "--json", str(ro / "e.json")]),
                              capsys)
        assert "--json" in line
        from calib.__main__ import main as calib_main

        line = one_line_error(lambda: calib_main([str(pairs), "-o", str(ro / "q.onnx")]), capsys)
        assert "cannot be written" in line
        assert list(ro.iterdir()) == []


# -- 4. size and decompression bombs ----------------------------------------------------------------------------------

def test_bomb_png_refused_before_decoding(tmp_path, ckpt, capsys):
    pairs = tmp_path / "pairs"
    (pairs / "a").mkdir(parents=True)
    bomb = png_header_only(pairs / "a" / "im1.png", 15000, 15000)
    png_header_only(pairs / "a" / "im3.png", 15000, 15000)
    line = one_line_error(lambda: infer_main([str(pairs), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt),
                                              "--backend", "torch"]), capsys)
    assert str(bomb) in line and "15000x15000" in line and "--max-pixels" in line


def test_pil_decompression_bomb_is_a_user_error(tmp_path):
    """Past PIL's own limit (2 x MAX_IMAGE_PIXELS) Image.open raises DecompressionBombError: named, one line."""
    p = tmp_path / "big.tif"
    Image.new("1", (15000, 15000)).save(p, compression="group4")
    with pytest.raises(UserError, match="big.tif: refused as a possible decompression bomb") as e:
        load_image(p, max_pixels=10**9)
    assert "\n" not in str(e.value)


def test_max_pixels_flag(tmp_path, ckpt, capsys):
    pairs = tmp_path / "pairs"
    write_pair(pairs / "a")
    line = one_line_error(lambda: infer_main([str(pairs), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt),
                                              "--backend", "torch", "--max-pixels", "4000"]), capsys)
    assert "64x64" in line and "--max-pixels 4096" in line
    assert infer_main([str(pairs), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--backend", "torch",
                       "--max-pixels", "4096"]) == 0


# -- 5. variable frame rate -------------------------------------------------------------------------------------------

VFR_MS = [0, 100, 400, 500, 900]


def make_vfr_clip(path: Path) -> Path:
    frames = [crop(f, w=64, h=64) for f in bikes_frames(count=len(VFR_MS), start=40)]
    return write_video(path, frames, rate=10, time_base=Fraction(1, 1000), pts=VFR_MS,
                       codec_time_base=Fraction(1, 1000), audio_seconds=1.0)


def test_vfr_video_keeps_source_times_and_audio(tmp_path, ckpt):
    src, dst = make_vfr_clip(tmp_path / "vfr.mp4"), tmp_path / "out.mp4"
    assert infer_main([str(src), "-o", str(dst), "--factor", "2", "--checkpoint", str(ckpt), "--backend", "torch"]) == 0
    with av.open(str(dst)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    t = np.array(VFR_MS) / 1000
    # source frames at their own times, in-between frames at the midpoints, the last frame held over the last gap
    expected = [x for a, b in zip(t[:-1], t[1:]) for x in (a, (a + b) / 2)] + [t[-1], t[-1] + (t[-1] - t[-2]) / 2]
    np.testing.assert_allclose(times, expected, atol=1e-3)

    def audio(path):
        with av.open(str(path)) as c:
            return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(c.streams.audio[0]) if p.dts is not None]
    a_in, a_out = audio(src), audio(dst)
    assert [p for p, _ in a_out] == [p for p, _ in a_in]
    np.testing.assert_allclose([x for _, x in a_out], [x for _, x in a_in], atol=1e-4)


# -- 6. tracebacks that are now one line ------------------------------------------------------------------------------

def tiny_onnx(path: Path, *, out_shape=(1, 3, "h", "w"), in_type=TensorProto.FLOAT, meta: dict | None = None) -> Path:
    x0 = helper.make_tensor_value_info("frame0", in_type, [1, 3, "h", "w"])
    x2 = helper.make_tensor_value_info("frame2", in_type, [1, 3, "h", "w"])
    if out_shape == ():
        nodes = [helper.make_node("Add", ["frame0", "frame2"], ["s"]),
                 helper.make_node("ReduceMean", ["s"], ["frame1"], keepdims=0)]
    else:
        nodes = [helper.make_node("Add", ["frame0", "frame2"], ["frame1"])]
    y = helper.make_tensor_value_info("frame1", in_type, list(out_shape))
    m = helper.make_model(helper.make_graph(nodes, "g", [x0, x2], [y]), opset_imports=[helper.make_opsetid("", 13)])
    for k, v in (meta or {}).items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("kind", ["unrelated", "scalar_output", "int64_inputs"])
def test_onnx_io_contract(tmp_path, capsys, kind):
    pairs = tmp_path / "pairs"
    write_pair(pairs / "a")
    if kind == "unrelated":
        model, want = tiny_onnx(tmp_path / "m.onnx"), "no SF-AdaCoF metadata"
    elif kind == "scalar_output":
        model, want = tiny_onnx(tmp_path / "m.onnx", out_shape=(), meta={"variant": "sf_adacof"}), "shape []"
    else:
        # the type as the running backend names it: ONNX Runtime "tensor(int64)", OpenVINO "<Type: 'int64_t'>"
        model, want = tiny_onnx(tmp_path / "m.onnx", in_type=TensorProto.INT64, meta={"variant": "x"}), "int64"
    line = one_line_error(lambda: infer_main([str(pairs), "-o", str(tmp_path / "o"), "--onnx", str(model)]), capsys)
    assert str(model) in line and "not an SF-AdaCoF graph" in line and want in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, want", [
    (["--fps", "nan"], "--fps: must be a finite number"), (["--fps", "-5"], "--fps: must be > 0"),
    (["--fps", "0"], "--fps: must be > 0"), (["--crf", "-5"], "--crf: must be in 0..51"),
    (["--device", "tpu"], "--device: choose cpu, cuda"), (["--scene-cut", "2"], "--scene-cut: must be in (0, 1]"),
    (["--max-pixels", "0"], "--max-pixels: must be >= 1"),
])
def test_infer_numeric_flags(tmp_path, capsys, flags, want):
    line = one_line_error(lambda: infer_main([str(tmp_path), "-o", str(tmp_path / "o.mp4"), *flags]), capsys)
    assert want in line


@pytest.mark.parametrize("module, argv, want", [
    ("calib", ["D", "-o", "q.onnx", "--percentile", "150"], "--percentile: must be in (0, 100]"),
    ("export.to_onnx", ["--dilation", "0"], "--dilation: must be >= 1"),
    ("sfadacof.train", ["--data", "D", "--out", "O", "--dilation", "0"], "--dilation: must be >= 1"),
    ("sfadacof.train", ["--data", "D", "--out", "O", "--lr", "inf"], "--lr: must be a finite number"),
    ("sfadacof.evaluate", ["D", "--gap", "0"], "--gap: must be >= 1"),
    ("runtime.benchmark", ["--iters", "0"], "--iters: must be >= 1"),
])
def test_numeric_flags_other_clis(module, argv, want, tmp_path, monkeypatch, capsys):
    """Refused while parsing, before any data is read (D does not exist): one line, exit 2. Each command's main
    in-process, in an empty folder (what `python -m MODULE` runs; test_cli_help.py runs every command as a process)."""
    import importlib

    monkeypatch.chdir(tmp_path)
    main = importlib.import_module("calib.__main__" if module == "calib" else module).main
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and want in err[0], (e.value.code, err)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_evaluate_oversized_crop_refused(tmp_path, capsys):
    from sfadacof.evaluate import main as evaluate_main

    seq = save_frames(tmp_path / "seq", [crop(f, w=64, h=48) for f in bikes_frames(count=3, start=40)])
    line = one_line_error(lambda: evaluate_main([str(seq), "--baselines-only", "--crop", "64x64"]), capsys)
    assert "--crop 64x64" in line and "64x48" in line  # WIDTHxHEIGHT, as every size


def test_corrupt_mid_stream_video(tmp_path, ckpt, capsys):
    """Bytes destroyed in the middle of an mp4: one line naming the file, and no partial frames in the output."""
    src = tmp_path / "c.mp4"
    rng = np.random.default_rng(0)
    write_video(src, [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(40)])
    b = bytearray(src.read_bytes())
    n = len(b)
    b[n // 3:2 * n // 3] = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()[n // 3:2 * n // 3]
    src.write_bytes(bytes(b))
    out = tmp_path / "o" / "frames"
    line = one_line_error(lambda: infer_main([str(src), "-o", str(out), "--checkpoint", str(ckpt),
                                              "--backend", "torch"]), capsys)
    assert str(src) in line and "corrupt video stream" in line
    assert not out.exists() and list((tmp_path / "o").iterdir()) == []


# -- 7. smaller -------------------------------------------------------------------------------------------------------

def test_exif_orientation_applied(tmp_path):
    raw = crop(bikes_frames(count=1, start=40)[0], w=64, h=48)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    p = tmp_path / "rot.png"
    Image.fromarray(raw).save(p, exif=exif)
    img = load_image(p)
    expected = np.rot90(raw, k=-1).astype(np.float32) / 255
    assert img.size == (48, 64)
    np.testing.assert_array_equal(img.rgb, expected)


@pytest.mark.parametrize("name", ["x.avi", "x.webm"])
def test_unsupported_video_container_refused(tmp_path, ckpt, capsys, name):
    seq = save_frames(tmp_path / "seq", [crop(f, w=64, h=64) for f in bikes_frames(count=2, start=40)])
    line = one_line_error(lambda: infer_main([str(seq), "-o", str(tmp_path / name), "--checkpoint", str(ckpt),
                                              "--backend", "torch"]), capsys)
    assert name in line and "not supported" in line and not (tmp_path / name).exists()


def test_odd_size_video_is_even_yuv420p(tmp_path, ckpt):
    seq = tmp_path / "seq"
    seq.mkdir()
    frames = [crop(f, w=65, h=49) for f in bikes_frames(count=2, start=40)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(seq / f"{i}.png")
    dst, rep = tmp_path / "o.mp4", tmp_path / "r.json"
    assert infer_main([str(seq), "-o", str(dst), "--checkpoint", str(ckpt), "--backend", "torch", "--crf", "0",
                       "--report", str(rep)]) == 0
    with av.open(str(dst)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height, s.codec_context.pix_fmt) == (66, 50, "yuv420p")
        first = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)
    # crf 0 is near-lossless up to the 4:2:0 chroma and RGB<->YUV rounding: the picture is the input, not shifted
    mse = np.mean((first[:49, :65] - frames[0]) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 30
    assert "padded to 66x50" in json.loads(rep.read_text())["note"]


@pytest.mark.slow  # a TorchScript export (~3 s CPU)
def test_corrupt_export_cache_rebuilt(tmp_path, ckpt, ckpt_exports, capsys):
    import shutil

    from export.cache import digest_path, onnx_for_checkpoint
    from runtime.backends.ort_backend import OrtBackend

    root = tmp_path / "cache"
    root.mkdir()
    # the run's own entry for ckpt (conftest.py) and its digest, copied into a cache of this test's: found, not
    # exported again; the TorchScript exporter (the default, the fastest): what is tested is the cache's check and
    # rebuild, not the trace
    for f in (ckpt_exports["default"], digest_path(ckpt_exports["default"])):
        shutil.copy2(f, root / f.name)
    path = onnx_for_checkpoint(ckpt, cache_dir_override=root, exporter="torchscript")
    assert path == root / ckpt_exports["default"].name and "exporting" not in capsys.readouterr().err
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # cut short, as by a full disk
    again = onnx_for_checkpoint(ckpt, cache_dir_override=root, exporter="torchscript")
    assert again == path and "corrupt" in capsys.readouterr().err
    x = crop(bikes_frames(count=1, start=40)[0], w=64, h=64).transpose(2, 0, 1)[None].astype(np.float32) / 255
    with OrtBackend(again, threads=1) as b:
        from sfadacof.checkpoint import load_checkpoint as lc

        with torch.no_grad():
            ref = lc(ckpt).model(torch.from_numpy(x), torch.from_numpy(x)).numpy()
        assert np.abs(b.infer(x, x) - ref).max() < 1e-4
