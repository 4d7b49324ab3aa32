"""`python -m runtime.infer`: interpolate the middle frame of every pair in a folder (or frame-rate up-convert a video).

    python -m runtime.infer PAIRS_DIR -o OUT_DIR [--checkpoint CKPT] [--backend torch|ort|trt] [--report R.json]
    python -m runtime.infer PAIRS_DIR -o OUT_DIR --check            # also compare against the PyTorch model
    python -m runtime.infer input.mp4 -o out.mp4 --factor 2 [--scene-cut 0.3]
    python -m runtime.infer FRAMES_DIR -o out.mp4|OUT_FRAMES_DIR --factor 4 [--fps 25]

PAIRS_DIR holds one folder per pair (at any depth): two images = the two input frames (sorted by name), three = a
triplet whose middle image is the ground truth (Vimeo-90k's im1/im2/im3 works as is). The result for folder NAME is
OUT_DIR/NAME.png, 8-bit RGB, the inputs' size, clip(x, 0, 1) * 255 rounded to nearest.

Quality metrics in the report (PSNR/SSIM against ground truth) are computed on the 8-bit output as written, i.e. what
a user sees, against the ground truth decoded the same way as the inputs (8-bit / 255, 16-bit / 65535, RGB).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_main
from sfadacof.outputs import atomic_write_text, check_outputs, output_file, output_folder

from .backends.base import Backend
from .backends.registry import BACKENDS, BackendOptions, create_backend
from .media import (DecodedImage, PairSpec, check_min_size, discover_pairs, hwc_to_nchw, load_image, nchw_to_hwc,
                    root_images, save_png_rgb8, to_uint8)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"})
METRICS_NOTE = ("psnr/ssim are computed on the written 8-bit output (/255) against the ground truth as decoded "
                "(8-bit /255, 16-bit /65535, alpha dropped, grayscale replicated), data range 1, over all pixels "
                "and the three RGB channels; SSIM: 11x11 Gaussian window, sigma 1.5")


def progress(iterable, total: int | None = None, desc: str = "", unit: str = "pair"):
    """tqdm on a terminal only: a bar in a log file or CI output is noise."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr)


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


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def _finite(x):
    """JSON has no inf/nan: identical images (PSNR inf) become the string 'inf'."""
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def write_json(path: str | Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, default=_json_default) + "\n")


def run_pairs(backend: Backend, pairs: list[PairSpec], out_dir: Path | None, *, checker=None,
              max_pixels: int | None = None) -> dict:
    """Interpolate every pair; returns the report. `checker` (runtime.accuracy.Checker) adds per-pair accuracy.

    out_dir None: write nothing (accuracy runs); the 8-bit frame is still formed for the metrics."""
    inputs = {p.resolve() for s in pairs for p in (s.frame0, s.frame2, s.ground_truth) if p is not None}
    rows = []
    for spec in progress(pairs, total=len(pairs), desc="interpolating"):
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
        row["seconds_total"] = time.perf_counter() - t_start
        if notes:
            row["notes"] = notes
        rows.append(row)
    summary: dict = {"pairs": len(rows), "seconds_mean": float(np.mean([r["seconds"] for r in rows]))}
    with_gt = [r for r in rows if "psnr" in r]
    if with_gt:
        summary["triplets"] = len(with_gt)
        summary["psnr_mean"] = float(np.mean([min(r["psnr"], 100.0) for r in with_gt]))
        summary["ssim_mean"] = float(np.mean([r["ssim"] for r in with_gt]))
    report = {"backend": backend.describe(), "metrics": METRICS_NOTE, "summary": summary, "pairs": rows}
    if checker is not None:
        report["check"] = checker.summary()
    return report


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.ArgumentParser(prog="python -m runtime.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="pairs folder, a folder of sequential frames, or a video file")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output folder (pairs, frames) or video file (.mp4 ...)")
    p.add_argument("--checkpoint", type=Path, default=None, help="PyTorch checkpoint (default: the shipped weights)")
    p.add_argument("--variant", default=None, help="override the variant detected from the checkpoint")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (default): trt where TensorRT, pycuda, a GPU and the plugin are available, else ort; "
                        "ort: ONNX Runtime on the CPU (or CUDA with --device cuda); torch; trt: --engine E, or an "
                        "engine built on demand and cached")
    p.add_argument("--device", type=cli_args.device, default="cpu", help="torch/ort device: cpu or cuda[:N]")
    p.add_argument("--onnx", type=Path, default=None, help="ort: ONNX graph to run (default: export the checkpoint)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="ort: graph precision; trt without --engine: engine precision")
    p.add_argument("--engine", type=Path, default=None, help="trt: serialized TensorRT engine")
    p.add_argument("--plugin", type=Path, default=None, help="trt: plugin library (libsfadacof_plugin.so)")
    p.add_argument("--skip-engine-check", action="store_true",
                   help="trt: run even when the engine's sidecar does not match this machine")
    p.add_argument("--report", type=Path, default=None, help="write a JSON report here")
    p.add_argument("--max-pixels", type=cli_args.positive_int, default=cli_args.DEFAULT_MAX_PIXELS,
                   help="refuse frames with more pixels than this, before decoding (default "
                        f"{cli_args.DEFAULT_MAX_PIXELS}: 3840x2160; memory grows ~1.6 GB per megapixel)")
    g = p.add_argument_group("accuracy check against the PyTorch model (runtime.accuracy)")
    g.add_argument("--check", action="store_true", help="also run the PyTorch model and compare outputs")
    g.add_argument("--max-abs", type=cli_args.finite_float, default=None, help="largest allowed max|backend - torch| (fp32 default 1e-3)")
    g.add_argument("--min-psnr", type=cli_args.finite_float, default=None, help="smallest allowed PSNR vs torch in dB (fp16 default 45)")
    v = p.add_argument_group("video / frame sequences")
    v.add_argument("--factor", type=int, choices=(2, 4, 8), default=2, help="frame-rate multiplier")
    v.add_argument("--scene-cut", type=cli_args.fraction, default=None, metavar="T",
                   help="repeat a frame instead of interpolating when the mean absolute difference of two "
                        "consecutive frames (0..1) exceeds T (e.g. 0.3)")
    v.add_argument("--fps", type=cli_args.positive_float, default=None,
                   help="input frame rate of a frame folder (default 25); for a video, retimes it to this rate")
    v.add_argument("--crf", type=cli_args.crf, default=18, help="x264 quality of the written video (0..51)")
    return p


def _make_checker(args, backend: Backend):
    if not args.check:
        return None
    from .accuracy import Checker, Thresholds

    return Checker(Thresholds.for_precision(backend.describe().get("precision", "fp32"), args.max_abs, args.min_psnr),
                   checkpoint=args.checkpoint, variant=args.variant)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src: Path = args.input
    if not src.exists():
        raise UserError(f"{src}: no such file or folder")
    options = BackendOptions(checkpoint=args.checkpoint, variant=args.variant, device=args.device, onnx=args.onnx,
                             engine=args.engine, plugin=args.plugin, precision=args.precision,
                             skip_engine_check=args.skip_engine_check)
    if src.is_dir() and root_images(src) and any(
            d.is_dir() and not d.name.startswith(".") and root_images(d) for d in src.iterdir()):
        raise UserError(f"{src}: holds both images and pair folders; a pairs folder has only subfolders, "
                        "a frame sequence only images")
    models = (args.checkpoint, args.onnx, args.engine, args.plugin)
    if src.is_file() or (src.is_dir() and root_images(src)):
        if src.is_file() and src.suffix.lower() not in VIDEO_EXTENSIONS:
            raise UserError(f"{src}: not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder")
        from .video import VIDEO_OUTPUT_EXTENSIONS, check_video_output_name, run_video_cli

        check_video_output_name(args.output)
        to_video = args.output.suffix.lower() in VIDEO_OUTPUT_EXTENSIONS
        check_outputs([src, *models], [(output_file if to_video else output_folder)("-o", args.output),
                                       output_file("--report", args.report)])
        return run_video_cli(args, options)
    out_dir_path: Path = args.output
    check_outputs([src, *models], [output_folder("-o", out_dir_path), output_file("--report", args.report)])
    pairs = discover_pairs(src)
    with create_backend(args.backend, options) as backend:
        checker = _make_checker(args, backend)
        try:
            report = run_pairs(backend, pairs, out_dir_path, checker=checker, max_pixels=args.max_pixels)
        finally:
            if checker is not None:
                checker.close()
    if args.report:
        write_json(args.report, report)
    s = report["summary"]
    line = f"{s['pairs']} pair(s) -> {out_dir_path}  ({s['seconds_mean']:.3f} s/pair"
    if "psnr_mean" in s:
        line += f", {s['triplets']} triplet(s): PSNR {s['psnr_mean']:.2f} dB, SSIM {s['ssim_mean']:.4f}"
    print(line + ")")
    if checker is not None:
        print(checker.format_table(report["pairs"]))
        if not report["check"]["passed"]:
            # exit 1 (not 2): the run itself worked and the frames are written; the backend missed its bound
            print(f"accuracy check FAILED: {report['check']['reason']}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
