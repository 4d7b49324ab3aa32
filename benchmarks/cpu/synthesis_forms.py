"""The synthesis inside OpenVINO's CPU default: the export's standard ops against the C++ kernel node, in one
process, on real 960x507 frames, with eager PyTorch as the baseline of every ratio.

    python benchmarks/cpu/synthesis_forms.py [--iters 5] [--precisions fp32,bf16,int8] [--json OUT.json]
                                             [--forms ops,kernel] [--int8-ir OTHER.int8.xml ...]

Configurations: eager PyTorch fp32 (the project's model, the baseline), then for each precision this CPU offers
(bf16 only where it is native; int8: the shipped INT8 model) OpenVINO with synthesis="ops" (the export's lowering,
the CPU default before issue 26) and synthesis="kernel" (the C++ kernel as two OpenVINO nodes, the default now).
Each is warmed up once (compile, first-run allocations), then the configurations are called in turn, round by
round (--iters rounds), so that load from elsewhere falls on all alike; a configuration's figure is the median of
its calls. --int8-ir adds other INT8 IRs (e.g. candidate scopes of calib.shipped_int8) beside the shipped one, in
the kernel form. The outputs of the two forms of one precision are compared (max |difference|: float32 summation order).
Every figure comes from the CPU this runs on (the JSON records its model and flags, and any ONEDNN_MAX_CPU_ISA cap:
run with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 to compute as an AVX2-only CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.cpu.floor import real_frames  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--precisions", default="fp32,bf16,int8")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--forms", default="ops,kernel", help="synthesis forms to time (ops, kernel)")
    p.add_argument("--int8-ir", type=Path, action="append", default=[], help="another INT8 IR to time (kernel form)")
    args = p.parse_args()

    from export.cache import onnx_for_checkpoint
    from runtime.backends.openvino_backend import OpenVINOBackend, native_bf16
    from runtime.backends.openvino_int8 import SHIPPED_INT8
    from runtime.backends.torch_backend import TorchBackend
    from runtime.cpu_info import facts

    f0, f2 = real_frames()
    onnx = onnx_for_checkpoint(None, synthesis="onnx", precision="fp32")
    configs = {"torch fp32": TorchBackend(None)}
    for prec in args.precisions.split(","):
        if prec == "bf16" and not native_bf16():
            continue
        model = SHIPPED_INT8 if prec == "int8" else onnx
        for form in args.forms.split(","):
            configs[f"openvino {prec} {form}"] = OpenVINOBackend(model, precision=prec, synthesis=form)
    for ir in args.int8_ir:
        name = f"openvino int8 kernel {ir.parent.name}/{ir.name}"
        configs[name] = OpenVINOBackend(ir, precision="int8", synthesis="kernel")
    outputs = {name: be.infer(f0, f2) for name, be in configs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.iters):
        for name, be in configs.items():
            t = time.perf_counter()
            be.infer(f0, f2)
            times[name].append(time.perf_counter() - t)
    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["torch fp32"]
    rows = {}
    for name in configs:
        rows[name] = {"median_s": med[name], "calls_s": times[name], "vs_eager": base / med[name]}
        print(f"{name:<24} {med[name]:7.3f} s  {base / med[name]:5.2f}x eager", flush=True)
    for prec in args.precisions.split(","):
        ops, kern = f"openvino {prec} ops", f"openvino {prec} kernel"
        if ops in med and kern in med:
            diff = float(np.abs(outputs[ops] - outputs[kern]).max())
            rows[kern]["vs_ops"] = med[ops] / med[kern]
            rows[kern]["max_abs_diff_vs_ops"] = diff
            print(f"{prec}: kernel {med[ops] / med[kern]:.2f}x the ops form, outputs within {diff:.2e}")
    from plugins.cpu_op import simd_path

    result = {"command": "python benchmarks/cpu/synthesis_forms.py " + " ".join(sys.argv[1:]),
              "cpu": facts(), "kernel_path": simd_path(), "size": "960x507", "iters": args.iters, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
