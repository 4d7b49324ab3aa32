"""The written .mp4 is a function of its frames: encoding the same clip again gives the same bytes (video and the
copied audio), so users who diff outputs see no noise."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np

from runtime.backends.base import Backend
from runtime.video import run_video
from tests.helpers import bikes_frames, crop, write_video


class Blend(Backend):
    """A plain 50/50 blend as the in-between frame: the encoder, not the model, is under test here."""

    name = "blend"

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        return (frame0 + frame2) / 2


def test_same_frames_same_bytes(tmp_path):
    frames = [crop(f, w=320, h=240, x=100, y=10) for f in bikes_frames(count=6, start=40)]  # a size it showed at
    src = write_video(tmp_path / "in.mp4", frames, rate=25, time_base=Fraction(1, 25), audio_seconds=6 / 25)
    digests = set()
    for k in range(4):
        for kwargs in ({"factor": 2}, {"target_fps": 60}):
            dst = tmp_path / f"out{k}_{len(kwargs)}_{'fps' if 'target_fps' in kwargs else 'x2'}.mp4"
            run_video(Blend(), src, dst, **({"factor": 2} | kwargs))
        digests.add((hashlib.sha256((tmp_path / f"out{k}_1_x2.mp4").read_bytes()).hexdigest(),
                     hashlib.sha256((tmp_path / f"out{k}_1_fps.mp4").read_bytes()).hexdigest()))
    assert len(digests) == 1, digests
