"""`python -m calib.openvino_int8`: the CPU form of INT8 -- OpenVINO's own post-training quantization (NNCF) of the
standard-op model, run by `--backend openvino`.

    python -m calib.openvino_int8 DATA -o MODEL.int8.xml [--checkpoint CKPT | --onnx MODEL.std.onnx] [--num 32]
                                  [--size 448x256] [--eval-count 4] [--report R.json]
    python -m runtime.infer PAIRS -o OUT --backend openvino --onnx MODEL.int8.xml          # run it
    python -m runtime.accuracy PAIRS --backend openvino --onnx MODEL.int8.xml              # check it

Why not the TensorRT form (`python -m calib`): its symmetric int8 Q/DQ on the Conv inputs only is what TensorRT
wants, but CPU int8 kernels want unsigned activations with a zero point. Measured on the project's 2-core
AVX-512/VNNI machine, 960x507, same weights (OpenVINO 2026.4, with the backend's opt-in Gather synthesis): the
TensorRT-form graph in OpenVINO 1.95 s a frame but 34.7 dB against fp32 (OpenVINO's low-precision pass handles those
Q/DQ pairs differently from ONNX Runtime, which gives 58.4 dB on it, at 3.1 s); `calib --placement ort-cpu` (uint8
asymmetric) 2.02 s and 60.6 dB in OpenVINO, 2.9 s in ONNX Runtime -- against OpenVINO fp32 2.26 s and bf16
1.65 s. Both quantize only the U-Net (72 of 130 convolutions). This command quantizes every convolution except the
offset heads' (114 of 130): with the default synthesis, 1.64 s and 60.8 dB against fp32 2.50 s and bf16 1.86 s
(interleaved in one process): faster than fp32 by 1.5x and than bf16 by ~12%.

What it does: the checkpoint's standard-op export (cached) is read by the openvino backend as the CPU default
reads it; NNCF (`nncf.quantize`, preset MIXED:
asymmetric uint8 activations, symmetric int8 weights per channel, fast bias correction) calibrates on pairs spread
over DATA (calib.sources, as `python -m calib` does), with the offset heads and the synthesis in its ignored scope
(found from the export's named tensors, runtime.backends.openvino_backend.fp32_regions): offsets, coordinates and the
synthesis stay fp32. The model is saved as an OpenVINO IR (.xml + .bin) carrying the export's metadata in its
rt_info, written atomically. Held-aside triplets of DATA (sharing no frame with a calibration pair) then give the
accuracy: PSNR of INT8 against the fp32 model (clipped float outputs) and both against the true middle frame
(8-bit outputs, as runtime.infer scores them), and the time per frame of both at the data's size.

nncf is an optional dependency (`pip install .[int8-cpu]`).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command, require
from sfadacof.images import to_uint8
from sfadacof.outputs import atomic_write_text, check_outputs, output_file
from sfadacof.sizes import parse_size

from .sources import add_calibration_arguments, calibration_pairs, nchw, split_data


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("calib.openvino_int8", __doc__)
    add_calibration_arguments(p, "the INT8 OpenVINO IR to write (.xml; .bin beside)",
                              "standard-op fp32 export to quantize")
    p.add_argument("--eval-count", type=cli_args.nonnegative_int, default=4,
                   help="held-aside triplets for the accuracy report (default 4; 0: none)")
    p.add_argument("--report", type=Path, default=None, help="write the report as JSON here")
    return p


def _import_nncf():
    return require("nncf", "calib.openvino_int8 needs NNCF: pip install nncf (or the sfadacof[int8-cpu] extra)")


def quantize(backend, pairs: list[tuple[np.ndarray, np.ndarray]], ignored: list[str] | None = None):
    """NNCF's post-training quantization of backend.model with the nodes `ignored` (friendly names; default: the
    offset heads and the synthesis) left float; returns (quantized ov.Model, number of ignored nodes)."""
    import logging

    nncf = _import_nncf()
    from runtime.backends.openvino_backend import fp32_regions

    nncf.set_log_level(logging.WARNING)  # NNCF lists every ignored node at INFO: thousands of lines

    model = backend.model
    if ignored is None:
        regions = fp32_regions(model)
        keep = regions["offset_heads"] | regions["synthesis"]
        ignored = [n.get_friendly_name() for n in model.get_ordered_ops() if n.get_instance_id() in keep]
    names = [i.get_any_name() for i in model.inputs]
    data = nncf.Dataset([{names[0]: f0, names[1]: f2} for f0, f2 in pairs])
    q = nncf.quantize(model, data, preset=nncf.QuantizationPreset.MIXED, subset_size=len(pairs),
                      fast_bias_correction=True, ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    return q, len(ignored)


def save_ir(model, output: Path, metadata: dict[str, str]) -> None:
    """The IR with `metadata` in rt_info (runtime.backends.openvino_backend.ir_metadata reads it), written into a
    temporary folder beside `output` and moved in (.bin first, so a visible .xml always has its weights)."""
    import openvino as ov

    from runtime.backends.openvino_backend import IR_METADATA_KEY

    for k, v in metadata.items():
        model.set_rt_info(str(v), [IR_METADATA_KEY, k])
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.stem}.", dir=output.parent) as tmp:
        xml = Path(tmp) / output.name
        ov.save_model(model, str(xml), compress_to_fp16=False)
        shutil.move(str(xml.with_suffix(".bin")), str(output.with_suffix(".bin")))
        shutil.move(str(xml), str(output))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def evaluate(fp32, int8, items) -> list[dict]:
    """Per held-aside triplet: INT8 vs fp32 (clipped float), both vs the true middle frame (8-bit), seconds."""
    rows = []
    for it in items:
        x0, x2 = nchw(it.frame0), nchw(it.frame2)
        outs, secs = {}, {}
        for label, b in (("fp32", fp32), ("int8", int8)):
            b.infer(x0, x2)  # compile for this size first: the time is the steady one
            t = time.perf_counter()
            outs[label] = b.infer(x0, x2)
            secs[label] = time.perf_counter() - t
        gt = it.truth.astype(np.float64) if it.truth.dtype != np.uint8 else it.truth.astype(np.float64) / 255
        q = {k: to_uint8(v[0].transpose(1, 2, 0)).astype(np.float64) / 255 for k, v in outs.items()}
        rows.append({"name": it.name, "size": f"{x0.shape[3]}x{x0.shape[2]}",
                     "psnr_int8_vs_fp32": _psnr(np.clip(outs["int8"], 0, 1), np.clip(outs["fp32"], 0, 1)),
                     "psnr_gt_fp32": _psnr(q["fp32"], gt), "psnr_gt_int8": _psnr(q["int8"], gt),
                     "seconds_fp32": secs["fp32"], "seconds_int8": secs["int8"]})
    return rows


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    from export.cache import onnx_for_checkpoint
    from runtime.backends.openvino_backend import OpenVINOBackend

    if args.output.suffix.lower() != ".xml":
        raise UserError(f"{args.output}: the output must be an OpenVINO IR .xml (its .bin is written beside it)")
    size = parse_size(args.size, "--size", multiple=32)
    check_outputs([args.onnx, args.checkpoint], [output_file("-o", args.output),
                                                 output_file("-o", args.output.with_suffix(".bin")),
                                                 output_file("--report", args.report)])
    _import_nncf()
    split = split_data(args.data, args.num, args.eval_count)
    if split.note:
        print(f"note: {split.note}", file=sys.stderr)
    if not split.calibration:
        raise UserError(f"{args.data}: no calibration pairs found")
    onnx_path = args.onnx or onnx_for_checkpoint(args.checkpoint, synthesis="onnx")
    fp32 = OpenVINOBackend(onnx_path, precision="fp32")
    pairs = calibration_pairs(split.calibration, (size[1], size[0]), "cover")
    t = time.perf_counter()
    from sfadacof.progress import heartbeat

    with heartbeat("NNCF quantization"):  # minutes with no output of its own
        model, n_ignored = quantize(fp32, pairs)
    seconds = time.perf_counter() - t
    import nncf

    gather = fp32.synthesis.startswith("OpenVINO Gather")
    metadata = {**fp32.metadata, **({"synthesis": "openvino-gather"} if gather else {}), "int8": f"nncf {nncf.__version__} post-training "
                f"quantization (preset MIXED), {len(pairs)} pairs {size[0]}x{size[1]} from {args.data}; offset heads "
                "and synthesis fp32"}
    n_fq = sum(1 for n in model.get_ordered_ops() if n.get_type_name() == "FakeQuantize")
    save_ir(model, args.output, metadata)
    fp32.close()
    report = {"command": "python -m calib.openvino_int8 " + " ".join(sys.argv[1:]), "output": str(args.output),
              "onnx": str(onnx_path), "calibration_pairs": len(pairs), "size": list(size),
              "fake_quantize_nodes": n_fq, "ignored_nodes": n_ignored, "quantize_seconds": seconds}
    print(f"wrote {args.output}: {n_fq} FakeQuantize nodes, {n_ignored} nodes kept fp32 (offset heads, synthesis), "
          f"calibrated on {len(pairs)} pairs {size[0]}x{size[1]} ({seconds:.1f} s)")
    if split.evaluation:
        with OpenVINOBackend(onnx_path, precision="fp32") as f, OpenVINOBackend(args.output, precision="fp32") as q:
            rows = evaluate(f, q, split.evaluation)
            report["int8_runtime"] = {"convolutions": _conv_precisions(q, split.evaluation[0])}
        report["evaluation"] = rows
        for r in rows:
            print(f"  {r['name'][-24:]:<24} {r['size']:>9}  int8 vs fp32 {r['psnr_int8_vs_fp32']:6.2f} dB  "
                  f"GT fp32 {r['psnr_gt_fp32']:6.3f}  int8 {r['psnr_gt_int8']:6.3f}  "
                  f"{r['seconds_fp32']:.2f} s -> {r['seconds_int8']:.2f} s")
        worst = min(r["psnr_int8_vs_fp32"] for r in rows)
        print(f"worst int8 vs fp32 {worst:.2f} dB; mean GT delta "
              f"{np.mean([r['psnr_gt_int8'] - r['psnr_gt_fp32'] for r in rows]):+.4f} dB; "
              f"speed-up {np.mean([r['seconds_fp32'] for r in rows]) / np.mean([r['seconds_int8'] for r in rows]):.2f}x")
    if args.report:
        atomic_write_text(args.report, json.dumps(report, indent=1, default=str) + "\n")
    return 0


def _conv_precisions(backend, item) -> dict[str, int]:
    from collections import Counter

    x0 = nchw(item.frame0)
    return dict(Counter(p for layer, p, _ in backend.runtime_precisions(x0.shape) if layer == "Convolution"))


if __name__ == "__main__":
    sys.exit(main())
