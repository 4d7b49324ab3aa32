"""`python -m runtime.infer`: interpolate the middle frame of every pair in a folder (or frame-rate up-convert a video).

    python -m runtime.infer PAIRS_DIR -o OUT_DIR [--checkpoint CKPT] [--report R.json]
                            [--backend auto|torch|ort|openvino|trt] [--precision fp32|fp16|bf16|int8]
    python -m runtime.infer PAIRS_DIR -o OUT_DIR --check            # also compare against the PyTorch model
    python -m runtime.infer PAIRS_DIR|VIDEO -o OUT --check --visual DIR   # ... and draw it: DIR/index.html
    python -m runtime.infer input.mp4 -o out.mp4 --factor 2 [--scene-cut 0.3]
    python -m runtime.infer clip.mp4 -o out.mp4 --fps 60          # any target rate (23.976/25/29.97 -> 60 ...)
    python -m runtime.infer FRAMES_DIR -o out.mp4|OUT_FRAMES_DIR --factor 4 [--input-fps 25]
    ffmpeg -i in.mkv -f yuv4mpegpipe - | python -m runtime.infer - -o - --factor 2 | ffmpeg -i - out.mkv

PAIRS_DIR holds one folder per pair (at any depth): two images = the two input frames (sorted by name), three = a
triplet whose middle image is the ground truth (Vimeo-90k's im1/im2/im3 works as is). The result for folder NAME is
OUT_DIR/NAME.png, 8-bit RGB, the inputs' size, clip(x, 0, 1) * 255 rounded to nearest.

Quality metrics in the report (PSNR/SSIM against ground truth) are computed on the 8-bit output as written, i.e. what
a user sees, against the ground truth decoded the same way as the inputs (8-bit / 255, 16-bit / 65535, RGB).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command
from sfadacof.images import set_memory_budget
from sfadacof.outputs import check_outputs, output_file, output_folder, png_is_ours
from sfadacof.progress import per_unit

from .accuracy import add_threshold_arguments, add_visual_argument, make_checker, open_visual, visual_output
from .api import Interpolator
from .backends.registry import add_backend_arguments, backend_inputs, backend_options
from .pairs import discover_pairs, root_images, run_pairs
from .report import write_json
from .visual import VIDEO_STRIPS

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"})


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("runtime.infer", __doc__)
    p.add_argument("input", type=Path,
                   help="pairs folder, a folder of sequential frames, a video file, or - (a y4m stream on stdin)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output folder (pairs, frames), video file (.mp4 ...), or - (a y4m stream on stdout)")
    add_backend_arguments(p)
    p.add_argument("--report", type=Path, default=None, help="write a JSON report here")
    cli_args.add_size_limits(p)
    g = p.add_argument_group("accuracy check against the PyTorch model (runtime.accuracy)")
    g.add_argument("--check", action="store_true", help="also run the PyTorch model and compare outputs")
    add_threshold_arguments(g)
    add_visual_argument(g)
    v = p.add_argument_group("video / frame sequences")
    v.add_argument("--factor", type=int, choices=(2, 4, 8), default=None,
                   help="frame-rate multiplier (default 2 unless --fps is given)")
    v.add_argument("--fps", type=cli_args.positive_float, default=None,
                   help="target frame rate instead of --factor (e.g. 60 from 23.976, 25 or 29.97): each output frame "
                        "is the nearest recursive midpoint of the source pair around its time (see --max-depth)")
    v.add_argument("--max-depth", type=cli_args.int_range(1, 8), default=3,
                   help="--fps: deepest midpoint level (3: eighths of a source interval, worst timing error 1/16 "
                        "of one)")
    v.add_argument("--input-fps", type=cli_args.positive_float, default=None,
                   help="input frame rate of a frame folder (default 25); for a video, retimes its frames to i / this")
    v.add_argument("--scene-cut", type=cli_args.fraction, default=None, metavar="T",
                   help="repeat a frame instead of interpolating when the mean absolute difference of two "
                        "consecutive frames (0..1) exceeds T (e.g. 0.3)")
    v.add_argument("--crf", type=cli_args.crf, default=18, help="x264 quality of the written video (0..51)")
    return p


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    src: Path = args.input
    set_memory_budget(args.memory_budget)
    stdin, stdout = str(src) == "-", str(args.output) == "-"  # y4m streams (ffmpeg -f yuv4mpegpipe)
    if not stdin and not src.exists():
        raise UserError(f"{src}: no such file or folder")
    options = backend_options(args)
    if src.is_dir() and root_images(src) and any(
            d.is_dir() and not d.name.startswith(".") and root_images(d) for d in src.iterdir()):
        raise UserError(f"{src}: holds both images and pair folders; a pairs folder has only subfolders, "
                        "a frame sequence only images")
    models = backend_inputs(args)
    if args.visual is not None and not args.check:
        raise UserError("--visual draws what --check measures: add --check")
    if stdin or src.is_file() or (src.is_dir() and root_images(src)):
        if src.is_file() and src.suffix.lower() not in VIDEO_EXTENSIONS:
            raise UserError(f"{src}: not a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder")
        from .video import VIDEO_OUTPUT_EXTENSIONS, check_video_output_name, run_video_cli, stdout_for_stream

        check_video_output_name(args.output)
        to_video = args.output.suffix.lower() in VIDEO_OUTPUT_EXTENSIONS
        # a frames folder is renamed into place whole: absent or empty, never mixed with files already there
        check_outputs([None if stdin else src, *models],
                      [None if stdout else output_file("-o", args.output) if to_video else
                       output_folder("-o", args.output, whole=True), output_file("--report", args.report),
                       visual_output(args)])
        if args.fps is not None and args.factor is not None:
            raise UserError("--factor and --fps: give one (--fps sets the output rate, --factor multiplies the input's)")
        with stdout_for_stream() if stdout else nullcontext() as args.y4m_out:
            # --check: every interpolated frame judged against PyTorch; --visual keeps the first and the worst
            with Interpolator.from_options(args.backend, options, video=True) as interp, \
                    open_visual(args, "runtime.infer", unit="frame", keep=VIDEO_STRIPS) as visual:
                checker = make_checker(args, interp) if args.check else None
                try:
                    return run_video_cli(args, interp, checker=checker, visual=visual)
                finally:
                    if checker is not None:
                        checker.close()
    if stdout:
        raise UserError("-o -: a y4m stream comes from a video, a frame folder or a y4m stream on stdin (-), "
                        f"not a pairs folder ({src})")
    out_dir_path: Path = args.output
    pairs = discover_pairs(src)
    # OUT/<pair>.png: may replace only a PNG this project wrote; --report may not be one of them
    check_outputs([src, *models], [output_folder("-o", out_dir_path, [f"{p.name}.png" for p in pairs],
                                                 ours=png_is_ours), output_file("--report", args.report),
                                   visual_output(args)])
    with Interpolator.from_options(args.backend, options) as interp, open_visual(args, "runtime.infer") as visual:
        checker = make_checker(args, interp) if args.check else None
        try:
            report = run_pairs(interp, pairs, out_dir_path, checker=checker, max_pixels=args.max_pixels,
                               visual=visual)
        finally:
            if checker is not None:
                checker.close()
        if visual is not None:
            report["visual"] = visual.summary()
            visual_index = visual.commit(report)
    if args.report:
        write_json(args.report, report)
    s = report["summary"]
    line = (f"{s['pairs']} pair(s) -> {out_dir_path} in {s['seconds_wall']:.1f} s "
            f"({per_unit(s['seconds_wall'], s['pairs'], 'pair')}, the model alone {s['seconds_mean']:.3f} s of it")
    if "psnr_mean" in s:
        line += f", {s['triplets']} triplet(s): PSNR {s['psnr_mean']:.2f} dB, SSIM {s['ssim_mean']:.4f}"
    print(line + ")")
    if checker is not None:
        print(checker.format_table(report["pairs"]))
        if args.visual is not None:
            print(f"visual report: {visual_index}")
        if not report["check"]["passed"]:
            # exit 1 (not 2): the run itself worked and the frames are written; the backend missed its bound
            print(f"accuracy check FAILED: {report['check']['reason']}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
