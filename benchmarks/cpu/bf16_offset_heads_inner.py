"""The bf16 default with the offset heads' inner layers in bf16 too (only their last convolutions and the synthesis
fp32, as the INT8 path keeps them), against the default as it is (the whole offset heads fp32): the accuracy rule on
every held-aside triplet of gaps 1 and 2 (calib.shipped_int8's validation, eager fp32 PyTorch as the reference) and
the speed of one real 960x507 frame, both configurations in one process, alternating calls.

    python benchmarks/cpu/bf16_offset_heads_inner.py [--reference-cache DIR] [--json R.json]

A probe for the next step of issue 26 (a CPU with native bf16 only): the backend is not changed; the lean variant
is OpenVINOBackend with openvino_backend.fp32_regions patched so that its "offset_heads" region holds only
openvino_int8.offset_outputs (the offset heads' last convolutions and their bias).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-cache", type=Path, default=None,
                   help="folder of eager PyTorch's outputs (as calib.shipped_int8 --reference-cache)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--iters", type=int, default=4)
    args = p.parse_args()

    import runtime.backends.openvino_backend as ob
    from benchmarks.cpu.floor import real_frames
    from calib import shipped_int8 as S
    from export.cache import onnx_for_checkpoint
    from runtime.backends.openvino_int8 import offset_outputs
    from runtime.cpu_info import facts
    from sfadacof.split import footage_path, load_split

    if not ob.native_bf16():
        raise SystemExit("this CPU has no native bf16: nothing to measure")
    onnx = onnx_for_checkpoint(None, synthesis="onnx", precision="fp32")
    original_regions, Backend = ob.fp32_regions, ob.OpenVINOBackend

    def backend(lean: bool):
        def regions(model):
            r = dict(original_regions(model))
            if lean:
                r["offset_heads"] = offset_outputs(model)
            return r

        ob.fp32_regions = regions
        try:
            return Backend(onnx, precision="bf16", synthesis="kernel")
        finally:
            ob.fp32_regions = original_regions

    cache = " --reference-cache DIR" if args.reference_cache else ""
    result = {"command": "python benchmarks/cpu/bf16_offset_heads_inner.py" + cache,
              "cpu": facts(), "configurations": {}}
    footage = footage_path(None, load_split())
    for name, lean in (("offset heads fp32 (the default)", False), ("offset heads' inner layers bf16", True)):
        # validate() builds its backend from the IR it is given; here it gets this configuration instead. Its print
        # names the class as an INT8 model's (bf16+vnni: float parts bf16), which is what this CPU computes
        ob.OpenVINOBackend = lambda xml, precision="int8", lean=lean, **kw: backend(lean)
        try:
            v = S.validate(Path("unused.xml"), footage, (1, 2), None, args.reference_cache)
        finally:
            ob.OpenVINOBackend = Backend
        S.print_validation(v)
        result["configurations"][name] = {"passed": v["passed"], "clips": [
            {k: c[k] for k in ("clip", "triplets", "min_psnr_vs_fp32", "worst_delta_gt", "mean_delta_gt")}
            for c in v["clips"]]}
    f0, f2 = real_frames()
    configs = {"offset heads fp32 (the default)": backend(False), "offset heads' inner layers bf16": backend(True)}
    for be in configs.values():
        be.infer(f0, f2)
    times = {name: [] for name in configs}
    for _ in range(args.iters):
        for name, be in configs.items():
            t = time.perf_counter()
            be.infer(f0, f2)
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        result["configurations"][name]["seconds_960x507"] = statistics.median(ts)
        print(f"{name:<34} {statistics.median(ts):.3f} s per 960x507 call (median of {len(ts)})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
