"""The one-call GPU check of the CUDA side (issues 13, 22): plugin harness with a device, compute-sanitizer, the GPU
tests, the plugin's kernel (errors and timings) and end to end, written to benchmarks/gpu/<date>-<gpu>.json.

    python -m plugins.gpu_check [--out-dir benchmarks/gpu] [--build-dir build/gpu-device] [--authors .authors/SF-AdaCoF]
                                [--steps build harness sanitizer gpu_tests kernel end_to_end] [--quick]
    python -m plugins.gpu_check --rehearse          # here, no GPU: build what the device needs, then rehearse the run
    python -m plugins.gpu_check --dry-run           # the plan and the headline keys' bounds
    python -m plugins.gpu_check --extract-authors GIT_DIR   # their files from a clone of Go-MinSeong/SF-AdaCoF

The device does not build: compiling the kernel file takes minutes per architecture, so `--rehearse` builds the sm_90
libraries here into --build-dir (with a manifest of the sources they were built from) and the device run refuses, in
one line, to start without them. Steps run in order; a failing step is recorded (status, reason, log tail) and the
next one still runs. The JSON is written after every step (atomically), so a run cut short keeps what it measured;
with $OUT set a copy goes there. Every headline key has a bound (HEADLINES) and a null, missing or out-of-bound value
fails the run. Without a GPU (the rehearsal's stand-in, --stand-in) the steps that need one report "not run: no GPU".

The end-to-end step times the project's FP16 CUDA path (runtime/backends/torch_cuda_fp16.py) in a subprocess,
`python -m runtime.backends.torch_cuda_fp16`, because plugins/ may not import runtime/ (imports flow
sfadacof <- plugins <- export <- runtime), and compares its frame with the project's PyTorch model in fp32 (TF32 off).
The authors' model (their model code and CuPy kernel, never committed: extracted into the git-ignored .authors/ and
carried to the GPU machine) is an optional anchor: timed in fp32 with the project's default checkpoint when present.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from . import _libs
from .gpu_plan import DEFAULT_BUILD, DEVICE_ARCH, HARNESS, NOT_RUN, STEPS, build_problem, run_group

REPO = _libs.REPO_ROOT
SIZES = {"1080p": (1088, 1920), "4k": (2176, 3840)}
DEFAULT_TRT_INCLUDE = REPO / ".trt" / "v10.16" / "include"
DEFAULT_AUTHORS = REPO / ".authors" / "SF-AdaCoF"
AUTHORS_REPO = "github.com/Go-MinSeong/SF-AdaCoF"
# their files the run needs: path in their repository -> path under --authors
AUTHORS_FILES = {
    "cupy_module/__init__.py": "cupy_module/__init__.py",
    "cupy_module/adacof.py": "cupy_module/adacof.py",
    "utility.py": "utility.py",
    "vimeo/SF_AdaCoF/models/model.py": "sf_adacof_model.py",
}
FRAMES = ("examples/pairs/bikes_0100/im1.png", "examples/pairs/bikes_0100/im3.png")

# The kernel the plugin's enqueue launches: the headline kernel figures describe it (the CUDA torch op and the
# benchmark run the same one through cuda_op's default impl).
PLUGIN_IMPL = "fused"
# plugins/README.md: max abs error against the PyTorch op on the same (rounded) inputs.
FP32_TOL, FP16_TOL = 1e-5, 2e-3
MIN_PSNR_DB = 45.0  # the FP16 path's frame against fp32 (issue 22)
MIN_ENQUEUE_RUNS = 4  # K = 5/d = 1 and K = 3/d = 2, each in fp32 and fp16 with fp32 offsets at least
STATUSES = ("passed", "failed", "error", NOT_RUN)


def _positive(v) -> bool:
    return v > 0


def _finite_float(v) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


# Headline key (dotted = nested) -> (the step that measures it, allowed types, bound as words, bound). Null, missing,
# a wrong type or a value outside the bound is a problem; only a step reported NOT_RUN excuses a null.
HEADLINES: dict[str, tuple[str, tuple[type, ...], str, object]] = {
    "device": ("run", (str,), "a name", lambda v: bool(v.strip())),
    "peak_bandwidth_gbs": ("kernel", (float,), "> 0", _positive),
    "copy_bandwidth_gbs": ("kernel", (float,), "> 0", _positive),
    "harness_enqueue.passed": ("harness", (bool,), "true", lambda v: v is True),
    "harness_enqueue.checks": ("harness", (int,), f">= {2 * MIN_ENQUEUE_RUNS}",
                               lambda v: v >= 2 * MIN_ENQUEUE_RUNS),
    "kernel.impl": ("kernel", (str,), f"{PLUGIN_IMPL!r} (the plugin's)", lambda v: v == PLUGIN_IMPL),
    "kernel.fp32_max_abs_err": ("kernel", (float,), f"0 <= e <= {FP32_TOL:g}", lambda v: 0 <= v <= FP32_TOL),
    "kernel.fp16_max_abs_err": ("kernel", (float,), f"0 <= e <= {FP16_TOL:g}", lambda v: 0 <= v <= FP16_TOL),
    "kernel.ms_1080p_fp32": ("kernel", (float,), "> 0", _positive),
    "kernel.ms_1080p_fp16": ("kernel", (float,), "> 0", _positive),
    "kernel.ms_1080p_fp16_off32": ("kernel", (float,), "> 0", _positive),
    "kernel.gbs_1080p_fp16": ("kernel", (float,), "> 0", _positive),
    "end_to_end.project_fp32_ms_1080p": ("end_to_end", (float,), "> 0", _positive),
    "end_to_end.project_fp16_ms_1080p": ("end_to_end", (float,), "> 0", _positive),
    "end_to_end.psnr_fp16_vs_fp32_db": ("end_to_end", (float,), f">= {MIN_PSNR_DB:g} dB",
                                        lambda v: v >= MIN_PSNR_DB),
}
# The authors' anchor (optional): measured when .authors/ is there, else null with end_to_end.authors_code saying
# "absent: ...". Measured values are bounded like the headlines.
ANCHOR: dict[str, tuple[str, object]] = {
    "end_to_end.authors_fp32_ms_1080p": ("> 0", _positive),
    "end_to_end.psnr_fp16_vs_authors_fp32_db": (f">= {MIN_PSNR_DB:g} dB", lambda v: v >= MIN_PSNR_DB),
}


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


def _type_problem(key: str, v, types_: tuple[type, ...]) -> str | None:
    want = "/".join(t.__name__ for t in types_)
    if isinstance(v, bool) and bool not in types_:
        return f"{key} is bool, expected {want}"
    if isinstance(v, int) and not isinstance(v, bool) and float in types_:
        return None  # an int where a float is expected is fine
    if not isinstance(v, types_):
        return f"{key} is {type(v).__name__}, expected {want}"
    return None


def _bound_problem(key: str, v, words: str, ok) -> str | None:
    if not _finite_float(v) or not ok(v):
        return f"{key} = {v!r}, outside its bound ({words})"
    return None


def validate(report: dict) -> list[str]:
    """Every problem of `report`: a headline key missing, null, of the wrong type or outside its bound; a step with an
    unknown status; an anchor value measured but out of bound, or null without end_to_end.authors_code saying why."""
    problems = []
    for key, (_step, types_, words, ok) in HEADLINES.items():
        try:
            v = _get(report, key)
        except KeyError:
            problems.append(f"missing key {key}")
            continue
        if v is None:
            problems.append(f"{key} is null")
            continue
        problems.append(_type_problem(key, v, types_) or _bound_problem(key, v, words, ok))
    steps = report.get("steps")
    if not isinstance(steps, dict) or not steps:
        problems.append("steps: no step recorded")
    else:
        for name, entry in steps.items():
            status = entry.get("status") if isinstance(entry, dict) else None
            if status not in STATUSES:
                problems.append(f"steps.{name}.status is {status!r}, expected one of {', '.join(STATUSES)}")
    code = (report.get("end_to_end") or {}).get("authors_code")
    for key, (words, ok) in ANCHOR.items():
        try:
            v = _get(report, key)
        except KeyError:
            v = None
        if v is None:
            if not (isinstance(code, str) and code.startswith("absent")):
                problems.append(f"{key} is null and end_to_end.authors_code does not say the anchor is absent")
            continue
        problems.append(_type_problem(key, v, (float,)) or _bound_problem(key, v, words, ok))
    return [p for p in problems if p]


def stand_in_problems(report: dict) -> list[str]:
    """validate()'s problems minus the nulls of headline keys whose step reported NOT_RUN (a machine without a GPU)."""
    steps = report.get("steps") or {}
    not_run = [key for key, (step, *_r) in HEADLINES.items() if (steps.get(step) or {}).get("status") == NOT_RUN]
    if (steps.get("end_to_end") or {}).get("status") == NOT_RUN:
        not_run += list(ANCHOR)
    return [p for p in validate(report) if not any(p.startswith(f"{key} is null") for key in not_run)]


# ---------------------------------------------------------------------------------------------------------------
# helpers

def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `cmd`; on timeout (124), Ctrl-C or SIGTERM its whole process group is
    killed, so a grandchild (pytest's workers, a runtime subprocess) neither outlives the step nor keeps the pipe
    open. The timeout is cut to what is left of the run's --budget-s."""
    timeout = min(timeout, max(5.0, _DEADLINE[0] - time.monotonic()))
    print("+", shlex.join(cmd), flush=True)
    rc, out = run_group(cmd, timeout, cwd=REPO, env={**os.environ, **(env or {})})
    print(_tail(out, 4000), flush=True)
    return rc, out


_DEADLINE = [math.inf]  # monotonic time by which the run must be done (set by run() from --budget-s)


def _device_arch() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}{minor}"


# ---------------------------------------------------------------------------------------------------------------
# steps: each returns (status, details); status is one of STATUSES

def step_build(args, report):
    problem = build_problem(args.build_dir, args.arch)
    if problem:  # main refuses before any step; a build that vanished since is a failure
        return "failed", {"reason": problem}
    return "passed", {"reused": str(args.build_dir), "arch": args.arch}


def _harness_cmd(args) -> list[str]:
    return [str(args.build_dir / HARNESS), "--register-lib",
            str(args.build_dir / _libs.library_filename(_libs.REGISTER_LIBRARY)),
            str(args.build_dir / _libs.library_filename(_libs.PLUGIN_LIBRARY))]


def parse_harness(out: str, rc: int) -> dict:
    """harness_enqueue from the harness's output: its enqueue runs (error against the C++ CPU kernel and its bound)
    and their CUDA-graph captures; `checks` counts those enqueue checks only (one bound and one capture per run)."""
    m = re.search(r"(\d+) checks, (\d+) failures", out)
    enq = re.findall(r"enqueue K=(\d+) d=(\d+) type=(\w+) offsets=(\w+): .*= ([0-9.e+-]+|nan|inf) "
                     r"\(bound ([0-9.e+-]+)\)", out)
    graphs = re.findall(r"graph capture of enqueue K=\d+ d=\d+ type=\w+ offsets=\w+: captured=(\d) nodes=(\d+) "
                        r"replay==direct=(\d)", out)
    runs = [{"K": int(k), "d": int(d), "type": t, "offsets": o, "rel_err": float(e), "bound": float(b)}
            for k, d, t, o, e, b in enq]
    graphs_ok = sum(1 for c, n, same in graphs if c == "1" and n == "1" and same == "1")
    host_ok = rc == 0 and m is not None and int(m.group(2)) == 0
    passed = (host_ok and "enqueue: SKIPPED" not in out and len(runs) >= MIN_ENQUEUE_RUNS
              and all(r["rel_err"] <= r["bound"] for r in runs) and graphs_ok == len(runs) == len(graphs))
    return {"passed": passed, "checks": len(runs) + len(graphs), "host_ok": host_ok,
            "harness_checks": int(m.group(1)) if m else None, "failures": int(m.group(2)) if m else None,
            "enqueue_runs": runs, "graph_captures_ok": graphs_ok, "graph_captures": len(graphs)}


def step_harness(args, report):
    rc, out = _run(_harness_cmd(args), timeout=120)
    h = parse_harness(out, rc)
    details = {"rc": rc, "log_tail": _tail(out)}
    if not args.gpu:  # the plugin's methods are checked without a device; enqueue is not
        h["passed"] = h["checks"] = None
        report["harness_enqueue"] = h
        return (NOT_RUN if h["host_ok"] and "enqueue: SKIPPED" in out else "failed"), details
    report["harness_enqueue"] = h
    return ("passed" if h["passed"] else "failed"), details


def step_sanitizer(args, report):
    if not args.gpu:
        report["sanitizer"] = {"ran": False}
        return NOT_RUN, {}
    cs = shutil.which("compute-sanitizer") or next(
        (c for c in ("/usr/local/cuda/bin/compute-sanitizer",) if Path(c).is_file()), None)
    if cs is None:
        report["sanitizer"] = {"ran": False}
        return "failed", {"reason": "compute-sanitizer not found"}
    rc, out = _run([cs, "--tool", "memcheck", "--error-exitcode", "3", *_harness_cmd(args)], timeout=240)
    m = re.search(r"ERROR SUMMARY: (\d+) error", out)
    errors = int(m.group(1)) if m else None
    report["sanitizer"] = {"ran": True, "tool": "memcheck", "errors": errors, "rc": rc}
    return ("passed" if rc == 0 and errors == 0 else "failed"), {"log_tail": _tail(out)}


def step_gpu_tests(args, report):
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
           "tests/test_plugin_gpu.py"]
    rc, out = _run(cmd, timeout=args.tests_timeout, env={"SFADACOF_PLUGIN_DIR": str(args.build_dir)})
    summary, counts = parse_pytest_summary(out)
    report["gpu_tests"] = {"rc": rc, "summary": summary}
    return gpu_tests_status(rc, counts, args.gpu), {"log_tail": _tail(out)}


def parse_pytest_summary(out: str) -> tuple[str | None, dict[str, int]]:
    """pytest's last line ("3 passed, 2 skipped in 4.1s", with or without its ===) -> (that text, {word: n})."""
    found = re.findall(r"^=* ?((?:\d+ \w+(?:, )?)+) in [0-9.]+s", out, re.M)
    if not found:
        return None, {}
    counts = {("error" if w.startswith("error") else w): int(n)
              for n, w in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)", found[-1])}
    return found[-1], counts


def gpu_tests_status(rc: int, counts: dict[str, int], gpu: bool) -> str:
    """With a GPU: passed when some ran and none failed. Without one: NOT_RUN when every test was collected and
    skipped (the test modules import in this image: scikit-video's absence once made that exit 4), else failed."""
    if not gpu:
        return NOT_RUN if rc == 0 and counts.get("skipped", 0) > 0 and set(counts) == {"skipped"} else "failed"
    return "passed" if rc == 0 and counts.get("passed", 0) > 0 and not {"failed", "error"} & set(counts) else "failed"


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
    os.environ["SFADACOF_PLUGIN_DIR"] = str(args.build_dir)
    from . import cuda_op

    cuda_op._lib.cache_clear()
    cuda_op._lib()  # the carried library loads here (no device needed for that)
    kern = report.setdefault("kernel", {})
    sass_problems = _sass(args, kern)  # the plugin library's own sm_90 code: no device needed either
    if not args.gpu:
        return (NOT_RUN if not sass_problems else "failed"), {"library": cuda_op.library_path(),
                                                               "sass_problems": sass_problems}
    import torch

    from . import benchmark

    report["peak_bandwidth_gbs"] = benchmark._peak_bandwidth_gbs(torch.cuda.current_device())
    report["copy_bandwidth_gbs"] = benchmark._copy_bandwidth_gbs(20)
    peak, copy = report["peak_bandwidth_gbs"], report["copy_bandwidth_gbs"]
    kern["impl"] = PLUGIN_IMPL
    impls = [PLUGIN_IMPL] + [i for i in getattr(cuda_op, "IMPLS", ()) if i != PLUGIN_IMPL]
    dtypes = {"fp32": (torch.float32, torch.float32), "fp16": (torch.float16, torch.float16),
              "fp16_off32": (torch.float16, torch.float32)}
    # accuracy at 1080p, K = 5, of the plugin's kernel against the PyTorch op (fp32) on the same (rounded) inputs
    h, w = SIZES["1080p"]
    errs = kern.setdefault("max_abs_err_1080p_k5", {})
    for label, (dt, odt) in dtypes.items():
        inputs = _inputs(h, w, 5, dt, odt, seed=1)
        ref = _reference(inputs, 5)
        out = cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=5, dilation=1, impl=PLUGIN_IMPL).float()
        errs[label] = float((out - ref).abs().max())
        del inputs, ref, out
        torch.cuda.empty_cache()
    kern["fp32_max_abs_err"] = errs["fp32"]
    kern["fp16_max_abs_err"] = max(errs["fp16"], errs["fp16_off32"])
    rows, failures = [], []
    sizes = ["1080p"] if args.quick else list(SIZES)
    for size in sizes:
        h, w = SIZES[size]
        for k in ([5] if args.quick else [5, 11]):
            for label, (dt, odt) in dtypes.items():
                inputs = _inputs(h, w, k, dt, odt)
                out = torch.empty_like(inputs[0])
                nbytes = _traffic(inputs)
                for impl in impls:
                    try:
                        ms = _time_launches(lambda i=inputs, o=out, k=k, impl=impl: cuda_op.adacof_synthesis_cuda(
                            *i, kernel_size=k, dilation=1, out=o, impl=impl))
                    except (RuntimeError, ValueError) as e:  # a timing that cannot run fails the step
                        failures.append(f"{size} K={k} {label} {impl}: {e}")
                        rows.append({"size": size, "K": k, "dtype": label, "impl": impl, "error": str(e)})
                        continue
                    gbs = nbytes / (ms * 1e-3) / 1e9
                    rows.append({"size": size, "K": k, "dtype": label, "impl": impl, "ms": ms, "gbs": gbs,
                                 "pct_peak": 100 * gbs / peak if peak else None, "pct_copy": 100 * gbs / copy})
                    print(f"  {size} K={k} {label:<10} {impl:<6} {ms:8.3f} ms {gbs:7.0f} GB/s", flush=True)
                del inputs, out
                torch.cuda.empty_cache()
    kern["timings"] = rows

    def row(impl, label, size="1080p", k=5):
        return next((r for r in rows if r["impl"] == impl and r["dtype"] == label and r["size"] == size
                     and r["K"] == k and "ms" in r), {})

    kern["ms_1080p_fp32"] = row(PLUGIN_IMPL, "fp32").get("ms")
    kern["ms_1080p_fp16"] = row(PLUGIN_IMPL, "fp16").get("ms")
    kern["ms_1080p_fp16_off32"] = row(PLUGIN_IMPL, "fp16_off32").get("ms")
    g = row(PLUGIN_IMPL, "fp16").get("gbs")
    kern["gbs_1080p_fp16"] = g
    kern["pct_peak_1080p_fp16"] = 100 * g / peak if g and peak else None
    for impl in impls[1:]:  # other kernels the library has (the original-style "naive"), for comparison
        other = row(impl, "fp32").get("ms")
        if other and kern["ms_1080p_fp32"]:
            kern[f"speedup_vs_{impl}_1080p_fp32"] = other / kern["ms_1080p_fp32"]
    bad = [k for k in HEADLINES if k.startswith("kernel.") and not _headline_ok(report, k)]
    if failures or bad or sass_problems:
        return "failed", {"timing_errors": failures, "out_of_bound": bad, "sass_problems": sass_problems}
    return "passed", {}


def _sass(args, kern: dict) -> list[str]:
    """kernel.sass: instructions per output pixel of each synthesis kernel in the carried plugin library (what
    TensorRT runs), by plugins.sass_report; returns issue 22's limits it breaks. A missing cuobjdump is recorded,
    not a failure (the figure is also measured where the library is built)."""
    from . import sass_report

    lib = args.build_dir / _libs.library_filename(_libs.PLUGIN_LIBRARY)
    try:
        kernels, source = sass_report.report(lib, compile_here=False, cache_dir=args.build_dir)
    except sass_report.ReportError as e:
        kern["sass"] = {"error": str(e)}
        return []
    problems = sass_report.problems(kernels)
    kern["sass"] = {"source": source, "problems": problems,
                    "kernels": [{"kernel": k.label, "per_pixel": k.per_pixel, "static": k.static,
                                 "spill_bytes": k.spill_bytes, "local_instructions": k.local_instructions}
                                for k in kernels]}
    return problems


def _headline_ok(report: dict, key: str) -> bool:
    return not [p for p in validate(report) if p.split(" ")[0] == key or p == f"missing key {key}"]


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


def _no_tf32() -> None:
    """fp32 means fp32: TF32 would round the U-Net's convolution inputs to 10-bit mantissas."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def step_end_to_end(args, report):
    e2e = report.setdefault("end_to_end", {})
    e2e["frames"] = f"{FRAMES[0]}, {FRAMES[1]} upscaled (bicubic) to 1920x1080"
    present = (args.authors / "sf_adacof_model.py").is_file()
    if not present:  # optional anchor: say so; nothing else depends on it
        e2e["authors_fp32_ms_1080p"] = e2e["psnr_fp16_vs_authors_fp32_db"] = None
        e2e["authors_code"] = (f"absent: {args.authors} has no sf_adacof_model.py (python -m plugins.gpu_check "
                               f"--extract-authors <clone of {AUTHORS_REPO}>/.git)")
    f0, f2 = _load_frames_1080p()
    if not args.gpu:  # what runs without a device: the subprocess's imports, the frames, the anchor's import
        rc, out = _run([sys.executable, "-m", "runtime.backends.torch_cuda_fp16", "--help"], timeout=120)
        details = {"fp16_subprocess_imports": "ok" if rc == 0 else _tail(out)}
        if present:
            details["authors_model_on_cpu"] = check_authors_state_dict(args.authors)
        return (NOT_RUN if rc == 0 else "failed"), details
    _no_tf32()
    with tempfile.TemporaryDirectory(prefix="gpu_check_e2e-") as scratch:  # not inside the carried build
        return _end_to_end_on_gpu(args, report, f0, f2, Path(scratch), present)


def _end_to_end_on_gpu(args, report, f0, f2, scratch: Path, present: bool):
    import numpy as np
    import torch

    from sfadacof.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from sfadacof.metrics import psnr

    e2e = report["end_to_end"]
    np.savez(scratch / "frames.npz", frame0=f0.numpy(), frame2=f2.numpy())
    details = {}
    # the project's FP16 path, in a subprocess (plugins may not import runtime); its default kernel is the plugin's
    rc, out = _run([sys.executable, "-m", "runtime.backends.torch_cuda_fp16", "--frames", str(scratch / "frames.npz"),
                    "--out", str(scratch / "fp16.npz"), "--iters", "10" if args.quick else "30"], timeout=240,
                   env={"SFADACOF_PLUGIN_DIR": str(args.build_dir)})
    line = next((ln for ln in out.splitlines()[::-1] if ln.startswith("{")), None)
    got = None
    if rc == 0 and line:
        e2e["project_fp16_ms_1080p"] = json.loads(line)["ms_per_frame_gpu"]
        with np.load(scratch / "fp16.npz") as z:
            got = torch.from_numpy(z["out"]).float()
    else:
        details["fp16_subprocess"] = _tail(out)
    # the reference: the project's PyTorch model in fp32 on the same frames
    net = load_checkpoint(None).model.cuda().eval()
    a0, a2 = f0.cuda(), f2.cuda()
    with torch.no_grad():
        ref = net(a0, a2).float().cpu()
        e2e["project_fp32_ms_1080p"] = _time_launches(lambda: net(a0, a2), target_ms=1500.0)
    if got is not None:
        e2e["psnr_fp16_vs_fp32_db"] = psnr(got.clamp(0, 1), ref.clamp(0, 1))
        e2e["max_abs_fp16_vs_fp32"] = float((got - ref).abs().max())
    if present:  # the authors' model, fp32, their CuPy kernel
        source = args.authors / "SOURCE.txt"
        e2e["authors_code"] = source.read_text().splitlines()[0] if source.is_file() else \
            f"present; {source} absent (extracted by hand?)"
        theirs = load_authors_model(args.authors).cuda().eval()
        sd = torch.load(DEFAULT_CHECKPOINT, map_location="cuda", weights_only=True)
        theirs.load_state_dict(sd["state_dict"] if "state_dict" in sd else sd, strict=True)
        with torch.no_grad():
            anchor = theirs(a0, a2).float().cpu()
            e2e["authors_fp32_ms_1080p"] = _time_launches(lambda: theirs(a0, a2), target_ms=1500.0)
        e2e["psnr_fp32_vs_authors_fp32_db"] = psnr(ref.clamp(0, 1), anchor.clamp(0, 1))
        if got is not None:
            e2e["psnr_fp16_vs_authors_fp32_db"] = psnr(got.clamp(0, 1), anchor.clamp(0, 1))
            e2e["speedup_fp16_vs_authors"] = e2e["authors_fp32_ms_1080p"] / e2e["project_fp16_ms_1080p"]
    bad = [k for k in list(HEADLINES) + list(ANCHOR) if k.startswith("end_to_end.") and not _headline_ok(report, k)]
    return ("failed" if bad else "passed"), {**details, "out_of_bound": bad}


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


def build_parser() -> argparse.ArgumentParser:
    from sfadacof.cli_args import ArgumentParser

    ap = ArgumentParser(prog="python -m plugins.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="no GPU: print the plan and the headline keys' bounds")
    ap.add_argument("--rehearse", action="store_true",
                    help="no GPU: build what the device needs here, then run every step that needs no GPU in a "
                         "stand-in of the device (plugins/device_image.txt) and print the device call")
    ap.add_argument("--stand-in", action="store_true", help=argparse.SUPPRESS)  # the rehearsal's device run
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "gpu", help="where the results go")
    ap.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD, help="CMake build directory of the GPU build")
    ap.add_argument("--tensorrt-include", type=Path, default=DEFAULT_TRT_INCLUDE,
                    help="TensorRT 10.x headers for building the plugin and harness (--rehearse)")
    ap.add_argument("--authors", type=Path, default=DEFAULT_AUTHORS,
                    help="the authors' code (see --extract-authors), for the comparison against their kernel")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), metavar="STEP",
                    help=f"the steps to run, of {', '.join(STEPS)}")
    ap.add_argument("--quick", action="store_true", help="1080p and K = 5 only, fewer iterations")
    ap.add_argument("--tests-timeout", type=float, default=150.0, help="seconds allowed to the GPU test run")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="seconds the whole run may take: later steps' subprocess timeouts are cut to what is left "
                         "(the device call's timeout_s is 450)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="build jobs (--rehearse)")
    ap.add_argument("--extract-authors", type=Path, metavar="GIT_DIR",
                    help=f"copy the files the run needs from a clone of {AUTHORS_REPO} into --authors, then exit")
    return ap


def parse_args(argv):
    args = build_parser().parse_args(argv)
    args.build_dir = args.build_dir.resolve()
    args.authors = args.authors.resolve()
    return args


def dry_run(args) -> int:
    print("gpu_check dry run (no GPU used)")
    problem = build_problem(args.build_dir, DEVICE_ARCH)
    print(f"build for sm_{DEVICE_ARCH}: {args.build_dir} ({problem or 'ready'}; made by --rehearse, never on the "
          "device)")
    print(f"authors' code: {args.authors} ({'present' if (args.authors / 'sf_adacof_model.py').is_file() else 'ABSENT'})")
    print("steps:", ", ".join(args.steps))
    if (args.authors / "sf_adacof_model.py").is_file():
        print("authors' model on CPU:", check_authors_state_dict(args.authors))
    print(f"report: {args.out_dir}/<date>-<gpu>.json; headline keys and their bounds:")
    for key, (step, _t, words, _ok) in HEADLINES.items():
        print(f"  {key}: {words} ({step})")
    for key, (words, _ok) in ANCHOR.items():
        print(f"  {key}: {words} (end_to_end; null when the authors' code is absent)")
    return 0


class _Signal(Exception):
    pass


def _raise_signal(signum, _frame):
    raise _Signal(signum)


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
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_signal)
    try:
        if args.rehearse:
            from . import gpu_rehearse

            return gpu_rehearse.rehearse(args)
        return run(args)
    except KeyboardInterrupt:
        print("gpu_check: interrupted (SIGINT)", file=sys.stderr)
        return 128 + signal.SIGINT
    except _Signal as e:
        signum = e.args[0]
        print(f"gpu_check: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


def run(args) -> int:
    from ._libs import cuda_torch_problem

    problem = cuda_torch_problem("gpu_check")
    args.gpu = problem is None
    if problem and not args.stand_in:
        print(f"{problem}; --dry-run and --rehearse need none", file=sys.stderr)
        return 2
    import torch

    _DEADLINE[0] = time.monotonic() + args.budget_s
    args.arch = _device_arch() if args.gpu else DEVICE_ARCH
    problem = build_problem(args.build_dir, args.arch)
    if problem:
        print(f"gpu_check: {problem}: build it here first with `python -m plugins.gpu_check --rehearse` and carry "
              f"{args.build_dir.name} (a build on the device overruns the call)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if args.gpu else "none (stand-in without a GPU)"
    report: dict = {"device": name, "date": _dt.date.today().isoformat(), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "arch": args.arch, "python": sys.version.split()[0], "steps": {}}
    path = args.out_dir / f"{report['date']}-{_gpu_slug(name) if args.gpu else 'stand-in'}.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for key in list(HEADLINES) + list(ANCHOR):  # every key exists from the start (null until measured)
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
    problems = stand_in_problems(report) if not args.gpu else validate(report)
    report["problems"] = problems
    _write(report, path)
    print(json.dumps({k: _get(report, k) for k in HEADLINES}, indent=1, default=str))
    for p in problems:
        print("problem:", p)
    print(f"wrote {path}")
    want = {"passed"} if args.gpu else {"passed", NOT_RUN}
    return 0 if all(s["status"] in want for s in report["steps"].values()) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
