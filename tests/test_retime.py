"""--fps: any target frame rate from recursive midpoints. Real footage (bikes.mp4 frames, 25 fps) and synthetic
23.976 / 29.97 fps timestamps: output frame count, timestamps, audio untouched, the content of chosen frames against
the model called directly, and the timing-error figure against an independent numpy computation."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from runtime import Interpolator
from runtime.infer import main
from tests.helpers import bikes_frames, crop, seeded_model, write_video
from tests.test_infer import assert_keys_in_glossary

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

W, H = 96, 64


def frames(n: int) -> list[np.ndarray]:
    return [crop(f, w=W, h=H) for f in bikes_frames(count=n, start=40)]


def expected_schedule(t: np.ndarray, fps: float, depth: int = 3) -> tuple[np.ndarray, float, float]:
    """Independent: output times t_0 + j/fps up to the last frame's end (t_last + its previous interval), and the
    worst / mean |nearest 1/2**depth point of the surrounding interval - T| over the frames before t_last."""
    end = t[-1] + (t[-1] - t[-2])
    times = t[0] + np.arange(int(np.ceil((end - t[0]) * fps)) + 1) / fps
    times = times[times < end - 1e-12]
    errs = []
    for T in times[times < t[-1]]:
        i = np.searchsorted(t, T, side="right") - 1
        d = t[i + 1] - t[i]
        f = (T - t[i]) / d
        errs.append(abs(np.floor(f * 2 ** depth + 0.5) / 2 ** depth - f) * d)
    return times, max(errs), float(np.mean(errs))


def decoded_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as c:
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def test_25_to_60_real_footage_times_audio_and_error(tmp_path, ckpt, capsys):
    src = write_video(tmp_path / "in.mp4", frames(5), rate=25, time_base=Fraction(1, 25), audio_seconds=0.2)
    dst, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    assert main([str(src), "-o", str(dst), "--fps", "60", "--backend", "torch", "--checkpoint", str(ckpt),
                 "--report", str(rep)]) == 0
    times, worst, mean = expected_schedule(np.arange(5) / 25, 60)
    assert len(times) == 12
    np.testing.assert_allclose(decoded_times(dst), times, atol=1e-4)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].average_rate == 60
    a_in, a_out = audio_packets(src), audio_packets(dst)  # audio copied: the same packets at the same times
    assert [p for p, _ in a_out] == [p for p, _ in a_in]
    np.testing.assert_allclose([t for _, t in a_out], [t for _, t in a_in], atol=1e-4)
    r = json.loads(rep.read_text())
    assert_keys_in_glossary(r)  # every key explained in runtime/README.md
    assert r["frames_out"] == 12 and r["fps_out_exact"] == "60" and r["frames_held_at_end"] == 2
    assert r["timing_error_max_ms"] == pytest.approx(1000 * worst, abs=1e-9)  # 1/24 of a 1/25 s interval
    assert r["timing_error_mean_ms"] == pytest.approx(1000 * mean, abs=1e-9)
    assert f"worst timing error {1000 * worst:.2f} ms" in capsys.readouterr().out


def test_chosen_frames_are_the_nearest_recursive_midpoints(tmp_path, ckpt):
    """Lossless output: frame 1 (T = 1/60 s, 5/12 of the first interval) is the 3/8 point, frame 5 (1/12 of the
    third) the 1/8 point, frame 6 (1/2 of the third) the midpoint, frame 0 the first source frame as is."""
    src = write_video(tmp_path / "in.mp4", frames(4), rate=25, time_base=Fraction(1, 25))
    out = tmp_path / "frames"
    assert main([str(src), "-o", str(out), "--fps", "60", "--backend", "torch", "--checkpoint", str(ckpt)]) == 0
    got = [np.asarray(Image.open(p)) for p in sorted(out.glob("frame_*.png"))]
    with av.open(str(src)) as c:
        dec = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == 10  # 4 frames of 1/25 s = 0.16 s at 60 fps
    model = seeded_model()

    def mid(a, b):
        with torch.no_grad():
            return model(a, b).clamp(0, 1)

    def u8(x):
        return torch.round(x * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()

    f = [torch.from_numpy(d.astype(np.float32) / 255).permute(2, 0, 1)[None] for d in dec]
    np.testing.assert_array_equal(got[0], dec[0])
    half0 = mid(f[0], f[1])
    np.testing.assert_array_equal(got[1], u8(mid(mid(f[0], half0), half0)))  # 3/8 = mid(1/4, 1/2)
    half2 = mid(f[2], f[3])
    np.testing.assert_array_equal(got[5], u8(mid(f[2], mid(f[2], half2))))  # 1/8 = mid(0, 1/4)
    np.testing.assert_array_equal(got[6], u8(half2))


@pytest.mark.parametrize("rate, time_base, start", [(Fraction(24000, 1001), Fraction(1, 24000), 2002),
                                                     (Fraction(30000, 1001), Fraction(1, 30000), 0)])
def test_ntsc_rates_to_60_via_the_api(tmp_path, ckpt, rate, time_base, start):
    pts = [start + 1001 * i for i in range(4)]
    src = write_video(tmp_path / "in.mp4", frames(4), rate=rate, time_base=time_base, pts=pts,
                      codec_time_base=time_base)
    t = np.array(decoded_times(src))  # the times the container holds, decoded here
    np.testing.assert_allclose(np.diff(t), 1001 * float(time_base), atol=1e-6)
    with Interpolator(ckpt, backend="torch") as interp:
        r = interp.video(src, tmp_path / "out.mp4", fps=60)
    times, worst, mean = expected_schedule(t, 60)
    got = decoded_times(tmp_path / "out.mp4")
    assert len(got) == len(times) == r["frames_out"]
    np.testing.assert_allclose(got, times, atol=1e-4)  # starts at the source's first time: audio stays in sync
    assert r["timing_error_max_ms"] == pytest.approx(1000 * worst, abs=1e-9)
    assert r["timing_error_mean_ms"] == pytest.approx(1000 * mean, abs=1e-9)


def test_factor_and_fps_together_refused(tmp_path, ckpt, capsys):
    src = write_video(tmp_path / "in.mp4", frames(2), rate=25, time_base=Fraction(1, 25))
    with pytest.raises(SystemExit) as e:
        main([str(src), "-o", str(tmp_path / "o.mp4"), "--fps", "60", "--factor", "2", "--checkpoint", str(ckpt)])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: --factor and --fps: give one (--fps sets the output rate, --factor "
                                       "multiplies the input's)\n")
