"""Frames for calibration and for the held-aside accuracy check.

DATA is one of:
  * a video file (anything PyAV decodes): triplets (t, t+1, t+2) at positions spread evenly across the clip;
  * a folder of sequential frames (more than three images directly inside it, sorted by name): the same;
  * a pairs folder as `runtime.infer` reads it (one subfolder per pair: 2 images = a pair, 3 = a triplet whose
    middle image is the ground truth), through runtime.pairs.discover_pairs.

Held aside: evaluation triplets never share a frame with a calibration pair, so the accuracy figures are not
measured on the data the ranges were fitted to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.pairs import discover_pairs, root_images
from sfadacof import cli_args
from sfadacof.errors import UserError
from sfadacof.images import is_image_file, load_image
from sfadacof.video_decode import count_frames as count_video_frames
from sfadacof.video_decode import decode_rgb

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m"})


def add_calibration_arguments(p, output_help: str, onnx_help: str) -> None:
    """DATA, -o, the model (--onnx or --checkpoint), --num and --size: what every calibration command takes."""
    p.add_argument("data", help="video (PATH[@START:END][*SCALE]), folder of sequential frames, or pairs folder")
    p.add_argument("-o", "--output", type=Path, required=True, help=output_help)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, default=None, help=onnx_help)
    src.add_argument("--checkpoint", type=Path, default=None,
                     help="checkpoint to export first (default: the shipped weights)")
    p.add_argument("--num", type=cli_args.positive_int, default=32, help="calibration pairs (default 32)")
    p.add_argument("--size", default="448x256", help="calibration frame size WxH, multiples of 32 (default 448x256)")


@dataclass
class Item:
    """Two input frames and, for a triplet, the true middle frame: float32 (H, W, 3) RGB in [0, 1]."""

    name: str
    frame0: np.ndarray
    frame2: np.ndarray
    truth: np.ndarray | None = None


@dataclass
class Split:
    calibration: list[Item]
    evaluation: list[Item]
    note: str = ""


def _spread(n_positions: int, count: int) -> list[int]:
    """`count` evenly spaced integers in [0, n_positions) (fewer if there are not that many)."""
    if n_positions <= 0 or count <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n_positions - 1, min(count, n_positions))})


def plan_sequence(n_frames: int, n_calib: int, n_eval: int) -> tuple[list[int], list[int]]:
    """Start positions t of calibration pairs (t, t+2) and evaluation triplets (t, t+1, t+2), sharing no frame.

    Evaluation triplets are spread over the whole sequence first; calibration pairs are then spread over the
    remaining positions whose three frames do not touch an evaluation triplet."""
    n_pos = n_frames - 2
    if n_pos < 1:
        raise ValueError(f"{n_frames} frames: a triplet needs 3")
    eval_t = _spread(n_pos, n_eval)
    used = {t + k for t in eval_t for k in range(3)}
    free = [t for t in range(n_pos) if not used & {t, t + 1, t + 2}]
    calib_t = [free[i] for i in _spread(len(free), n_calib)]
    return calib_t, eval_t


def _frames_from_video(path: Path, wanted: set[int], scale: float = 1.0) -> dict[int, np.ndarray]:
    """Decode only what is needed: frames are kept only at the wanted indices (streamed, not stored)."""
    from sfadacof.data import resize_frames

    out: dict[int, np.ndarray] = {}
    for i, rgb in decode_rgb(path, 0, max(wanted) + 1):
        if i in wanted:
            out[i] = resize_frames(rgb[None], scale)[0].astype(np.float32) / 255.0  # resized as training does
    missing = sorted(wanted - set(out))
    if missing:
        raise UserError(f"{path}: decoded only {len(out)} of the frames planned from its packet count "
                        f"(frame {missing[0]} missing)")
    return out


def _sequence_split(name: str, n_frames: int, get, n_calib: int, n_eval: int, start: int = 0) -> Split:
    """`get(indices)` returns frames by absolute index; the sequence is [start, start + n_frames)."""
    if n_frames < 3:
        raise UserError(f"{name}: {n_frames} frame(s); calibration needs at least 3")
    calib_t, eval_t = plan_sequence(n_frames, n_calib, n_eval)
    calib_t, eval_t = [t + start for t in calib_t], [t + start for t in eval_t]
    frames = get({t + k for t in calib_t for k in (0, 2)} | {t + k for t in eval_t for k in range(3)})
    stem = Path(name).stem
    calib = [Item(f"{stem}@{t}", frames[t], frames[t + 2]) for t in calib_t]
    evals = [Item(f"{stem}@{t}", frames[t], frames[t + 2], frames[t + 1]) for t in eval_t]
    note = "" if calib else f"{name}: too short to hold triplets aside; calibrating on the evaluation frames"
    if not calib:
        calib = [Item(e.name, e.frame0, e.frame2) for e in evals]
    return Split(calib, evals, note)


def split_data(spec: str | Path, n_calib: int, n_eval: int) -> Split:
    """Calibration pairs and held-aside evaluation triplets from DATA (see module doc). A video may be given as
    `PATH@START:END` (a frame span) and/or `PATH*SCALE` (downscaled), as for sfadacof.train."""
    from sfadacof.data import parse_source_spec

    path, start, end, scale = parse_source_spec(str(spec))
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if (start or end is not None or scale != 1.0) and not path.is_file():
        raise UserError(f"{spec}: @START:END and *SCALE apply to video files only")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise UserError(f"{path}: not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder")
        n = count_video_frames(path)
        stop = n if end is None else min(end, n)
        return _sequence_split(str(path), stop - start, lambda want: _frames_from_video(path, want, scale),
                               n_calib, n_eval, start)
    top = root_images(path)
    if len(top) > 3:
        sizes = {}

        def get(want: set[int]) -> dict[int, np.ndarray]:
            out = {}
            for i in sorted(want):
                img = load_image(top[i])
                sizes.setdefault(img.size, top[i])
                if len(sizes) > 1:
                    raise UserError(f"{top[i]}: size {img.size[0]}x{img.size[1]} differs from {top[0].name}")
                out[i] = img.rgb
            return out

        return _sequence_split(str(path), len(top), get, n_calib, n_eval)
    specs = discover_pairs(path)
    triplets = [s for s in specs if s.ground_truth is not None]
    eval_specs = [triplets[i] for i in _spread(len(triplets), n_eval)]
    held = {s.name for s in eval_specs}
    calib_specs = [s for s in specs if s.name not in held]
    note = ""
    if not calib_specs:
        calib_specs = specs
        note = f"{path}: every folder is an evaluation triplet; calibrating on them too (pass --eval for a held-aside set)"
    calib_specs = [calib_specs[i] for i in _spread(len(calib_specs), n_calib)]

    def item(s, with_truth: bool) -> Item:
        f0, f2 = load_image(s.frame0), load_image(s.frame2)
        gt = load_image(s.ground_truth) if with_truth else None
        for other in (f2,) + ((gt,) if gt is not None else ()):
            if other.size != f0.size:
                raise UserError(f"{other.path}: size {other.size[0]}x{other.size[1]} differs from {f0.path.name}")
        return Item(s.name, f0.rgb, f2.rgb, gt.rgb if gt is not None else None)

    return Split([item(s, False) for s in calib_specs], [item(s, True) for s in eval_specs], note)


def eval_items(spec: str | Path, n_eval: int) -> list[Item]:
    """Evaluation triplets only (for --eval DATA): triplets of a pairs folder, or spread over a clip."""
    return split_data(spec, 0, n_eval).evaluation


# ---------------------------------------------------------------------------------------------------------------
# Geometry


def fit(frame: np.ndarray, size: tuple[int, int], mode: str = "cover") -> np.ndarray:
    """Bring a (H, W, 3) float frame to `size` (h, w).

    cover: scale (keeping the aspect ratio) until the frame covers `size`, then centre-crop; what calibration sees
    is the whole scene at a reduced motion scale. crop: centre-crop at native scale (native motion magnitudes),
    scaling up only when the frame is smaller than `size`."""
    h, w = frame.shape[:2]
    th, tw = size
    scale = max(th / h, tw / w) if mode == "cover" else max(1.0, th / h, tw / w)
    if scale != 1.0:
        nh, nw = max(th, math.ceil(h * scale - 1e-6)), max(tw, math.ceil(w * scale - 1e-6))
        chans = [np.asarray(Image.fromarray(frame[:, :, c].astype(np.float32), mode="F").resize(
            (nw, nh), Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)) for c in range(3)]
        frame = np.clip(np.stack(chans, axis=2), 0.0, 1.0)
        h, w = nh, nw
    top, left = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(frame[top:top + th, left:left + tw], dtype=np.float32)


def center_crop(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame
    h, w = frame.shape[:2]
    ch, cw = min(size[0], h), min(size[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(frame[top:top + ch, left:left + cw])


def nchw(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)


def calibration_pairs(items: list[Item], size: tuple[int, int], mode: str) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(nchw(fit(it.frame0, size, mode)), nchw(fit(it.frame2, size, mode))) for it in items]


__all__ = ["Item", "Split", "split_data", "eval_items", "plan_sequence", "fit", "center_crop", "nchw",
           "calibration_pairs", "is_image_file"]
