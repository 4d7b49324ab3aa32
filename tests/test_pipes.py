"""runtime.infer - -o -: a y4m stream from stdin to stdout, the middle of
`ffmpeg -i in.mkv -f yuv4mpegpipe - | python -m runtime.infer - -o - --factor 2 | ffmpeg -i - out.mkv`, with PyAV
playing both ffmpegs (and the ffmpeg binary too where one is installed). Frames checked exactly against the model
called directly and PyAV's own RGB -> 4:2:0 conversion; messages only on stderr; other y4m formats refused in one
line."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.helpers import carphone, crop, seeded_checkpoint, seeded_model, write_video

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 48


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return seeded_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pth")


def infer(stdin: bytes, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "runtime.infer", *args], cwd=REPO, input=stdin,
                          capture_output=True, timeout=600, env=env)


def to_y4m(src: Path) -> bytes:
    """What `ffmpeg -i src -f yuv4mpegpipe -` writes, done by PyAV."""
    buf = io.BytesIO()
    with av.open(str(src)) as inp, av.open(buf, "w", format="yuv4mpegpipe") as out:
        vin = inp.streams.video[0]
        s = out.add_stream("wrapped_avframe", rate=vin.average_rate)
        s.width, s.height, s.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        for i, f in enumerate(inp.decode(video=0)):
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode())
    return buf.getvalue()


def yuv420(rgb8: np.ndarray) -> np.ndarray:
    """PyAV's RGB -> yuv420p (swscale, BT.601 limited range): the planes a y4m frame holds."""
    return av.VideoFrame.from_ndarray(rgb8, format="rgb24").reformat(format="yuv420p").to_ndarray()


@pytest.mark.slow  # a real process on real pipes: the stream on stdout, the messages on stderr
def test_y4m_pipe_through_ffmpeg_style_stages(tmp_path, ckpt):
    frames = [crop(f, w=W, h=H, x=40, y=40) for f in carphone(3)]
    src = write_video(tmp_path / "in.mp4", frames, rate=30, time_base=Fraction(1, 30))
    stream_in = to_y4m(src)
    r = infer(stream_in, "-", "-o", "-", "--factor", "2", "--backend", "torch", "--checkpoint", str(ckpt))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.startswith(b"YUV4MPEG2 W64 H48 F60:1 ")  # the doubled rate in the header
    err = r.stderr.decode()
    assert "3 frames @ 30 fps -> 6 frames @ 60 fps -> -" in err  # the summary on stderr, not in the stream

    with av.open(io.BytesIO(stream_in), format="yuv4mpegpipe") as c:  # the frames the command decoded
        dec = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(io.BytesIO(r.stdout), format="yuv4mpegpipe") as c:
        got = [f.to_ndarray() for f in c.decode(video=0)]  # yuv420p planes as written
    assert len(got) == 6
    model = seeded_model()
    t = [torch.from_numpy(d.astype(np.float32) / 255).permute(2, 0, 1)[None] for d in dec]
    for k in range(3):
        np.testing.assert_array_equal(got[2 * k], yuv420(dec[k]))
    for k in range(2):
        with torch.no_grad():
            m = model(t[k], t[k + 1]).clamp(0, 1)
        ref = torch.round(m * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(got[2 * k + 1], yuv420(ref))
    np.testing.assert_array_equal(got[5], yuv420(dec[2]))  # the last frame held

    # `ffmpeg -i - out.mkv`: the stream encodes to a video that decodes to 6 frames at 60 fps
    out = tmp_path / "out.mkv"
    with av.open(io.BytesIO(r.stdout), format="yuv4mpegpipe") as inp, av.open(str(out), "w") as o:
        s = o.add_stream("libx264", rate=inp.streams.video[0].average_rate)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for f in inp.decode(video=0):
            o.mux(s.encode(f))
        o.mux(s.encode())
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == 60 and sum(1 for _ in c.decode(video=0)) == 6

    if shutil.which("ffmpeg"):  # the literal shell pipeline, where the binary exists (CI does not install it)
        cmd = (f"ffmpeg -v error -i {src} -f yuv4mpegpipe - | {sys.executable} -m runtime.infer - -o - --factor 2 "
               f"--backend torch --checkpoint {ckpt} | ffmpeg -v error -i - {tmp_path / 'shell.mkv'}")
        p = subprocess.run(cmd, shell=True, cwd=REPO, capture_output=True, timeout=600)
        assert p.returncode == 0, p.stderr.decode()
        with av.open(str(tmp_path / "shell.mkv")) as c:
            assert sum(1 for _ in c.decode(video=0)) == 6


def infer_in_process(stdin: bytes, monkeypatch, capfdbinary, *args: str) -> tuple[int, bytes, str]:
    """runtime.infer's main in this process with `stdin` as its standard input: (exit status, what reached file
    descriptor 1, stderr). capfdbinary captures at the descriptor level, where the y4m writer works (it points
    descriptor 1 at stderr while it writes the stream: runtime.video.stdout_for_stream)."""
    from runtime.infer import main

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capfdbinary.readouterr()
    return e.value.code, out.out, out.err.decode()


@pytest.mark.parametrize("stream, message", [
    (b"YUV4MPEG2 W64 H64 F25:1 Ip A1:1 C420p10\nFRAME\n" + bytes(64 * 64 * 3),
     "error: <stdin>: y4m pixel format yuv420p10le; this reader takes 8-bit 4:2:0 (C420jpeg/C420mpeg2/C420), "
     "4:2:2, 4:4:4 or mono (convert with ffmpeg ... -pix_fmt yuv420p -f yuv4mpegpipe -)"),
    (b"RIFF this is not a y4m stream", "error: <stdin>: not a y4m (yuv4mpegpipe) stream ("),
])
def test_other_streams_refused_in_one_line(ckpt, stream, message, monkeypatch, capfdbinary):
    code, out, err = infer_in_process(stream, monkeypatch, capfdbinary, "-", "-o", "-", "--backend", "torch",
                                      "--checkpoint", str(ckpt))
    assert code == 2 and out == b"" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(message), err


def test_stdout_stream_needs_a_video_input(tmp_path, ckpt, monkeypatch, capfdbinary):
    (tmp_path / "pairs" / "p").mkdir(parents=True)
    code, out, err = infer_in_process(b"", monkeypatch, capfdbinary, str(tmp_path / "pairs"), "-o", "-",
                                      "--backend", "torch", "--checkpoint", str(ckpt))
    assert code == 2 and out == b""
    assert err.startswith("error: -o -: a y4m stream comes from a video, a frame folder or a y4m ")
