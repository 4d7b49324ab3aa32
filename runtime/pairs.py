"""The pair loop every pairs-folder command runs (runtime.infer, runtime.accuracy): load, interpolate, write, score.

    run_pairs(backend, pairs, out_dir, checker=None, max_pixels=None) -> report dict
    load_pair(spec, max_pixels) -> (frame0, frame2, ground truth or None), sizes checked
    quality(out8, gt) -> {"psnr", "ssim"} of the 8-bit output against the ground truth (see report.METRICS_NOTE)
    discover_pairs(root) -> [PairSpec]; root_images(folder) -> the images directly in a folder (a frame sequence)

A checker (runtime.accuracy.Checker, or anything with check(x0, x2, raw, out8) -> dict and summary() -> dict)
adds per-pair accuracy; this module does not import accuracy, so accuracy can import it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from sfadacof.errors import UserError
from sfadacof.progress import Progress
from sfadacof.images import (DecodedImage, check_min_size, hwc_to_nchw, is_image_file, load_image, nchw_to_hwc,
                             save_png_rgb8, to_uint8)

from .backends.base import Backend
from .report import METRICS_NOTE


@dataclass
class PairSpec:
    """One unit of work from a pairs folder: two input frames and optionally the true middle frame."""

    name: str  # folder path relative to the pairs root, '/'-separated; the output is OUT_DIR/<name>.png
    frame0: Path
    frame2: Path
    ground_truth: Path | None = None


def _image_files(folder: Path) -> list[Path]:
    try:
        return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
    except OSError as e:
        raise UserError(f"{folder}: cannot list folder ({e.strerror or e})") from None


def discover_pairs(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[PairSpec]:
    """Every folder under `root` (at any depth, so Vimeo-90k's sequences/00001/0001 works) that holds images.

    Two images = frame0, frame2 (sorted by name); three = frame0, ground truth, frame2. Any other count is an
    error naming the folder: guessing which files were meant would silently interpolate the wrong frames.
    `exclude` (the output folder, when it lies inside root) is skipped: its NAME.png results are not a pair.
    """
    root = Path(root)
    skip = Path(exclude).resolve() if exclude is not None else None
    if not root.is_dir():
        raise UserError(f"{root}: not a folder")
    pairs: list[PairSpec] = []
    for folder, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        if skip is not None and here.resolve() == skip:
            dirs[:] = []
            continue
        if here == root:
            continue  # images directly in root make it a frame sequence, handled by the caller
        images = _image_files(here)
        if not images:
            continue
        name = here.relative_to(root).as_posix()
        if len(images) == 2:
            pairs.append(PairSpec(name, images[0], images[1]))
        elif len(images) == 3:
            pairs.append(PairSpec(name, images[0], images[2], images[1]))
        else:
            raise UserError(f"{here}: holds {len(images)} images; a pair folder needs 2 (two frames) "
                            "or 3 (frame, ground truth, frame)")
    if not pairs:
        raise UserError(f"{root}: no pair folders found (expected one subfolder per pair with 2 or 3 images)")
    return pairs


def root_images(root: str | os.PathLike) -> list[Path]:
    """Images directly inside `root` (a folder of sequential frames), sorted by name."""
    return _image_files(Path(root))


class PairChecker(Protocol):
    def check(self, x0: np.ndarray, x2: np.ndarray, out: np.ndarray, out8: np.ndarray | None = None) -> dict: ...

    def summary(self) -> dict: ...


def load_pair(spec: PairSpec, max_pixels: int | None = None) -> tuple[DecodedImage, DecodedImage, DecodedImage | None]:
    f0, f2 = load_image(spec.frame0, max_pixels), load_image(spec.frame2, max_pixels)
    gt = load_image(spec.ground_truth, max_pixels) if spec.ground_truth is not None else None
    for img in (f0, f2) + ((gt,) if gt is not None else ()):
        check_min_size(img)
    for other in (f2,) + ((gt,) if gt is not None else ()):
        if other.size != f0.size:
            raise UserError(f"{other.path}: size {other.size[0]}x{other.size[1]} differs from "
                            f"{f0.path.name} ({f0.size[0]}x{f0.size[1]})")
    return f0, f2, gt


def quality(out8: np.ndarray, gt: DecodedImage) -> dict[str, float]:
    """PSNR/SSIM of the 8-bit output against the ground truth (see METRICS_NOTE)."""
    import torch

    from sfadacof.metrics import psnr, ssim

    pred = torch.from_numpy(out8.astype(np.float64) / 255.0).permute(2, 0, 1)
    target = torch.from_numpy(gt.rgb.astype(np.float64)).permute(2, 0, 1)
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}


def run_pairs(backend: Backend, pairs: list[PairSpec], out_dir: Path | None, *, checker: PairChecker | None = None,
              max_pixels: int | None = None, visual=None) -> dict:
    """Interpolate every pair; returns the report. `checker` adds per-pair accuracy (see the module doc); `visual`
    (runtime.visual.VisualReport, with a checker whose `last` holds PyTorch's output) gets every checked pair.

    out_dir None: write nothing (accuracy runs); the 8-bit frame is still formed for the metrics."""
    inputs = {p.resolve() for s in pairs for p in (s.frame0, s.frame2, s.ground_truth) if p is not None}
    rows = []
    with Progress(len(pairs), "interpolating", unit="pair") as bar:
        rows = _pair_rows(backend, pairs, out_dir, inputs, bar, checker, max_pixels, visual)
    # seconds: the model's call alone (mean over pairs); seconds_wall: the whole loop, loading and writing included,
    # the figure the progress lines and runtime.infer's summary give as s/pair
    summary: dict = {"pairs": len(rows), "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
                     "seconds_wall": bar.elapsed, "seconds_per_pair": bar.elapsed / max(len(rows), 1)}
    with_gt = [r for r in rows if "psnr" in r]
    if with_gt:
        summary["triplets"] = len(with_gt)
        summary["psnr_mean"] = float(np.mean([min(r["psnr"], 100.0) for r in with_gt]))
        summary["ssim_mean"] = float(np.mean([r["ssim"] for r in with_gt]))
    report = {"backend": backend.describe(), "metrics": METRICS_NOTE, "summary": summary, "pairs": rows}
    if checker is not None:
        report["check"] = checker.summary()
    return report


def _pair_rows(backend: Backend, pairs: list[PairSpec], out_dir: Path | None, inputs: set[Path], bar: Progress,
               checker: PairChecker | None, max_pixels: int | None, visual=None) -> list[dict]:
    rows = []
    for spec in pairs:
        t_start = time.perf_counter()
        f0, f2, gt = load_pair(spec, max_pixels)
        x0, x2 = hwc_to_nchw(f0.rgb), hwc_to_nchw(f2.rgb)
        t0 = time.perf_counter()
        raw = backend.infer(x0, x2)
        seconds = time.perf_counter() - t0
        out8 = to_uint8(nchw_to_hwc(raw))
        out_path = out_dir / f"{spec.name}.png" if out_dir is not None else None
        if out_path is not None:
            if out_path.resolve() in inputs:
                raise UserError(f"{out_path}: output would overwrite an input frame; choose another -o")
            save_png_rgb8(out_path, out8)
        notes = sorted({f"{img.path.name}: {n}" for img in (f0, f2, gt) if img is not None for n in img.notes})
        row = {"name": spec.name, "frame0": spec.frame0, "frame2": spec.frame2, "ground_truth": spec.ground_truth,
               "output": out_path, "width": f0.size[0], "height": f0.size[1], "bit_depth": f0.bit_depth,
               "seconds": seconds}
        if gt is not None:
            row.update(quality(out8, gt))
        if checker is not None:
            row["check"] = checker.check(x0, x2, raw, out8)
            if visual is not None:
                visual.add(spec.name, f0.rgb, f2.rgb, out8, raw, *checker.last, row["check"],
                           ground_truth=None if gt is None else gt.rgb, row=row)
        row["seconds_total"] = time.perf_counter() - t_start
        if notes:
            row["notes"] = notes
        rows.append(row)
        bar.update()
    return rows
