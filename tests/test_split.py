"""sfadacof/weights/split.json: every segment is one whole shot, no held-out frame is trained on, validation and test
are apart. Shots are found here independently: PyAV decode, numpy frame differences (a cut changes the whole frame:
bikes.mp4's five cuts differ by 52-85 on the 0-255 scale, its motion by at most 21)."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from sfadacof.errors import UserError
from sfadacof.split import load_split, default_footage

SPLIT = load_split()
CUT_LEVEL = 30.0


def shot_bounds(path) -> tuple[int, set[int]]:
    """(frame count, {c: a cut lies between frames c and c+1}) from a quarter-resolution decode."""
    prev, cuts, n = None, set(), 0
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            f = frame.to_ndarray(format="rgb24")[::4, ::4].astype(np.int16)
            if prev is not None and np.abs(f - prev).mean() > CUT_LEVEL:
                cuts.add(i - 1)
            prev, n = f, i + 1
    return n, cuts


def test_every_segment_is_whole_shots():
    footage = default_footage()
    info = {clip: shot_bounds(footage / clip) for clip in SPLIT.clips()}
    assert info["bikes.mp4"] == (250, {29, 75, 136, 186, 241})
    for role in ("train", "validation", "test"):
        for seg in SPLIT.role(role).segments:
            n, cuts = info[seg.clip]
            assert seg.start == 0 or seg.start - 1 in cuts, (role, seg.name, "starts inside a shot")
            assert seg.end == n or seg.end - 1 in cuts, (role, seg.name, "ends inside a shot")
            assert not any(seg.start <= c < seg.end - 1 for c in cuts), (role, seg.name, "spans a cut")


def test_no_held_out_frame_is_trained_on_and_validation_is_not_test():
    frames = {r: {(s.clip, t) for s in SPLIT.role(r).segments for t in range(s.start, s.end)}
              for r in ("train", "validation", "test")}
    assert not frames["train"] & frames["validation"]
    assert not frames["train"] & frames["test"]
    assert not frames["validation"] & frames["test"]
    assert frames["validation"] and frames["test"]
    # Every shot with visible motion of bikes.mp4 is used once; carphone is held out whole.
    assert {t for c, t in frames["test"] if c == "carphone_pristine.mp4"} == set(range(120))


def test_specs_are_source_specs():
    specs = SPLIT.specs("validation", "/f")
    assert specs == ["/f/bikes.mp4@30:76"]
    assert "/f/bigbuckbunny.mp4@0:132*0.75" in SPLIT.specs("train", "/f")


def test_a_split_that_trains_on_held_out_frames_is_refused(tmp_path):
    obj = json.loads(SPLIT.path.read_text())
    obj["train"]["segments"].append({"clip": "bikes.mp4", "start": 200, "end": 210})
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps(obj))
    with pytest.raises(UserError, match=r"train segment bikes\[200:210\] overlaps test segment bikes\[187:242\]"):
        load_split(bad)
    bad.write_text("{")
    with pytest.raises(UserError, match="unreadable split file"):
        load_split(bad)


def test_evaluate_scores_the_split_clips():
    from sfadacof.evaluate import run

    report = run(["--split", "test", "--baselines-only", "--max-triplets", "1", "--crop", "32x32", "--gap", "2"])
    assert [c["clip"] for c in report["clips"]] == [s.name for s in SPLIT.test.segments]
    assert all(c["triplets"] == 1 for c in report["clips"])
