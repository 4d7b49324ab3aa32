"""Video / frame-sequence up-conversion: frame counts, exact interpolated content (via lossless PNG output), frame rate,
monotonic timestamps, audio copied packet for packet, scene cuts. Clips are built from real bikes.mp4 frames plus a
generated 440 Hz AAC track."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from runtime.infer import main
from tests.helpers import bikes_frames, crop, save_frames, seeded_model, write_video

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

W, H, FPS = 96, 64, 25


def clip_frames(n: int, cut_at: int | None = None) -> list[np.ndarray]:
    out = []
    for i, f in enumerate(bikes_frames(count=n, start=40)):
        img = crop(f, w=W, h=H)
        out.append(255 - img if cut_at is not None and i >= cut_at else img)  # inverted = a hard cut
    return out


def make_clip(path: Path, n: int, audio: bool = True, cut_at: int | None = None) -> Path:
    return write_video(path, clip_frames(n, cut_at), rate=FPS, time_base=Fraction(1, FPS),
                       audio_seconds=n / FPS if audio else None)


def decode_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(s) if p.dts is not None]


def mid(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Independent reference midpoint as float [0,1] HWC: model called directly, clamped (what is re-fed)."""
    t = [torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() for x in (a, b)]
    with torch.no_grad():
        return model(*t).clamp(0, 1)[0].permute(1, 2, 0).numpy()


def u8(x: np.ndarray) -> np.ndarray:
    return torch.round(torch.from_numpy(x) * 255).to(torch.uint8).numpy()


def test_mp4_double_rate_keeps_audio_and_timestamps(tmp_path, ckpt):
    src = make_clip(tmp_path / "in.mp4", n=6)
    dst, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    assert main([str(src), "-o", str(dst), "--factor", "2", "--checkpoint", str(ckpt), "--report", str(rep), "--backend", "torch"]) == 0
    with av.open(str(dst)) as c:
        v = c.streams.video[0]
        assert v.average_rate == 50 and len(c.streams.audio) == 1
        assert (v.codec_context.width, v.codec_context.height) == (W, H)
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert len(times) == 12
    assert np.all(np.diff(times) > 0)
    np.testing.assert_allclose(times, np.arange(12) / 50, atol=1e-6)
    # the audio is copied, not re-encoded: same packets, same presentation times
    a_in, a_out = audio_packets(src), audio_packets(dst)
    assert [p for p, _ in a_out] == [p for p, _ in a_in]
    np.testing.assert_allclose([t for _, t in a_out], [t for _, t in a_in], atol=1e-4)
    r = json.loads(rep.read_text())
    assert (r["frames_in"], r["frames_out"], r["fps_out"], r["interpolated"]) == (6, 12, 50.0, 5)
    assert not list(tmp_path.glob(".out*"))  # temp file renamed away


def test_mp4_to_frames_exact_midpoints(tmp_path, ckpt):
    """Lossless output: even frames are the decoded inputs, odd ones round(clip(model(f_k, f_k+1)) * 255)."""
    src = make_clip(tmp_path / "in.mp4", n=3, audio=False)
    out = tmp_path / "frames"
    assert main([str(src), "-o", str(out), "--factor", "2", "--checkpoint", str(ckpt), "--backend", "torch"]) == 0
    got = [np.asarray(Image.open(p)) for p in sorted(out.glob("frame_*.png"))]
    dec = decode_rgb(src)
    assert len(got) == 6
    model = seeded_model()
    f = [d.astype(np.float32) / 255 for d in dec]
    for k in range(3):
        np.testing.assert_array_equal(got[2 * k], dec[k])
    np.testing.assert_array_equal(got[1], u8(mid(model, f[0], f[1])))
    np.testing.assert_array_equal(got[3], u8(mid(model, f[1], f[2])))
    np.testing.assert_array_equal(got[5], dec[2])  # last frame held: duration preserved


def test_frame_folder_factor4_recursive(tmp_path, ckpt):
    frames = clip_frames(2)
    src = save_frames(tmp_path / "seq", frames)
    out = tmp_path / "o"
    assert main([str(src), "-o", str(out), "--factor", "4", "--checkpoint", str(ckpt), "--backend", "torch"]) == 0
    got = [np.asarray(Image.open(p)) for p in sorted(out.glob("frame_*.png"))]
    assert len(got) == 8
    model = seeded_model()
    a, b = (x.astype(np.float32) / 255 for x in frames)
    m = mid(model, a, b)
    expected = [frames[0], u8(mid(model, a, m)), u8(m), u8(mid(model, m, b))] + [frames[1]] * 4
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_factor8_frame_count_and_rate(tmp_path, ckpt):
    src = make_clip(tmp_path / "in.mp4", n=2)
    dst = tmp_path / "out.mp4"
    assert main([str(src), "-o", str(dst), "--factor", "8", "--checkpoint", str(ckpt), "--backend", "torch"]) == 0
    with av.open(str(dst)) as c:
        assert c.streams.video[0].average_rate == 200 and c.streams.audio
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert len(times) == 16 and np.all(np.diff(times) > 0)


def test_scene_cut_repeats_frame(tmp_path, ckpt):
    frames = clip_frames(4, cut_at=2)
    src = save_frames(tmp_path / "seq", frames)
    out, rep = tmp_path / "o", tmp_path / "r.json"
    assert main([str(src), "-o", str(out), "--factor", "2", "--scene-cut", "0.3", "--checkpoint", str(ckpt),
                 "--report", str(rep), "--backend", "torch"]) == 0
    got = [np.asarray(Image.open(p)) for p in sorted(out.glob("frame_*.png"))]
    np.testing.assert_array_equal(got[3], frames[1])  # across the cut: the earlier frame repeated
    assert not np.array_equal(got[1], frames[0]) and not np.array_equal(got[1], frames[1])  # elsewhere interpolated
    r = json.loads(rep.read_text())
    assert r["scene_cuts_before_input_frames"] == [2] and r["interpolated"] == 2


def test_video_errors_one_line(tmp_path, ckpt, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(SystemExit) as e:
        main([str(bad), "-o", str(tmp_path / "o.mp4"), "--checkpoint", str(ckpt), "--backend", "torch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and str(bad) in err[0]
    assert not (tmp_path / "o.mp4").exists()
