"""The one-call GPU check of the CUDA side (issue 13): build, plugin harness with a device, compute-sanitizer, the GPU
tests, kernel timing and end to end against the authors' SF-AdaCoF, written to benchmarks/gpu/<date>-<gpu>.json.

    python -m plugins.gpu_check [--dry-run] [--out-dir benchmarks/gpu] [--build-dir build/gpu-check]
                                [--tensorrt-include .trt/v10.16/include] [--authors .authors/SF-AdaCoF]
                                [--steps build harness sanitizer gpu_tests kernel end_to_end] [--quick]
    python -m plugins.gpu_check --extract-authors GIT_DIR   # their files from a clone of Go-MinSeong/SF-AdaCoF

Steps run in order; a failing step is recorded (status, reason, log tail) and the next one still runs. The JSON is
written after every step (atomically), so a run cut short keeps what it measured; with $OUT set a copy goes there.
--dry-run needs no GPU: it parses the arguments, prints the build plan and the steps, and validates a skeleton of
the report against SCHEMA (CI runs it: tests/test_gpu_check.py).

The end-to-end step times the project's FP16 CUDA path (runtime/backends/torch_cuda_fp16.py) in a subprocess,
`python -m runtime.backends.torch_cuda_fp16`, because plugins/ may not import runtime/ (imports flow
sfadacof <- plugins <- export <- runtime). The authors' model (their model code and CuPy kernel, never committed:
extracted into the git-ignored .authors/ and carried to the GPU machine) runs in this process in fp32 with the
project's default checkpoint, which is in their state_dict layout and loads with strict=True.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

from . import _libs

REPO = _libs.REPO_ROOT
STEPS = ("build", "harness", "sanitizer", "gpu_tests", "kernel", "end_to_end")
SIZES = {"1080p": (1088, 1920), "4k": (2176, 3840)}
DEFAULT_TRT_INCLUDE = REPO / ".trt" / "v10.16" / "include"
DEFAULT_AUTHORS = REPO / ".authors" / "SF-AdaCoF"
DEFAULT_BUILD = REPO / "build" / "gpu-check"
AUTHORS_REPO = "github.com/Go-MinSeong/SF-AdaCoF"
# their files the run needs: path in their repository -> path under --authors
AUTHORS_FILES = {
    "cupy_module/__init__.py": "cupy_module/__init__.py",
    "cupy_module/adacof.py": "cupy_module/adacof.py",
    "utility.py": "utility.py",
    "vimeo/SF_AdaCoF/models/model.py": "sf_adacof_model.py",
}
FRAMES = ("examples/pairs/bikes_0100/im1.png", "examples/pairs/bikes_0100/im3.png")

# Required report keys (dotted = nested) -> allowed types. A measured value may be null only when its step did not
# produce it; the step's entry in "steps" then says why.
SCHEMA: dict[str, tuple[type, ...]] = {
    "device": (str,),
    "peak_bandwidth_gbs": (float,),
    "copy_bandwidth_gbs": (float,),
    "harness_enqueue.passed": (bool,),
    "harness_enqueue.checks": (int,),
    "kernel.impl": (str,),
    "kernel.fp32_max_abs_err": (float,),
    "kernel.fp16_max_abs_err": (float,),
    "kernel.ms_1080p_fp32": (float,),
    "kernel.ms_1080p_fp16": (float,),
    "kernel.gbs_1080p_fp16": (float,),
    "kernel.naive_ms_1080p_fp32": (float,),
    "end_to_end.authors_fp32_ms_1080p": (float,),
    "end_to_end.project_fp16_ms_1080p": (float,),
    "end_to_end.psnr_fp16_vs_fp32_db": (float,),
    "steps": (dict,),
}
PLACEHOLDER = {str: "", float: 0.0, bool: False, int: 0, dict: {}}


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            raise KeyError(dotted)
        d = d[part]
    return d


def _set(d: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        d = d.setdefault(part, {})
    d[parts[-1]] = value


def validate(report: dict, allow_null: bool = True) -> list[str]:
    """Problems with `report` against SCHEMA: missing keys, wrong types (bool is not an int here)."""
    problems = []
    for key, types_ in SCHEMA.items():
        try:
            v = _get(report, key)
        except KeyError:
            problems.append(f"missing key {key}")
            continue
        if v is None:
            if not allow_null:
                problems.append(f"{key} is null")
            continue
        if isinstance(v, bool) and bool not in types_:
            problems.append(f"{key} is bool, expected {'/'.join(t.__name__ for t in types_)}")
        elif not isinstance(v, types_) and not (float in types_ and isinstance(v, int) and not isinstance(v, bool)):
            problems.append(f"{key} is {type(v).__name__}, expected {'/'.join(t.__name__ for t in types_)}")
    return problems


def skeleton() -> dict:
    """A report with every required key at a typed placeholder (what --dry-run validates)."""
    r: dict = {}
    for key, types_ in SCHEMA.items():
        _set(r, key, PLACEHOLDER[types_[0]] if types_[0] is not dict else {})
    return r


# ---------------------------------------------------------------------------------------------------------------
# helpers

def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, str]:
    print("+", " ".join(cmd), flush=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout:.0f} s)"
    out = p.stdout + p.stderr
    print(_tail(out, 4000), flush=True)
    return p.returncode, out


def _device_arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}{minor}"


def build_command(args, arch: str) -> list[str]:
    cmd = [sys.executable, "-m", "plugins.build", "--cuda-archs", arch, "--build-dir", str(args.build_dir),
           "--no-tensorrt-python-check"]
    if args.tensorrt_include and Path(args.tensorrt_include).is_dir():
        cmd += ["--tensorrt-include", str(args.tensorrt_include)]
    return cmd


def _built(build_dir: Path, arch: str) -> bool:
    from . import build

    need = [_libs.library_filename(s) for s in (_libs.CPU_LIBRARY, _libs.CUDA_LIBRARY, _libs.PLUGIN_LIBRARY,
                                                 _libs.REGISTER_LIBRARY)] + ["sfadacof_plugin_harness"]
    if not all((build_dir / n).is_file() for n in need):
        return False
    archs = build.built_cuda_archs(build_dir / _libs.library_filename(_libs.CUDA_LIBRARY))
    return archs is not None and arch in archs


# ---------------------------------------------------------------------------------------------------------------
# steps: each returns (status, details); status is "passed", "failed", "skipped" or "error"

def step_build(args, report):
    arch = _device_arch()
    if not args.rebuild and _built(args.build_dir, arch):
        return "passed", {"reused": str(args.build_dir.relative_to(REPO)), "arch": arch}
    # --clean: a carried build directory's CMakeCache.txt names another machine's paths, which cmake refuses
    rc, out = _run(build_command(args, arch) + ["--clean"], timeout=args.build_timeout)
    ok = rc == 0 and (args.build_dir / _libs.library_filename(_libs.CUDA_LIBRARY)).is_file()
    return ("passed" if ok else "failed"), {"arch": arch, "rc": rc, "log_tail": _tail(out)}


def _harness_cmd(args) -> list[str] | None:
    h = args.build_dir / "sfadacof_plugin_harness"
    plugin = args.build_dir / _libs.library_filename(_libs.PLUGIN_LIBRARY)
    reg = args.build_dir / _libs.library_filename(_libs.REGISTER_LIBRARY)
    if not (h.is_file() and plugin.is_file()):
        return None
    cmd = [str(h)]
    if reg.is_file():
        cmd += ["--register-lib", str(reg)]
    return cmd + [str(plugin)]


def step_harness(args, report):
    cmd = _harness_cmd(args)
    if cmd is None:
        report["harness_enqueue"] = {"passed": False, "checks": 0, "reason": "harness not built (TensorRT headers?)"}
        return "failed", {"reason": "sfadacof_plugin_harness or the plugin is not built"}
    rc, out = _run(cmd, timeout=300)
    m = re.search(r"(\d+) checks, (\d+) failures", out)
    enq = re.findall(r"enqueue K=(\d+) d=(\d+) type=(\w+) offsets=(\w+): .*= ([0-9.e+-]+) \(bound", out)
    graphs = re.findall(r"graph capture of enqueue .*captured=(\d) nodes=(\d+) replay==direct=(\d)", out)
    skipped = "enqueue: SKIPPED" in out
    passed = rc == 0 and m is not None and int(m.group(2)) == 0 and len(enq) >= 6 and not skipped
    report["harness_enqueue"] = {
        "passed": passed, "checks": int(m.group(1)) if m else 0, "failures": int(m.group(2)) if m else None,
        "enqueue_runs": [{"K": int(k), "d": int(d), "type": t, "offsets": o, "rel_err": float(e)}
                         for k, d, t, o, e in enq],
        "graph_captures_ok": sum(1 for c, n, s in graphs if c == "1" and s == "1" and n == "1"),
        "graph_captures": len(graphs)}
    return ("passed" if passed else "failed"), {"rc": rc, "log_tail": _tail(out)}


def step_sanitizer(args, report):
    cs = shutil.which("compute-sanitizer")
    if cs is None:
        for c in ("/usr/local/cuda/bin/compute-sanitizer",):
            cs = c if Path(c).is_file() else None
    cmd = _harness_cmd(args)
    if cs is None or cmd is None:
        report["sanitizer"] = {"ran": False}
        return "skipped", {"reason": "compute-sanitizer not found" if cs is None else "harness not built"}
    rc, out = _run([cs, "--tool", "memcheck", "--error-exitcode", "3", *cmd], timeout=400)
    m = re.search(r"ERROR SUMMARY: (\d+) error", out)
    errors = int(m.group(1)) if m else None
    report["sanitizer"] = {"ran": True, "tool": "memcheck", "errors": errors, "rc": rc}
    return ("passed" if rc == 0 and errors == 0 else "failed"), {"log_tail": _tail(out)}


def step_gpu_tests(args, report):
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
           "tests/test_plugin_gpu.py"]
    rc, out = _run(cmd, timeout=args.tests_timeout, env={"SFADACOF_PLUGIN_DIR": str(args.build_dir)})
    m = re.search(r"=+ (.*) in [0-9.]+s", out)
    report["gpu_tests"] = {"rc": rc, "summary": m.group(1) if m else None}
    return ("passed" if rc == 0 else "failed"), {"log_tail": _tail(out)}


def _time_launches(fn, target_ms: float = 150.0) -> float:
    """ms per call: back-to-back calls between two CUDA events (count chosen from a first estimate)."""
    import torch

    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    e.synchronize()
    n = int(max(5, min(200, target_ms / max(s.elapsed_time(e), 1e-3))))
    s.record()
    for _ in range(n):
        fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / n


def _inputs(h, w, k, dtype, off_dtype, seed=0):
    import torch

    g = torch.Generator(device="cuda").manual_seed(seed)
    frames = [torch.rand((1, 3, h, w), generator=g, device="cuda").to(dtype) for _ in range(2)]
    maps = []
    for _ in range(2):
        maps.append(torch.softmax(torch.randn((1, k * k, h, w), generator=g, device="cuda"), 1).to(dtype))
        for _ in range(2):
            maps.append((torch.randn((1, k * k, h, w), generator=g, device="cuda") * 3).to(off_dtype))
    occ = torch.rand((1, 1, h, w), generator=g, device="cuda").to(dtype)
    return [frames[0], frames[1], *maps, occ]


def _reference(inputs, k, d=1):
    from sfadacof.synthesis import fused_reference

    return fused_reference(inputs, k, d)


def _traffic(inputs) -> int:
    return sum(t.numel() * t.element_size() for t in inputs) + inputs[0].numel() * inputs[0].element_size()


def step_kernel(args, report):
    import torch

    from . import benchmark, cuda_op

    os.environ["SFADACOF_PLUGIN_DIR"] = str(args.build_dir)
    cuda_op._lib.cache_clear()
    cuda_op.library_path()
    peak = report.get("peak_bandwidth_gbs")
    kern = report.setdefault("kernel", {})
    kern["impl"] = args.kernel
    rows = []
    dtypes = {"fp32": (torch.float32, torch.float32), "fp16": (torch.float16, torch.float16),
              "fp16_off32": (torch.float16, torch.float32)}
    # accuracy at 1080p, K = 5, against the PyTorch op (fp32) on the same (rounded) inputs
    h, w = SIZES["1080p"]
    for label, (dt, odt) in dtypes.items():
        inputs = _inputs(h, w, 5, dt, odt, seed=1)
        ref = _reference(inputs, 5)
        for impl in ("fused", "tiled"):
            out = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1, impl=impl).float()
            err = float((out - ref).abs().max())
            kern.setdefault("max_abs_err_1080p_k5", {}).setdefault(impl, {})[label] = err
        del inputs, ref, out
        torch.cuda.empty_cache()
    errs = kern["max_abs_err_1080p_k5"][args.kernel]
    kern["fp32_max_abs_err"] = errs["fp32"]
    kern["fp16_max_abs_err"] = max(errs["fp16"], errs["fp16_off32"])
    sizes = ["1080p"] if args.quick else list(SIZES)
    ks = [5] if args.quick else [5, 11]
    for size in sizes:
        h, w = SIZES[size]
        for k in ks:
            for label, (dt, odt) in dtypes.items():
                inputs = _inputs(h, w, k, dt, odt)
                out = torch.empty_like(inputs[0])
                nbytes = _traffic(inputs)
                for impl in cuda_op.IMPLS:
                    try:
                        ms = _time_launches(lambda: cuda_op.adacof_synthesis_cuda(
                            *inputs, kernel_size=k, dilation=1, out=out, impl=impl))
                    except (RuntimeError, ValueError) as e:
                        rows.append({"size": size, "K": k, "dtype": label, "impl": impl, "error": str(e)})
                        continue
                    gbs = nbytes / (ms * 1e-3) / 1e9
                    rows.append({"size": size, "K": k, "dtype": label, "impl": impl, "ms": ms, "gbs": gbs,
                                 "pct_peak": 100 * gbs / peak if peak else None,
                                 "pct_copy": 100 * gbs / report["copy_bandwidth_gbs"]})
                    print(f"  {size} K={k} {label:<10} {impl:<6} {ms:8.3f} ms {gbs:7.0f} GB/s", flush=True)
                del inputs, out
                torch.cuda.empty_cache()
    kern["timings"] = rows

    def ms_of(impl, label, size="1080p", k=5):
        return next((r["ms"] for r in rows if r["impl"] == impl and r["dtype"] == label and r["size"] == size
                     and r["K"] == k and "ms" in r), None)

    kern["ms_1080p_fp32"] = ms_of(args.kernel, "fp32")
    kern["ms_1080p_fp16"] = ms_of(args.kernel, "fp16")
    kern["ms_1080p_fp16_off32"] = ms_of(args.kernel, "fp16_off32")
    g = next((r["gbs"] for r in rows if r["impl"] == args.kernel and r["dtype"] == "fp16" and r["size"] == "1080p"
              and r["K"] == 5 and "gbs" in r), None)
    kern["gbs_1080p_fp16"] = g
    kern["pct_peak_1080p_fp16"] = 100 * g / peak if g and peak else None
    kern["naive_ms_1080p_fp32"] = ms_of("naive", "fp32")
    if kern["naive_ms_1080p_fp32"] and kern["ms_1080p_fp32"]:
        kern["speedup_vs_naive_1080p_fp32"] = kern["naive_ms_1080p_fp32"] / kern["ms_1080p_fp32"]
    if ms_of("fused", "fp16") and kern["ms_1080p_fp16"]:
        kern["speedup_vs_fused_1080p_fp16"] = ms_of("fused", "fp16") / kern["ms_1080p_fp16"]
    # static SASS size of the kernels (cuobjdump): a proxy for instructions per pixel
    cob = shutil.which("cuobjdump")
    if cob:
        sass = subprocess.run([cob, "-sass", str(args.build_dir / _libs.library_filename(_libs.CUDA_LIBRARY))],
                              capture_output=True, text=True).stdout
        kern["sass_instructions"] = _sass_counts(sass)
    _ = benchmark  # the interactive table is `python -m plugins.benchmark`
    return "passed", {}


def _sass_counts(sass: str) -> dict:
    counts, cur = {}, None
    for line in sass.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = m.group(1)
            counts[cur] = {"instructions": 0, "global_loads": 0}
            continue
        if cur and re.match(r"\s+/\*[0-9a-f]{4,}\*/", line):
            counts[cur]["instructions"] += 1
            if "LDG" in line:
                counts[cur]["global_loads"] += 1
    return {k: v for k, v in counts.items() if "Li5E" in k or "naive" in k}


# ---------------------------------------------------------------------------------------------------------------
# the authors' model

def extract_authors(git_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    for src, dst in AUTHORS_FILES.items():
        blob = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{src}"], capture_output=True,
                              check=True).stdout
        (dest / dst).parent.mkdir(parents=True, exist_ok=True)
        (dest / dst).write_bytes(blob)
    (dest / "SOURCE.txt").write_text(f"{AUTHORS_REPO} at {rev}: " + ", ".join(AUTHORS_FILES) + "\n"
                                     "Not part of this project; never commit.\n")
    print(f"extracted {len(AUTHORS_FILES)} files of {AUTHORS_REPO}@{rev[:12]} into {dest}")


def _cupy_shim() -> None:
    """Their kernel calls cupy.cuda.compile_with_cache, which newer CuPy dropped: the same thing via RawModule."""
    import cupy

    if not hasattr(cupy.cuda, "compile_with_cache"):
        cupy.cuda.compile_with_cache = lambda source, *a, **kw: cupy.RawModule(code=source)


def load_authors_model(authors: Path, kernel_size: int = 5, dilation: int = 1, stub_cupy: bool = False):
    """Their AdaCoFNet (vimeo/SF_AdaCoF/models/model.py). stub_cupy: import without CuPy (CPU dry run: the model
    class and its state_dict only; their kernel cannot run)."""
    if not (authors / "sf_adacof_model.py").is_file():
        raise FileNotFoundError(f"{authors}: the authors' code is absent (python -m plugins.gpu_check "
                                f"--extract-authors <clone of {AUTHORS_REPO}>/.git)")
    if stub_cupy and "cupy" not in sys.modules:
        stub = types.ModuleType("cupy")
        stub.memoize = lambda **kw: (lambda f: f)
        stub.cuda = types.SimpleNamespace()
        sys.modules["cupy"] = stub
    elif not stub_cupy:
        _cupy_shim()
    sys.path.insert(0, str(authors))
    try:
        import importlib

        mod = importlib.import_module("sf_adacof_model")
    finally:
        sys.path.remove(str(authors))
    return mod.AdaCoFNet(argparse.Namespace(kernel_size=kernel_size, dilation=dilation))


def check_authors_state_dict(authors: Path) -> str:
    """CPU: import their model class (CuPy stubbed) and load the project's default checkpoint into it strictly."""
    import torch

    from sfadacof.checkpoint import DEFAULT_CHECKPOINT

    net = load_authors_model(authors, stub_cupy=True)
    sd = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    sd = sd["state_dict"] if "state_dict" in sd else sd
    net.load_state_dict(sd, strict=True)
    return f"imports; the default checkpoint's {len(sd)} tensors load into it with strict=True"


def _load_frames_1080p():
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    out = []
    for f in FRAMES:
        a = np.asarray(Image.open(REPO / f).convert("RGB"), dtype=np.float32) / 255.0
        t = torch.from_numpy(a).permute(2, 0, 1)[None]
        out.append(F.interpolate(t, size=(1080, 1920), mode="bicubic", align_corners=False).clamp(0, 1))
    return out


def step_end_to_end(args, report):
    import numpy as np
    import torch

    from sfadacof.checkpoint import DEFAULT_CHECKPOINT
    from sfadacof.metrics import psnr

    e2e = report.setdefault("end_to_end", {})
    e2e["frames"] = f"{FRAMES[0]}, {FRAMES[1]} upscaled (bicubic) to 1920x1080"
    f0, f2 = _load_frames_1080p()
    scratch = args.build_dir / "e2e"
    scratch.mkdir(parents=True, exist_ok=True)
    np.savez(scratch / "frames.npz", frame0=f0.numpy(), frame2=f2.numpy())
    details = {}
    # the project's FP16 path, in a subprocess (plugins may not import runtime)
    fp16 = {}
    for impl in ("fused", "tiled"):
        rc, out = _run([sys.executable, "-m", "runtime.backends.torch_cuda_fp16", "--frames",
                        str(scratch / "frames.npz"), "--out", str(scratch / f"fp16_{impl}.npz"), "--impl", impl,
                        "--iters", "10" if args.quick else "30"], timeout=300,
                       env={"SFADACOF_PLUGIN_DIR": str(args.build_dir)})
        line = next((ln for ln in out.splitlines()[::-1] if ln.startswith("{")), None)
        if rc == 0 and line:
            fp16[impl] = json.loads(line)["ms_per_frame_gpu"]
            e2e[f"project_fp16_{impl}_ms_1080p"] = fp16[impl]
        else:
            details[f"fp16_{impl}"] = _tail(out)
    chosen = args.kernel if args.kernel in fp16 else next(iter(fp16), None)
    e2e["project_fp16_impl"] = chosen
    e2e["project_fp16_ms_1080p"] = fp16.get(chosen)
    # the authors' model, fp32, their CuPy kernel
    try:
        net = load_authors_model(args.authors).cuda().eval()
        sd = torch.load(DEFAULT_CHECKPOINT, map_location="cuda", weights_only=True)
        net.load_state_dict(sd["state_dict"] if "state_dict" in sd else sd, strict=True)
        a0, a2 = f0.cuda(), f2.cuda()
        with torch.no_grad():
            ref = net(a0, a2)
            ms = _time_launches(lambda: net(a0, a2), target_ms=1500.0)
        e2e["authors_fp32_ms_1080p"] = ms
        e2e["authors_code"] = (args.authors / "SOURCE.txt").read_text().splitlines()[0]
        ref = ref.float().cpu()
        if chosen:
            with np.load(scratch / f"fp16_{chosen}.npz") as z:
                got = torch.from_numpy(z["out"])
            e2e["psnr_fp16_vs_fp32_db"] = psnr(got.clamp(0, 1), ref.clamp(0, 1))
            e2e["max_abs_fp16_vs_fp32"] = float((got - ref).abs().max())
            e2e["speedup_fp16_vs_authors"] = ms / fp16[chosen]
    except FileNotFoundError as e:
        e2e["authors_fp32_ms_1080p"] = None
        e2e["psnr_fp16_vs_fp32_db"] = None
        e2e["authors_code"] = f"absent: {e}"
        return "failed", {"reason": str(e), **details}
    ok = e2e.get("project_fp16_ms_1080p") is not None and e2e.get("psnr_fp16_vs_fp32_db") is not None
    return ("passed" if ok else "failed"), details


STEP_FUNCS = {"build": step_build, "harness": step_harness, "sanitizer": step_sanitizer,
              "gpu_tests": step_gpu_tests, "kernel": step_kernel, "end_to_end": step_end_to_end}


# ---------------------------------------------------------------------------------------------------------------

def _write(report: dict, path: Path) -> None:
    from sfadacof.outputs import atomic_write_text

    text = json.dumps(report, indent=1, default=str) + "\n"
    atomic_write_text(path, text)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / path.name, text)


def _gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "gpu"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m plugins.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="no GPU: print the plan and validate the JSON skeleton")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "gpu")
    ap.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD)
    ap.add_argument("--tensorrt-include", type=Path, default=DEFAULT_TRT_INCLUDE)
    ap.add_argument("--authors", type=Path, default=DEFAULT_AUTHORS)
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    ap.add_argument("--kernel", choices=("fused", "tiled"), default="tiled",
                    help="the synthesis kernel the report's headline keys describe (both are timed)")
    ap.add_argument("--quick", action="store_true", help="1080p and K = 5 only, fewer iterations")
    ap.add_argument("--rebuild", action="store_true", help="build even if --build-dir holds a build for this GPU")
    ap.add_argument("--build-timeout", type=float, default=480.0)
    ap.add_argument("--tests-timeout", type=float, default=300.0)
    ap.add_argument("--extract-authors", type=Path, metavar="GIT_DIR",
                    help=f"copy the files the run needs from a clone of {AUTHORS_REPO} into --authors, then exit")
    args = ap.parse_args(argv)
    args.build_dir = args.build_dir.resolve()
    args.authors = args.authors.resolve()
    return args


def dry_run(args) -> int:
    print("gpu_check dry run (no GPU used)")
    print("build plan:", " ".join(build_command(args, "<device arch>")))
    print(f"  reused instead when {args.build_dir} holds the CPU/CUDA/plugin/register libraries and the harness "
          "for the device's arch (--rebuild forces it)")
    print(f"  TensorRT headers: {args.tensorrt_include} ({'present' if args.tensorrt_include.is_dir() else 'ABSENT'})")
    print(f"  authors' code: {args.authors} ({'present' if (args.authors / 'sf_adacof_model.py').is_file() else 'ABSENT'})")
    print("steps:", ", ".join(args.steps))
    if (args.authors / "sf_adacof_model.py").is_file():
        print("authors' model on CPU:", check_authors_state_dict(args.authors))
    problems = validate(skeleton(), allow_null=False)
    for p in problems:
        print("schema problem:", p)
    print(f"report: {args.out_dir}/<date>-<gpu>.json; required keys: {', '.join(SCHEMA)}")
    print("schema: skeleton valid" if not problems else "schema: INVALID")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.extract_authors:
        try:
            extract_authors(args.extract_authors, args.authors)
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"gpu_check: {args.extract_authors}: cannot read the authors' files ({e})", file=sys.stderr)
            return 2
        return 0
    if args.dry_run:
        return dry_run(args)
    from ._libs import cuda_torch_problem

    problem = cuda_torch_problem("gpu_check")
    if problem:
        print(f"{problem}; --dry-run needs none", file=sys.stderr)
        return 2
    import torch

    from . import benchmark

    name = torch.cuda.get_device_name()
    report: dict = {"device": name, "date": _dt.date.today().isoformat(), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "arch": _device_arch(), "steps": {}}
    report["peak_bandwidth_gbs"] = benchmark._peak_bandwidth_gbs(torch.cuda.current_device())
    report["copy_bandwidth_gbs"] = benchmark._copy_bandwidth_gbs(20)
    path = args.out_dir / f"{report['date']}-{_gpu_slug(name)}.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for key in SCHEMA:  # every required key exists from the start (null until measured)
        try:
            _get(report, key)
        except KeyError:
            _set(report, key, None)
    for step in args.steps:
        t0 = time.monotonic()
        print(f"== {step}", flush=True)
        try:
            status, details = STEP_FUNCS[step](args, report)
        except Exception as e:  # noqa: BLE001 -- a failing step is recorded; the next one still runs
            import traceback

            status, details = "error", {"error": f"{type(e).__name__}: {e}",
                                        "traceback": _tail(traceback.format_exc())}
            print(details["traceback"], flush=True)
        report["steps"][step] = {"status": status, "seconds": round(time.monotonic() - t0, 1), **details}
        print(f"== {step}: {status} ({report['steps'][step]['seconds']} s)", flush=True)
        _write(report, path)
    problems = validate(report)
    report["schema_problems"] = problems
    _write(report, path)
    summary = {k: _get(report, k) for k in SCHEMA if k != "steps"}
    print(json.dumps(summary, indent=1, default=str))
    print(f"wrote {path}")
    return 0 if all(s["status"] in ("passed", "skipped") for s in report["steps"].values()) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
