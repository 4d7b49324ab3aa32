"""`python -m calib`: INT8 by calibration on frame pairs, written as an explicit Q/DQ ONNX graph, and its accuracy.

    python -m calib DATA -o MODEL.int8.onnx [--onnx MODEL.onnx | --checkpoint CKPT] [--synthesis onnx|plugin]
                   [--method minmax|entropy|percentile] [--num 32] [--size 448x256] [--fit cover|crop]
                   [--quantize unet] [--per-tensor] [--placement tensorrt|ort-cpu]
                   [--eval EVAL_DATA] [--eval-count 8] [--eval-size WxH] [--no-eval]
                   [--report report.json] [--sensitivity] [--benchmark [--bench-size 448x256]]

DATA: a video, a folder of sequential frames, or a pairs folder (see calib/sources.py). Calibration pairs are
spread across it; unless --eval names another source, triplets held aside from DATA (sharing no frame with a
calibration pair) measure the accuracy: PSNR/SSIM of INT8 and FP32 against the true middle frame, and INT8 against
FP32. Layer groups (--quantize): enc1..enc5, fd1..fd5, dec5..dec2, heads, or enc / fd / dec / unet / all; the
default `unet` (encoder + decoder convolutions) keeps the heads, the feature-differencing convs and the synthesis
in float. The written graph is checked against TensorRT's Q/DQ rules (symmetric int8, zero point 0, per-channel
weight scales on axis 0, float bias); a violation fails the command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command
from runtime.report import write_json
from sfadacof.outputs import check_outputs, output_file
from sfadacof.sizes import parse_size

from .graph import DEFAULT_GROUPS, GROUPS, check_groups_recognised, conv_nodes, inspect_qdq, parse_groups
from .options import METHOD_NAMES, PLACEMENTS
from .sources import add_calibration_arguments, calibration_pairs, eval_items, split_data


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("calib", __doc__)
    add_calibration_arguments(p, "the INT8 Q/DQ ONNX to write", "FP32 ONNX graph to quantize")
    p.add_argument("--synthesis", choices=("plugin", "onnx"), default="plugin",
                   help="with --checkpoint: export form to quantize (default plugin: the custom AdaCoFSynthesis "
                        "node TensorRT maps to its plugin; onnx: standard ops only)")
    p.add_argument("--method", choices=METHOD_NAMES, default="minmax", help="calibration method (default minmax)")
    p.add_argument("--percentile", type=cli_args.percentile, default=99.999, help="with --method percentile (default 99.999)")
    p.add_argument("--fit", choices=("cover", "crop"), default="cover",
                   help="cover: scale to cover --size then centre-crop; crop: centre-crop at native scale")
    p.add_argument("--quantize", default=DEFAULT_GROUPS, help=f"layer groups to quantize (default {DEFAULT_GROUPS})")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per Conv instead of per channel")
    p.add_argument("--placement", choices=PLACEMENTS, default="tensorrt",
                   help="tensorrt (default): Q/DQ on Conv inputs, symmetric int8; ort-cpu: QLinearConv-shaped, "
                        "uint8 activations (ONNX Runtime CPU only, not for TensorRT)")
    p.add_argument("--eval", action="append", default=None, metavar="EVAL_DATA",
                   help="evaluation triplets from here instead of held aside (repeatable; same forms as DATA)")
    p.add_argument("--eval-count", type=cli_args.positive_int, default=8, help="evaluation triplets (default 8)")
    p.add_argument("--eval-size", default=None, help="centre-crop evaluation frames to WxH (default: whole frames)")
    p.add_argument("--no-eval", action="store_true", help="only write the INT8 graph")
    p.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--sensitivity", action="store_true", help="also: cost of quantizing each layer group alone")
    p.add_argument("--benchmark", action="store_true", help="also: ORT CPU seconds per frame, FP32 vs INT8")
    p.add_argument("--bench-size", default="448x256", help="benchmark frame size WxH (default 448x256)")
    p.add_argument("--bench-runs", type=cli_args.positive_int, default=5,
                   help="timed runs of each graph in the speed comparison")
    p.add_argument("--threads", type=cli_args.positive_int, default=None, help="ORT intra-op threads (default: all cores)")
    return p


def export_checkpoint(ckpt: Path | None, form: str, out: Path) -> dict:
    """FP32 ONNX of a checkpoint (default: the shipped weights) through export.to_onnx."""
    from export.to_onnx import export_checkpoint as export

    (info,) = export(ckpt, out, synthesis=form)
    return {"exported_by": "export.to_onnx", **{k: v for k, v in info.as_dict().items() if k not in ("path", "op_counts")}}


def _hw(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) as parsed -> (height, width) as the arrays are indexed."""
    return size[1], size[0]


def run(args: argparse.Namespace) -> dict:
    # here, after parsing: torch and ONNX Runtime load in seconds, --help answers at once
    from sfadacof.data import parse_source_spec

    from .evaluate import (Runner, benchmark, benchmark_estimator, estimator_maps_diff, evaluate,
                           format_sensitivity, format_table, summarise)
    from .quantize import calibrate, quantize

    size = _hw(parse_size(args.size, "--size", multiple=32))  # (height, width): the order of the arrays
    eval_crop = _hw(parse_size(args.eval_size, "--eval-size")) if args.eval_size else None
    bench_size = _hw(parse_size(args.bench_size, "--bench-size", multiple=32))
    groups = parse_groups(args.quantize)
    if args.num < 1:
        raise UserError(f"--num must be >= 1, got {args.num}")
    if args.output.suffix.lower() != ".onnx":
        raise UserError(f"{args.output}: the output must be an .onnx file")
    reads = [parse_source_spec(str(d))[0] for d in [args.data] + (args.eval or [])] + [args.onnx, args.checkpoint]
    check_outputs(reads, [output_file("-o", args.output), output_file("--report", args.report)])
    report: dict = {"command": "python -m calib " + " ".join(sys.argv[1:]), "data": str(args.data)}
    # Data first: a wrong path should fail before a checkpoint is exported.
    n_eval = 0 if args.no_eval or args.eval is not None else args.eval_count
    split = split_data(args.data, args.num, n_eval)
    if split.note:
        print(f"note: {split.note}", file=sys.stderr)
    if not split.calibration:
        raise UserError(f"{args.data}: no calibration pairs found")
    with tempfile.TemporaryDirectory(prefix="calib.") as tmp:
        if args.onnx is not None:
            if not args.onnx.is_file():
                raise UserError(f"{args.onnx}: no such file")
            fp32_path = args.onnx
            report["fp32_model"] = {"path": str(args.onnx)}
        else:
            fp32_path = Path(tmp) / "fp32.onnx"
            t = time.perf_counter()
            info = export_checkpoint(args.checkpoint, args.synthesis, fp32_path)
            report["fp32_model"] = {"checkpoint": str(args.checkpoint or "default"), **info,
                                    "export_s": time.perf_counter() - t}
        try:
            model = onnx.load(str(fp32_path))
        except Exception as e:  # protobuf DecodeError and friends
            raise UserError(f"{fp32_path}: not a readable ONNX model ({str(e).splitlines()[0][:160]})") from None
        check_groups_recognised(model, str(fp32_path))

        pairs = calibration_pairs(split.calibration, size, args.fit)
        t = time.perf_counter()
        ranges = calibrate(model, pairs, args.method, args.percentile)
        calib_s = time.perf_counter() - t
        report["calibration"] = {"method": args.method, "pairs": len(pairs), "size": [size[1], size[0]],
                                 "fit": args.fit, "names": [it.name for it in split.calibration], "seconds": calib_s,
                                 **({"percentile": args.percentile} if args.method == "percentile" else {})}
        per_channel = not args.per_tensor
        meta = {"quantization": f"int8 q/dq ({args.placement}), {args.method} calibration on {len(pairs)} pairs "
                                f"{size[1]}x{size[0]}", "quantized_groups": ",".join(groups),
                "weights": "per-channel" if per_channel else "per-tensor"}
        quantized = quantize(fp32_path, args.output, ranges, groups, per_channel, args.placement, meta)
        q = onnx.load(str(args.output))
        qdq = inspect_qdq(q)
        try:
            onnx.checker.check_model(q, full_check=True)
        except onnx.checker.ValidationError as e:
            raise UserError(f"{args.output}: onnx.checker rejects the quantized graph: "
                            f"{str(e).strip().splitlines()[0][:200]}") from None
        group_counts: dict[str, int] = {}
        for c in conv_nodes(model):
            group_counts[c.group or "unrecognised"] = group_counts.get(c.group or "unrecognised", 0) + 1
        report["quantization"] = {
            "groups": list(groups), "placement": args.placement, "per_channel_weights": per_channel,
            "activations": "int8 symmetric" if args.placement == "tensorrt" else "uint8 asymmetric",
            "convs_quantized": len(quantized), "convs_total": len(conv_nodes(model)), "convs_per_group": group_counts,
            "q_nodes": qdq.q_nodes, "dq_nodes": qdq.dq_nodes, "tensorrt_ok": qdq.ok, "tensorrt_problems": qdq.problems,
            "int8_model": str(args.output)}
        print(f"wrote {args.output}: {len(quantized)} of {len(conv_nodes(model))} Convs quantized "
              f"({','.join(groups) or 'none'}), {qdq.q_nodes} Q / {qdq.dq_nodes} DQ nodes, calibrated on "
              f"{len(pairs)} pairs {size[1]}x{size[0]} ({args.method}, {calib_s:.1f} s)")
        if args.placement == "tensorrt":
            if not qdq.ok:
                raise UserError(f"{args.output}: Q/DQ graph not TensorRT-compatible: {qdq.problems[0]}"
                                + (f" (+{len(qdq.problems) - 1} more)" if len(qdq.problems) > 1 else ""))
            print("TensorRT Q/DQ check: ok (int8, zero point 0, per-tensor activations, weights per channel on "
                  "axis 0, float bias, Q/DQ only on the chosen Convs)")

        items = []
        if not args.no_eval:
            items = ([it for spec in args.eval for it in eval_items(spec, args.eval_count)]
                     if args.eval is not None else split.evaluation)
            items = [it for it in items if it.truth is not None]
            if not items:
                raise UserError(f"{args.eval or args.data}: no triplets with ground truth to evaluate on "
                                "(pass --eval TRIPLETS or --no-eval)")
        if items or args.benchmark:
            fp32_run, int8_run = Runner(fp32_path, args.threads), Runner(args.output, args.threads)
            try:
                if items:
                    fp32_cache: dict = {}
                    rows = evaluate(fp32_run, int8_run, items, eval_crop, fp32_cache)
                    summary = summarise(rows)
                    report["accuracy"] = {"triplets": rows, "summary": summary,
                                          "held_aside": args.eval is None,
                                          "eval_crop": [eval_crop[1], eval_crop[0]] if eval_crop else None}
                    print(format_table(rows, summary))
                    o = summary["overall"]
                    print(f"INT8 loses {o['psnr_loss_db']:.3f} dB PSNR vs ground truth relative to FP32 "
                          f"(mean over {o['triplets']} triplets; worst triplet {o['worst_psnr_loss_db']:.3f} dB); "
                          f"INT8 vs FP32 {o['psnr_int8_vs_fp32']:.2f} dB")
                    maps = estimator_maps_diff(fp32_path, args.output, items, eval_crop, Path(tmp), args.threads)
                    report["accuracy"]["estimator_maps_int8_vs_fp32"] = maps
                    off = [v for k, v in maps.items() if k.startswith(("alpha", "beta"))]
                    if off:
                        print(f"kernel maps, INT8 vs FP32: offsets (alpha/beta) mean |Δ| "
                              f"{sum(v['mean_abs'] for v in off) / len(off):.3g} px, max |Δ| "
                              f"{max(v['max_abs'] for v in off):.3g} px")
                    if args.sensitivity:
                        report["sensitivity"] = sensitivity(fp32_path, fp32_run, items, ranges, groups, per_channel,
                                                            eval_crop, fp32_cache, Path(tmp), args)
                        print(format_sensitivity(report["sensitivity"]))
                if args.benchmark:
                    sp = benchmark(fp32_run, int8_run, bench_size, args.bench_runs)
                    report["speed"] = sp.as_dict()
                    print(f"ORT CPU ({sp.threads} threads) at {bench_size[1]}x{bench_size[0]}: FP32 "
                          f"{sp.fp32_s:.3f} s/frame, INT8 {sp.int8_s:.3f} s/frame; INT8/FP32 time ratio "
                          f"{sp.ratio:.2f} (median of {sp.runs}; fastest runs: {sp.int8_min_s / sp.fp32_min_s:.2f})")
                    est = benchmark_estimator(fp32_path, args.output, bench_size, args.bench_runs, Path(tmp),
                                              args.threads)
                    report["speed"]["kernel_estimator_only"] = est.as_dict()
                    print(f"  kernel estimator alone (the quantized part; the synthesis stays float): FP32 "
                          f"{est.fp32_s:.3f} s, INT8 {est.int8_s:.3f} s; INT8/FP32 time ratio {est.ratio:.2f} "
                          f"(fastest runs: {est.int8_min_s / est.fp32_min_s:.2f})")
            finally:
                fp32_run.close()
                int8_run.close()
    if args.report is not None:
        write_json(args.report, report)
    return report


def sensitivity(fp32_path: Path, fp32_run: Runner, items, ranges, chosen, per_channel, eval_crop, cache, tmp: Path,
                args) -> list[dict]:
    """Each layer group quantized alone (same calibration ranges), plus the chosen set; cost = mean FP32 PSNR vs
    GT minus mean PSNR with only that group in INT8."""
    from .evaluate import Runner, evaluate, summarise
    from .quantize import quantize

    model = onnx.load(str(fp32_path))
    present = [g for g in GROUPS if any(c.group == g for c in conv_nodes(model))]
    rows = []
    for label, gs in [(g, (g,)) for g in present] + [(f"chosen: {args.quantize}", chosen), ("all", tuple(present))]:
        path = tmp / f"sens_{len(rows)}.onnx"
        nodes = quantize(fp32_path, path, ranges, gs, per_channel, args.placement)
        r = Runner(path, args.threads)
        try:
            s = summarise(evaluate(fp32_run, r, items, eval_crop, cache))["overall"]
        finally:
            r.close()
        path.unlink(missing_ok=True)
        rows.append({"group": label, "convs": len(nodes), "psnr": s["psnr_int8"], "cost_db": s["psnr_loss_db"],
                     "psnr_int8_vs_fp32": s["psnr_int8_vs_fp32"]})
    return rows


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    from sfadacof.progress import heartbeat

    with heartbeat("calib"):  # calibration, quantization and evaluation print little for minutes
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
