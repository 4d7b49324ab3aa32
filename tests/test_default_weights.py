"""The shipped default checkpoint interpolates every held-out clip of the split better than averaging the two frames.

The clips are the `validation` and `test` segments of sfadacof/weights/split.json (read through sfadacof.split), at
the split's gaps (1 and 2), whole frames, predictions rounded to 8 bits. Independent of sfadacof.data and sfadacof.evaluate: frames are decoded here
with PyAV, the average baseline and PSNR are plain numpy.

The shipped file predates the split (its README: trained on CPU on bikes 0-209 and bigbuckbunny 0-109), so on the
bikes shots these are regression bounds, not held-out figures; carphone_pristine it never saw. A checkpoint
trained by sfadacof.gpu_train never reads the test shots.
"""

from __future__ import annotations

import functools

import av
import numpy as np
import pytest
import torch

from sfadacof.checkpoint import load_checkpoint
from sfadacof.split import default_footage, load_split
from tests.helpers import np_psnr

SPLIT = load_split()
FOOTAGE = default_footage()
HELD_OUT = SPLIT.validation.segments + SPLIT.test.segments
PER_GAP = {"bikes.mp4": 1, "carphone_pristine.mp4": 2}  # evenly spaced triplets per gap: 640x272 frames are slow
# Mean gain over averaging per held-out clip, measured for the shipped file on these triplets (gaps 1 and 2):
#   bikes[30:76] +1.80 dB, bikes[137:187] +0.04 dB, bikes[187:242] +2.14 dB, carphone_pristine[0:120] +0.96 dB.
# On bikes[137:187] (a slow street scene behind a railing) the shipped file is no better than averaging: issue 18's
# point. Each bound keeps a margin for float differences across CPUs and torch builds and still fails if the
# default regresses towards plain averaging or is replaced by an untrained model (far below 0).
MIN_GAIN_DB = {"bikes[30:76]": 1.0, "bikes[137:187]": -0.1, "bikes[187:242]": 1.2, "carphone_pristine[0:120]": 0.5}


@functools.lru_cache(maxsize=4)
def frames(clip: str, start: int, end: int) -> np.ndarray:
    out = []
    with av.open(str(FOOTAGE / clip)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= end:
                break
            if i >= start:
                out.append(frame.to_ndarray(format="rgb24"))
    return np.stack(out)


def triplet_starts(seg, gap: int) -> list[int]:
    n = PER_GAP[seg.clip]
    return [int(t) for t in np.linspace(seg.start, seg.end - 1 - 2 * gap, n + 2)[1:-1].round()]


def to_input(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255


@functools.lru_cache(maxsize=1)
def model():
    return load_checkpoint().model.eval()


def test_the_clips_are_the_splits_held_out_ones():
    assert sorted(MIN_GAIN_DB) == sorted(s.name for s in HELD_OUT)
    assert SPLIT.validation.gaps == SPLIT.test.gaps == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("seg", HELD_OUT, ids=lambda s: s.name)
def test_default_beats_frame_averaging_on_every_held_out_clip(seg):
    f = frames(seg.clip, seg.start, seg.end)
    gains, model_psnr, avg_psnr = [], [], []
    with torch.no_grad():
        for gap in (1, 2):
            for t in triplet_starts(seg, gap):
                f0, f1, f2 = (f[t + k * gap - seg.start] for k in range(3))
                out = model()(to_input(f0), to_input(f2))[0].clamp(0, 1)
                pred = np.rint(out.permute(1, 2, 0).numpy() * 255)  # 8-bit, as written to a PNG (half to even)
                avg = np.floor((f0.astype(np.float64) + f2) / 2 + 0.5)
                model_psnr.append(np_psnr(pred, f1))
                avg_psnr.append(np_psnr(avg, f1))
                gains.append(model_psnr[-1] - avg_psnr[-1])
    msg = (f"{seg.name}: model {np.round(model_psnr, 2)} dB vs average {np.round(avg_psnr, 2)} dB, "
           f"mean gain {np.mean(gains):+.2f} dB")
    print(msg)
    # Real motion: averaging is far from the true frame, so the comparison means something.
    assert np.mean(avg_psnr) < 40.0, msg
    assert np.mean(gains) >= MIN_GAIN_DB[seg.name], msg
