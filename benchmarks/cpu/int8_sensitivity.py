"""Which layers the shipped INT8 model must keep float: restore one group of convolutions at a time to float on top
of calib.shipped_int8's scope, quantize again (same calibration pairs), and score the result on training footage
only -- never the held-aside shots the rule is validated on.

    ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI python benchmarks/cpu/int8_sensitivity.py --json R.json [--groups a,b]
                                        [--small] [--gaps 1,2]

With --small, also 4 triplets per train segment scaled to a small frame (bigbuckbunny x0.25 = 320x180, bikes x0.5
= 320x136), where the held-aside carphone clip (176x144) showed the int8 error a 640-wide frame did not.

Scope of the base: the whole encoder float (ENCODER below: calib.shipped_int8's scope until issue 26's last
change, fixed here so that the recorded rankings reproduce whatever KEEP_FLOAT says today), every group added to
it; the scopes of REPLACING stand alone. Triplets: 4 evenly spaced triplets per gap (--gaps, default 1) per
train segment and scale of sfadacof/weights/split.json at its own size (24 per gap). Per group: the worst and mean
PSNR against OpenVINO fp32 (clipped float outputs) and the worst and mean change of PSNR against the true middle
frame (8-bit outputs, as the rule scores it). The INT8 model runs with fp32 float parts (INFERENCE_PRECISION_HINT
f32): run it under an ISA cap without bf16 (as above) to score the class an AVX2-only or VNNI-only CPU computes
(runtime/cpu_info.py). About 2-4 minutes per group on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

OFFSET_HEADS = ("Alpha1", "Beta1", "Alpha2", "Beta2")
GROUPS: dict[str, list[str]] = {
    "base": [],
    **{f"decoder{n}": [f"get_kernel.moduleDeconv{n}.{i}" for i in (0, 2, 4)] + [f"get_kernel.moduleUpsample{n}.1"]
       for n in (5, 4, 3, 2)},
    "occlusion": [f"get_kernel.moduleOcclusion.{i}" for i in (0, 2, 4, 7)],
    "weight_heads": [f"get_kernel.module{h}.{i}" for h in ("Weight1", "Weight2") for i in (0, 2, 4, 7)],
    "offset_heads_inner": [f"get_kernel.module{h}.{i}" for h in OFFSET_HEADS for i in (0, 2, 4)],
    "offset_heads_first": [f"get_kernel.module{h}.0" for h in OFFSET_HEADS],
    "offset_heads_second_third": [f"get_kernel.module{h}.{i}" for h in OFFSET_HEADS for i in (2, 4)],
    "offset_heads_third": [f"get_kernel.module{h}.4" for h in OFFSET_HEADS],
    "heads_first": [f"get_kernel.module{h}.0" for h in OFFSET_HEADS + ("Weight1", "Weight2", "Occlusion")],
}
GROUPS["weight_and_offset_heads_first"] = GROUPS["weight_heads"] + GROUPS["offset_heads_first"]
GROUPS["occlusion_and_offset_heads_first"] = GROUPS["occlusion"] + GROUPS["offset_heads_first"]
GROUPS["decoder2_and_offset_heads_first"] = GROUPS["decoder2"] + GROUPS["offset_heads_first"]
# Larger float sets, within what an AVX2-only CPU can afford (issue 26: int8 saves ~0.5 s of its ~2.0 s fp32 call
# there -- offset heads ~0.20 s, weight and occlusion heads ~0.22 s, decoder ~0.08 s; 2x eager needs ~0.13 s of it)
DECODER = [m for n in (5, 4, 3, 2) for m in GROUPS[f"decoder{n}"]]
GROUPS["decoder"] = DECODER
GROUPS["offset_heads_inner_and_decoder"] = GROUPS["offset_heads_inner"] + DECODER
GROUPS["weight_occlusion_heads"] = GROUPS["weight_heads"] + GROUPS["occlusion"]
GROUPS["weight_occlusion_heads_and_decoder"] = GROUPS["weight_occlusion_heads"] + DECODER
# the last convolutions of the heads whose maps the synthesis reads besides the offsets: kernel weights, occlusion
GROUPS["weight_occlusion_heads_last"] = ["get_kernel.moduleWeight1.7", "get_kernel.moduleWeight2.7",
                                         "get_kernel.moduleOcclusion.7"]
GROUPS["offset_heads_inner_and_heads_last"] = GROUPS["offset_heads_inner"] + GROUPS["weight_occlusion_heads_last"]
GROUPS["offset_heads_inner_decoder_heads_last"] = (GROUPS["offset_heads_inner_and_decoder"]
                                                   + GROUPS["weight_occlusion_heads_last"])
# which of the weight and occlusion heads' inner layers carries the int8 error left with the scope above
GROUPS["all_but_occlusion_inner"] = GROUPS["offset_heads_inner_decoder_heads_last"] + GROUPS["weight_heads"]
GROUPS["all_but_weight_heads_inner"] = GROUPS["offset_heads_inner_decoder_heads_last"] + GROUPS["occlusion"]
# Scopes that replace the base instead of adding to it: every head float (the offsets, the kernel weights and the
# occlusion map the synthesis reads all come from float layers), the trunk -- encoder and decoder -- int8
HEADS = GROUPS["offset_heads_inner"] + GROUPS["weight_heads"] + GROUPS["occlusion"]
ENCODER = {n: [f"get_kernel.moduleConv{n}.{i}" for i in (0, 2, 4)] + [f"get_kernel.modulePool{n}"]
           + [f"get_kernel.flowconv{n}_{k}.{i}" for k in ("pr", "FD", "ne") for i in (0, 2)] for n in range(1, 6)}
ENCODER_1_3 = ENCODER[1] + ENCODER[2] + ENCODER[3]
REPLACING: dict[str, list[str]] = {"trunk_int8": HEADS, "deep_trunk_int8": HEADS + ENCODER_1_3}
GROUPS["trunk_int8"] = GROUPS["deep_trunk_int8"] = []
SMALL = {"bigbuckbunny.mp4": 0.25, "bikes.mp4": 0.5}  # extra small-frame triplets of the same train segments


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--groups", default=",".join(GROUPS))
    p.add_argument("--small", action="store_true", help="also score each train segment scaled small (see SMALL)")
    p.add_argument("--gaps", default="1", help="triplet gaps scored (comma-separated; the rule's are 1,2)")
    args = p.parse_args()
    import logging

    import nncf
    import openvino as ov

    from calib import shipped_int8 as S
    from calib.openvino_int8 import quantize
    from calib.sources import nchw
    from export.cache import onnx_for_checkpoint
    from runtime.backends.openvino_backend import OpenVINOBackend
    from runtime.cpu_info import facts, int8_numerics
    from sfadacof.data import iter_eval_triplets, open_source
    from sfadacof.images import to_uint8
    from sfadacof.split import footage_path, load_split

    nncf.set_log_level(logging.WARNING)
    gaps = tuple(int(g) for g in args.gaps.split(","))
    split = load_split()
    footage = footage_path(None, split)
    triplets = []
    for seg in split.train.segments:
        # the train segments at their own scales, and once more small (a carphone-sized frame: 320x180, 320x136)
        for sc in (*seg.scales, SMALL[seg.clip]) if args.small else seg.scales:
            src = open_source(seg.spec(footage, sc), gaps)
            for i, (f0, f1, f2) in iter_eval_triplets(src, 4 * len(gaps)):
                triplets.append((f"{src.name}#{i}", nchw(f0.astype(np.float32) / 255),
                                 nchw(f2.astype(np.float32) / 255), f1.astype(np.float64) / 255))
    onnx = onnx_for_checkpoint(None, synthesis="onnx", precision="fp32")
    with OpenVINOBackend(onnx, precision="fp32") as ref:  # its own instance: infer() reshapes the model it holds
        refs = [ref.infer(a, b) for _, a, b, _ in triplets]
    fp32 = OpenVINOBackend(onnx, precision="fp32")
    pairs, _ = S.calibration_pairs(footage)
    base = {m: "base: the whole encoder float" for level in ENCODER.values() for m in level}
    argv = ["R.json" if a == str(args.json) else a for a in sys.argv[1:]]  # no path of the machine it ran on
    cap = [f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"] if "ONEDNN_MAX_CPU_ISA" in os.environ else []
    core, result = ov.Core(), {"command": " ".join([*cap, "python benchmarks/cpu/int8_sensitivity.py", *argv]),
                               "gaps": list(gaps), "numerics": int8_numerics(),
                               "cpu": facts(), "triplets": [t[0] for t in triplets], "groups": {}}
    for g in args.groups.split(","):
        t = time.perf_counter()
        keep = {m: g for m in REPLACING[g]} if g in REPLACING else {**base, **{m: g for m in GROUPS[g]}}
        names, scope = S.ignored_nodes(fp32.model, keep)
        q, _ = quantize(fp32, pairs, names)
        compiled = core.compile_model(q, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        rows = []
        for (name, a, b, gt), r in zip(triplets, refs):
            o = compiled({0: a, 1: b})[0]
            p_ref = _psnr(to_uint8(r[0].transpose(1, 2, 0)) / 255.0, gt)
            rows.append({"triplet": name, "psnr_vs_fp32": _psnr(np.clip(o, 0, 1), np.clip(r, 0, 1)),
                         "psnr_gt_fp32": p_ref,
                         "delta_gt": _psnr(to_uint8(o[0].transpose(1, 2, 0)) / 255.0, gt) - p_ref})
        v, d = [r["psnr_vs_fp32"] for r in rows], [r["delta_gt"] for r in rows]
        result["groups"][g] = {"restored": GROUPS[g], "quantized_convolutions": scope["quantized_convolutions"],
                               "min_psnr_vs_fp32": min(v), "mean_psnr_vs_fp32": float(np.mean(v)),
                               "worst_delta_gt": min(d), "mean_delta_gt": float(np.mean(d)), "rows": rows,
                               "seconds": time.perf_counter() - t}
        print(f"{g:26s} {scope['quantized_convolutions']:3d} int8  vs fp32 min {min(v):6.2f} mean {np.mean(v):6.2f} dB"
              f"  vs truth worst {min(d):+.4f} mean {np.mean(d):+.4f} dB", flush=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    fp32.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
