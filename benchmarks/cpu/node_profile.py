"""Where a CPU configuration's time goes: OpenVINO's per-node profile (PERF_COUNT) of one 960x512 call, summed by
part of the model.

    python benchmarks/cpu/node_profile.py MODEL.xml|MODEL.onnx f32|bf16 [--synthesis ops|kernel] [--json R.json]
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/cpu/node_profile.py ...      # as an AVX2-only CPU computes

Parts, from the node names the export keeps (the checkpoint's module names): the encoder (moduleConv*, modulePool*,
flowconv*), the decoder (moduleDeconv*, moduleUpsample*), the offset heads (moduleAlpha*, moduleBeta*: inner and
last convolutions together), the weight and occlusion heads; every other node by its type -- GatherElements and the
fused elementwise Subgraphs, Broadcast, Add, Convert, Sign, Concat, Multiply are the standard-op synthesis (the
sampling coordinates, their floor and the 25-tap weighted gathers). Times are the plugin's own per-node figures of
the third call (after two warm-ups), at the CPU's full thread count; their sum is within a few percent of the
call's wall time.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PART = re.compile(r"module(Conv|Pool|Deconv|Upsample|Weight|Alpha|Beta|Occlusion)\d*|flowconv\d")
NAMES = {"Conv": "encoder", "Pool": "encoder", "flowconv": "encoder", "Deconv": "decoder", "Upsample": "decoder",
         "Weight": "weight and occlusion heads", "Occlusion": "weight and occlusion heads", "Alpha": "offset heads",
         "Beta": "offset heads"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("hint", choices=("f32", "bf16"), help="INFERENCE_PRECISION_HINT (int8 IRs: of the float parts)")
    p.add_argument("--synthesis", choices=("ops", "kernel"), default="ops",
                   help="the export's standard ops (default) or the C++ kernel nodes "
                        "(runtime/backends/openvino_synthesis.py)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    import openvino as ov

    from runtime.cpu_info import facts

    core = ov.Core()
    model = core.read_model(str(args.model))
    model.reshape({i: [1, 3, 512, 960] for i in model.inputs})
    if args.synthesis == "kernel":
        from export.core import NODE_INPUT_TENSORS, NODE_OUTPUT_TENSOR
        from runtime.backends.openvino_backend import _onnx_metadata, ir_metadata
        from runtime.backends.openvino_synthesis import replace_synthesis

        meta = ir_metadata(model) if args.model.suffix.lower() == ".xml" else _onnx_metadata(args.model)
        k, d = int(meta.get("kernel_size", 5)), int(meta.get("dilation", 1))
        if not replace_synthesis(model, NODE_INPUT_TENSORS, NODE_OUTPUT_TENSOR, k, d, form="kernel"):
            raise SystemExit(f"{args.model}: no synthesis tensors to swap the kernel in for")
    config = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": args.hint}
    if args.synthesis == "kernel":
        config["ENABLE_CPU_PINNING"] = False  # as OpenVINOBackend sets it for the kernel nodes' threads
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    x0, x2 = (rng.random((1, 3, 512, 960), dtype=np.float32) for _ in range(2))
    for _ in range(3):
        request.infer({0: x0, 1: x2})
    parts: collections.Counter = collections.Counter()
    for node in request.profiling_info:
        ms = node.real_time.total_seconds() * 1e3
        m = PART.search(node.node_name)
        key = NAMES["flowconv" if m and m.group(0).startswith("flowconv") else m.group(1)] if m else node.node_type
        parts[key] += ms
    total = sum(parts.values())
    rows = [{"part": k, "ms": round(v, 1), "share": round(v / total, 4)} for k, v in parts.most_common() if v > 0]
    print(f"{args.model.name} {args.hint}: {total:.0f} ms in all (sum of node times)")
    for r in rows:
        print(f"  {r['part']:30s} {r['ms']:7.0f} ms {100 * r['share']:5.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(["python benchmarks/cpu/node_profile.py", args.model.name,
                                                              args.hint, "--synthesis", args.synthesis]), "cpu": facts(), "size": "960x512",
                                         "total_ms": round(total, 1), "parts": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
