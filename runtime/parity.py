"""Parity of an exported graph with the PyTorch model, through polygraphy, on real frames.

    python -m runtime.parity PAIRS_OR_FRAMES --onnx MODEL.onnx [--checkpoint CKPT] [-o OUT_DIR]
                             [--max-pairs N] [--atol 1e-4] [--rtol 0] [--no-polygraphy] [--benchmark [WxH]]

PAIRS_OR_FRAMES: a pairs folder (one subfolder per pair with 2 images, or 3 with the ground truth in the middle,
as runtime.infer takes) or a folder of sequential frames (consecutive frames form the pairs). Images are read
with sfadacof.images (8/16-bit PNG, JPEG, ...), float32 RGB in [0, 1].

Writes into OUT_DIR (default ./parity_<onnx name>):
  * inputs.json     -- polygraphy `--load-inputs` file: a list of feed dicts {frame0, frame2} (1 x 3 x H x W each,
                       one per pair; sizes may differ between pairs), written with polygraphy.json.save_json;
  * reference.json  -- polygraphy `--load-outputs` file: RunResults of a runner named "pytorch" holding frame1 of
                       the PyTorch model (float32, CPU) for each feed;
  * parity.json     -- per-pair max/mean |ORT - PyTorch|, the polygraphy command, its exit status and output tail,
                       and the TensorRT command for a GPU machine;
  * polygraphy.log  -- polygraphy's full output.
Then runs polygraphy against those files:
  * standard-op graph:  polygraphy run MODEL.onnx --onnxrt --load-inputs inputs.json --load-outputs reference.json
                        --atol 1e-4 --rtol 0
  * plugin-form graph:  python -m runtime.backends.polygraphy_ort run MODEL.onnx --onnxrt ... (the same polygraphy CLI with the
                        custom op registered in its ORT sessions: plain polygraphy --onnxrt cannot load custom ops)
and also compares through runtime.backends.ort_backend (the backend runtime.infer uses). Exit status 1 when either
comparison fails the tolerance.

Tolerance: max |difference| <= 1e-4 per element (polygraphy fails an element only when BOTH its absolute difference
exceeds --atol and its relative difference exceeds --rtol; --rtol 0 makes the check purely absolute). Both sides
are float32 on the same inputs; they differ only in summation order inside the ~130 convolutions (ORT's MLAS vs
PyTorch's oneDNN/ATen kernels) and in re-associated products in the synthesis, i.e. float32 rounding: measured
~1e-7..1e-6 on [0, 1] frames. 1e-4 keeps a 100x margin over that while any real defect (a floor instead of a
truncation, a wrong tap order, a missed clamp, a padding mismatch) shows up as 1e-2..1e-1. One rounding effect
can exceed it legitimately: the op truncates offsets, and at a NEGATIVE integer offset the bilinear extrapolation
is discontinuous (fraction jumps from -1 to 0), so an offset within ~1e-6 of such an integer can land on either
side in the two runtimes. That moves one tap of one pixel by weight x (pixel difference); it shows as a single
outlier, not a pattern, and the per-pair report gives the 99.99th percentile next to the max to tell the two apart.

TensorRT (on a machine with TensorRT and the plugin built): the same inputs.json/reference.json serve
    polygraphy run MODEL.onnx --trt --plugins LIBDIR/libsfadacof_trt_register.so --load-inputs inputs.json
        --load-outputs reference.json --atol 1e-4 --rtol 0 --trt-min-shapes ... --trt-opt-shapes ... --trt-max-shapes ...
(printed with the shape flags for the actual frame sizes, and LIBDIR resolved where plugins/_libs.py finds the
library: $SFADACOF_PLUGIN_DIR, build/ of `python -m plugins.build`, or plugins/ where `pip install` puts it). libsfadacof_trt_register.so is the plugin's variant that
registers its creator when polygraphy ctypes-loads it (plugins/README.md). An fp16 graph (export.fp16_graph) is
built with --strongly-typed and compared with --atol 2e-2, since FP16 trunk activations move offsets by ~1e-3 px.

`--benchmark [WxH]` (default 960x540) also measures ORT and PyTorch CPU seconds per frame in this one process,
interleaved (torch, ort, torch, ort, ...) so load from other processes hits both alike (`--bench-onnx OTHER.onnx`
adds more graphs to the same run): see benchmark_graphs / benchmark_ort_vs_torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command
from sfadacof.outputs import check_outputs, json_with_key, output_folder

from sfadacof.images import hwc_to_nchw, nchw_to_hwc, to_uint8
from sfadacof.outputs import atomic_write_bytes
from sfadacof.sizes import parse_size

from .accuracy import abs_difference
from .pairs import PairSpec, discover_pairs, load_pair, root_images
from .report import write_json

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 0.0
FP16_ATOL = 2e-2
REFERENCE_RUNNER = "pytorch"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Pair:
    name: str
    frame0: np.ndarray  # (1, 3, H, W) float32
    frame2: np.ndarray


def load_pairs(src: str | os.PathLike, max_pairs: int | None = None) -> list[Pair]:
    """Pairs from a pairs folder (subfolders) or a folder of sequential frames (consecutive frames), loaded and
    checked as runtime.infer loads them (runtime.pairs.load_pair)."""
    root = Path(src)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected a pairs folder or a folder of frames)")
    frames = root_images(root)
    if frames:
        if len(frames) < 2:
            raise UserError(f"{root}: a frame sequence needs at least 2 images, found {len(frames)}")
        specs = [PairSpec(f"{a.stem}_{b.stem}", a, b) for a, b in zip(frames, frames[1:])]
    else:
        specs = [PairSpec(p.name, p.frame0, p.frame2) for p in discover_pairs(root)]  # ground truth not needed
    out = []
    for spec in specs[:max_pairs] if max_pairs else specs:
        i0, i2, _ = load_pair(spec)
        out.append(Pair(spec.name, hwc_to_nchw(i0.rgb), hwc_to_nchw(i2.rgb)))
    return out


def onnx_metadata(onnx_path: Path) -> dict[str, str]:
    import onnx

    try:
        m = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # DecodeError, OSError
        raise UserError(f"{onnx_path}: not a readable ONNX model ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    return {p.key: p.value for p in m.metadata_props}


def load_reference_model(onnx_path: Path, checkpoint: Path | None):
    """The PyTorch model the graph was exported from: the checkpoint (default: the shipped one) with the
    variant/K/dilation recorded in the graph; refuses a checkpoint whose sha256 differs from the graph's."""
    from sfadacof.checkpoint import load_checkpoint

    meta = onnx_metadata(onnx_path)
    kw = {}
    if "variant" in meta:
        kw = {"variant": meta["variant"], "kernel_size": int(meta["kernel_size"]), "dilation": int(meta["dilation"])}
    loaded = load_checkpoint(checkpoint, **kw)
    want = meta.get("checkpoint_sha256")
    if want and want != "unknown" and want != loaded.sha256:
        raise UserError(f"{onnx_path}: exported from checkpoint sha256 {want[:12]}..., but {loaded.path} is "
                        f"{loaded.sha256[:12]}...; pass the matching --checkpoint")
    return loaded


def reference_outputs(model, pairs: list[Pair]) -> list[np.ndarray]:
    import torch

    outs = []
    with torch.inference_mode():
        for p in pairs:
            outs.append(model(torch.from_numpy(p.frame0), torch.from_numpy(p.frame2)).numpy())
    return outs


def write_polygraphy_files(pairs: list[Pair], refs: list[np.ndarray], out_dir: Path,
                           input_names: tuple[str, str] = ("frame0", "frame2"),
                           output_name: str = "frame1") -> tuple[Path, Path]:
    """inputs.json (--load-inputs) and reference.json (--load-outputs), each written atomically."""
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json
    from polygraphy.logger import G_LOGGER

    inputs_path, ref_path = out_dir / "inputs.json", out_dir / "reference.json"
    feeds = [{input_names[0]: p.frame0, input_names[1]: p.frame2} for p in pairs]
    results = RunResults()
    results.append((REFERENCE_RUNNER, [IterationResult({output_name: r}, runner_name=REFERENCE_RUNNER) for r in refs]))
    # polygraphy logs "Saving ... to <temp name>" at INFO: noise naming a file that is renamed a moment later
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        atomic_write_bytes(inputs_path, lambda tmp: save_json(feeds, str(tmp)))
        atomic_write_bytes(ref_path, lambda tmp: results.save(str(tmp)))
    return inputs_path, ref_path


def _polygraphy_executable() -> list[str]:
    beside = Path(sys.executable).parent / "polygraphy"
    found = str(beside) if beside.is_file() else shutil.which("polygraphy")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from polygraphy.tools import main; sys.argv[0] = 'polygraphy'; "
                                  "sys.exit(main())"]


def polygraphy_onnxrt_command(onnx_path: Path, inputs: Path, ref: Path, atol: float, rtol: float,
                              custom_op: bool) -> list[str]:
    head = [sys.executable, "-m", "runtime.backends.polygraphy_ort"] if custom_op else _polygraphy_executable()
    return head + ["run", str(onnx_path), "--onnxrt", "--providers", "cpu", "--load-inputs", str(inputs),
                   "--load-outputs", str(ref), "--atol", repr(atol), "--rtol", repr(rtol)]


def trt_shape_flags(pairs: list[Pair]) -> list[str]:
    shapes = [p.frame0.shape for p in pairs]
    lo = [min(s[i] for s in shapes) for i in range(4)]
    hi = [max(s[i] for s in shapes) for i in range(4)]
    fmt = lambda s: ",".join(str(x) for x in s)  # noqa: E731
    flags = []
    for flag, s in (("--trt-min-shapes", lo), ("--trt-opt-shapes", hi), ("--trt-max-shapes", hi)):
        flags += [flag, f"frame0:[{fmt(s)}]", f"frame2:[{fmt(s)}]"]
    return flags


def register_library_path() -> tuple[Path, bool]:
    """(path, built): where the self-registering plugin library is (plugins/_libs.py's search: $SFADACOF_PLUGIN_DIR,
    build/, plugins/), absolute so the printed command works from any folder; where it is not built here, the path
    `pip install` gives it on a machine with TensorRT (plugins/), and False."""
    from plugins import _libs

    found = _libs.find_library(_libs.REGISTER_LIBRARY)
    if found is not None:
        return found.resolve(), True
    return _libs.PACKAGE_DIR / _libs.library_filename(_libs.REGISTER_LIBRARY), False


def polygraphy_trt_command(onnx_path: Path, inputs: Path, ref: Path, pairs: list[Pair], atol: float, rtol: float,
                           custom_op: bool, fp16: bool = False) -> list[str]:
    cmd = ["polygraphy", "run", str(onnx_path), "--trt"]
    if custom_op:
        cmd += ["--plugins", str(register_library_path()[0])]
    if fp16:
        # the graph's own types decide, as in runtime.build_engine: --fp16 (a weakly typed build on 10.x) could move
        # the offset heads to fp16, and 11.x has no such flag
        cmd += ["--strongly-typed"]
    cmd += trt_shape_flags(pairs) + ["--load-inputs", str(inputs), "--load-outputs", str(ref),
                                     "--atol", repr(FP16_ATOL if fp16 else atol), "--rtol", repr(rtol)]
    return cmd


def run_polygraphy(cmd: list[str], log_path: Path) -> tuple[int, str]:
    env = dict(os.environ)
    # the hook module (runtime.backends.polygraphy_ort) must import from this checkout even when it is not pip-installed
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)  # caller's cwd: paths stay as given
    except OSError as e:
        raise UserError(f"{cmd[0]}: cannot run polygraphy ({e.strerror or e})") from None
    text = r.stdout + r.stderr
    atomic_write_bytes(log_path, lambda tmp: tmp.write_text(text))
    return r.returncode, text


def compare(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """runtime.accuracy's |difference|, summarised for parity: max, mean, the 99.99th percentile (a single outlier
    at an integer offset vs a pattern, see the module doc) and the count over 1e-4."""
    d = abs_difference(out, ref)
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "p9999_abs": float(np.quantile(d, 0.9999)),
            "count_above_1e-4": int((d > 1e-4).sum())}


def benchmark_graphs(onnx_paths: list[str | os.PathLike], model, width: int = 960, height: int = 540,
                     iters: int = 3, warmup: int = 1, threads: int | None = None,
                     frames: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Seconds per frame (batch 1) of the PyTorch model and of each graph in ORT (OrtBackend) on CPU, measured in
    one process with the same thread count and interleaved (torch, graph 1, graph 2, torch, ...) so background load
    affects all alike. Medians over `iters` after `warmup` rounds.

    Returns {"torch_s", "torch_runs_s", "graphs": [{"onnx", "synthesis", "ort_s", "ort_runs_s", "ort_over_torch"}],
    size, threads}. `frames`: a (1, 3, H, W) float32 pair; default: a seeded blocky random pair."""
    import torch

    from .backends.base import available_cores
    from .backends.ort_backend import OrtBackend

    threads = threads or available_cores()
    if frames is None:
        rng = np.random.default_rng(0)
        base = rng.random((1, 3, height // 8 + 1, width // 8 + 1), dtype=np.float32)
        f0 = np.repeat(np.repeat(base, 8, axis=2), 8, axis=3)[:, :, :height, :width]
        frames = (np.ascontiguousarray(f0), np.ascontiguousarray(np.roll(f0, 4, axis=3)))
    f0, f2 = frames
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    backends = [OrtBackend(p, threads=threads) for p in onnx_paths]
    t_torch: list[float] = []
    t_ort: list[list[float]] = [[] for _ in backends]
    try:
        with torch.inference_mode():
            x0, x2 = torch.from_numpy(f0), torch.from_numpy(f2)
            for i in range(warmup + iters):
                t = time.perf_counter()
                model(x0, x2)
                dt = time.perf_counter() - t
                if i >= warmup:
                    t_torch.append(dt)
                for b, runs in zip(backends, t_ort):
                    t = time.perf_counter()
                    b.infer(f0, f2)
                    dt = time.perf_counter() - t
                    if i >= warmup:
                        runs.append(dt)
        graphs = []
        for b, runs in zip(backends, t_ort):
            d = b.describe()
            graphs.append({"onnx": str(b.onnx_path), "synthesis": d["synthesis"], "providers": d["providers"],
                           "ort_s": float(np.median(runs)), "ort_runs_s": runs})
    finally:
        torch.set_num_threads(prev_threads)
        for b in backends:
            b.close()
    med_t = float(np.median(t_torch))
    for g in graphs:
        g["ort_over_torch"] = g["ort_s"] / med_t
    return {"width": f0.shape[3], "height": f0.shape[2], "threads": threads, "iters": iters, "warmup": warmup,
            "torch_s": med_t, "torch_runs_s": t_torch, "graphs": graphs}


def benchmark_ort_vs_torch(onnx_path: str | os.PathLike, model, width: int = 960, height: int = 540,
                           iters: int = 3, warmup: int = 1, threads: int | None = None,
                           frames: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """benchmark_graphs for one graph, flattened: {"torch_s", "ort_s", "ort_over_torch", run lists, ...}."""
    r = benchmark_graphs([onnx_path], model, width, height, iters, warmup, threads, frames)
    g = r.pop("graphs")[0]
    return {**r, **g}


def resize_pair(pair: Pair, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The pair's frames resized (bilinear, Pillow) to width x height: real content for timing. Content matters
    for PyTorch on CPU: random inputs/weights produce denormal activations that slow its kernels several-fold."""
    from PIL import Image

    def one(x: np.ndarray) -> np.ndarray:
        img = Image.fromarray(to_uint8(nchw_to_hwc(x))).resize((width, height), Image.BILINEAR)
        return hwc_to_nchw(np.asarray(img, dtype=np.float32) / 255.0)

    return one(pair.frame0), one(pair.frame2)


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.ArgumentParser(prog="python -m runtime.parity", description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="pairs folder or folder of sequential frames")
    p.add_argument("--onnx", type=Path, required=True, help="exported graph (either synthesis form)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint the graph came from (default: shipped)")
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default ./parity_<onnx name>)")
    p.add_argument("--max-pairs", type=cli_args.nonnegative_int, default=4, help="use at most this many pairs (default 4; 0 = all)")
    p.add_argument("--atol", type=cli_args.nonnegative_float, default=DEFAULT_ATOL, help=f"absolute tolerance (default {DEFAULT_ATOL})")
    p.add_argument("--rtol", type=cli_args.nonnegative_float, default=DEFAULT_RTOL, help=f"relative tolerance (default {DEFAULT_RTOL}: "
                                                                    "absolute check only)")
    p.add_argument("--no-polygraphy", action="store_true", help="only the in-process ORT comparison")
    p.add_argument("--benchmark", nargs="?", const="960x540", default=None, metavar="WxH",
                   help="also time ORT vs PyTorch on CPU at this size (default 960x540)")
    p.add_argument("--bench-iters", type=cli_args.positive_int, default=3, help="timed runs per backend in --benchmark")
    p.add_argument("--bench-onnx", type=Path, action="append", default=[], metavar="OTHER.onnx",
                   help="also time this graph in the same benchmark (repeatable; e.g. the other synthesis form)")
    p.add_argument("--threads", type=cli_args.positive_int, default=None, help="threads for ORT and torch (default: all cores)")
    return p


PARITY_FILES = ("inputs.json", "reference.json", "polygraphy.log", "parity.json")


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    if not args.onnx.is_file():
        raise UserError(f"{args.onnx}: ONNX model not found")
    from .backends.ort_backend import OrtBackend, inspect_graph

    custom_op, fp16 = inspect_graph(args.onnx)
    out_dir = args.out or Path.cwd() / f"parity_{args.onnx.stem}"
    # the files it writes there may replace only an earlier parity run's (its parity.json marks the folder)
    earlier_run = json_with_key("onnx")
    check_outputs([args.src, args.onnx, args.checkpoint, *args.bench_onnx],
                  [output_folder("-o", out_dir, PARITY_FILES, ours=lambda f: earlier_run(f.parent / "parity.json"))])
    pairs = load_pairs(args.src, args.max_pairs or None)
    loaded = load_reference_model(args.onnx, args.checkpoint)
    refs = reference_outputs(loaded.model, pairs)
    inputs_path, ref_path = write_polygraphy_files(pairs, refs, out_dir)
    report: dict = {"onnx": str(args.onnx), "synthesis": "plugin" if custom_op else "onnx",
                    "checkpoint": str(loaded.path), "checkpoint_sha256": loaded.sha256, "atol": args.atol,
                    "rtol": args.rtol, "inputs": str(inputs_path), "reference": str(ref_path), "pairs": []}
    failed = []
    with OrtBackend(args.onnx, threads=args.threads) as backend:
        for p, ref in zip(pairs, refs):
            row = {"pair": p.name, "size": f"{p.frame0.shape[3]}x{p.frame0.shape[2]}",
                   **compare(backend.infer(p.frame0, p.frame2), ref)}
            report["pairs"].append(row)
            print(f"{p.name} {row['size']}: max|ORT-PyTorch| {row['max_abs']:.3g}, mean {row['mean_abs']:.3g}, "
                  f"p99.99 {row['p9999_abs']:.3g}")
            if row["max_abs"] > args.atol:
                failed.append(f"{p.name}: max |diff| {row['max_abs']:.3g} > {args.atol:g}")
    trt_cmd = polygraphy_trt_command(args.onnx, inputs_path, ref_path, pairs, args.atol, args.rtol, custom_op)
    report["tensorrt_command"] = " ".join(trt_cmd)
    if not args.no_polygraphy:
        cmd = polygraphy_onnxrt_command(args.onnx, inputs_path, ref_path, args.atol, args.rtol, custom_op)
        shown = " ".join(["python", *cmd[1:]] if cmd[0] == sys.executable else cmd)
        print(f"$ {shown}")
        from sfadacof.progress import heartbeat

        with heartbeat("polygraphy"):  # its output is captured into the log: lines meanwhile
            rc, text = run_polygraphy(cmd, out_dir / "polygraphy.log")
        keys = ("Minimum Required Tolerance", "Accuracy Summary", "FAILED", "Error:", "error:", "[E]", "[!]")
        tail = [ln.strip() for ln in text.splitlines()
                if any(k in ln for k in keys) or (ln.startswith("[I] PASSED") or ln.startswith("[I] FAILED"))]
        if rc != 0 and not tail:  # e.g. a traceback from ORT: its last lines say what went wrong
            tail = [ln.strip() for ln in text.strip().splitlines()[-3:]]
        for ln in tail[-12:]:
            print(f"  {ln}")
        report["polygraphy"] = {"command": shown, "exit_status": rc, "summary": tail[-12:],
                                "log": str(out_dir / "polygraphy.log")}
        if rc != 0:
            failed.append(f"polygraphy exited with {rc} (see {out_dir / 'polygraphy.log'})")
    if args.benchmark:
        w, h = parse_size(args.benchmark, "--benchmark")
        for extra in args.bench_onnx:
            if not extra.is_file():
                raise UserError(f"{extra}: ONNX model not found (--bench-onnx)")
        b = benchmark_graphs([args.onnx, *args.bench_onnx], loaded.model, w, h, iters=args.bench_iters,
                             threads=args.threads, frames=resize_pair(pairs[0], w, h))
        b["frames"] = f"{pairs[0].name} resized to {w}x{h}"
        report["benchmark"] = b
        print(f"{w}x{h} CPU, {b['threads']} threads, median of {b['iters']}: PyTorch {b['torch_s']:.2f} s/frame")
        for g in b["graphs"]:
            print(f"  ORT {g['synthesis']} form ({Path(g['onnx']).name}): {g['ort_s']:.2f} s/frame, "
                  f"ORT/PyTorch {g['ort_over_torch']:.2f}")
    print(f"TensorRT: $ {report['tensorrt_command']}")
    if custom_op and not register_library_path()[1]:
        print(f"note: {register_library_path()[0].name} is not built here; on the TensorRT machine `pip install .` "
              "(or `python -m plugins.build`) builds it where the command says, or set SFADACOF_PLUGIN_DIR")
    report["passed"] = not failed
    report["failures"] = failed
    write_json(out_dir / "parity.json", report)
    if fp16:
        print("note: an fp16 graph; compare it with --atol 2e-2 (or runtime.accuracy's PSNR threshold)")
    if failed:
        print("parity FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    print(f"parity passed (atol {args.atol:g}, rtol {args.rtol:g}); files in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
