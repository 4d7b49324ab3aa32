"""`python -m runtime.batch`: pair folders and videos, any mix, on a Ray cluster -- fault-tolerant and resumable.

    python -m runtime.batch SRC... -o OUT [--workers N] [--ray-address ADDR] [--backend ...] [--factor 2|4|8]

Output layout (the same files `runtime.infer` writes, frame for frame):
  * a pairs folder SRC  -> OUT/<basename of SRC>/<pair name>.png   (= runtime.infer SRC -o OUT/<basename>)
  * a video clip.mp4    -> OUT/clip.mp4                          (= runtime.infer clip.mp4 -o OUT/clip.mp4 --factor F)
                           or, with --video-output frames, OUT/clip/frame_NNNNNN.png (= runtime.infer ... -o OUT/clip)

Engine: Ray (https://docs.ray.io). Without --ray-address a local cluster of --workers CPUs starts and stops with the
command; with one, the command joins that cluster (every node needs this package installed, and the inputs and OUT on
a shared filesystem). Work units are Ray tasks; each worker process builds its backend (model, session or engine)
once, on the first unit it runs, and keeps it for every later unit (on its own GPU where the backend uses one: one GPU
per task).

Units: a pairs folder is cut into chunks of --chunk-pairs pairs; each pair's PNG is written atomically where
runtime.infer writes it. A video is cut into spans of --chunk-frames input frames with one frame of overlap (the
span [a, b] computes the in-between frames of the pairs (a, a+1) ... (b-1, b)); a unit writes its frames losslessly
to OUT/.<clip>.batch/ (atomically, one file per span), and when every span is done the driver writes the video with
runtime.video's own writer -- timestamps from the source, audio copied -- reading the in-between frames from there.
Scene cuts (--scene-cut) are decided per pair, so a span boundary changes nothing.

Faults: a worker process that dies (SIGKILL, out of memory, a lost node) fails its unit's task, and Ray runs the task
again on another worker (up to --retries times); nothing written is partial, so the job still ends complete. A unit
that fails on bad input fails alone: one line in the summary and a non-zero exit at the end, the others complete --
a source that cannot even be planned (a 0-byte video) too. A failed write (full disk) fails its unit with the output
named; it is not a lost worker, so it is not retried. Outputs are checked like runtime.infer's before the cluster
starts (sfadacof.outputs.check_outputs on every path the job derives: OUT/<source>/..., never inside a source, never
over a file this project did not write; a clip's frames folder must be new or empty). Ctrl-C, SIGTERM and SIGHUP
stop the cluster and remove the staging (exit 128 + N); a local cluster also dies with a SIGKILLed driver
(runtime.ray_watchdog).
Resume: re-running the same command skips every output already complete (a PNG, a finished video, a finished span:
all written atomically, so a file under its final name is complete) and computes only the rest. Only this project's
own files count (a PNG's and a video's sfadacof mark, sfadacof.outputs): a user's OUT/clip.mp4 fails that unit alone,
named, and is left as it is.

Progress (units done, frames/s, ETA) goes to stderr; OUT/batch_summary.json holds one entry per unit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sfadacof import cli_args
from sfadacof.cli_args import command_parser, int_range
from sfadacof.progress import Progress
from sfadacof.errors import UserError, cli_command, one_line, os_error_line
from sfadacof.images import memory_budget_bytes, set_memory_budget
from sfadacof.outputs import check_outputs, clean_stale, output_folder

from .backends.registry import BackendOptions, add_backend_arguments, backend_inputs, backend_options
from .report import write_json
from .infer import VIDEO_EXTENSIONS

SUMMARY = "batch_summary.json"


@dataclass(frozen=True)
class Unit:
    """One Ray task: a chunk of a pairs folder, or a span of a video's input frames."""

    id: str
    kind: str                       # "pairs" | "video"
    src: str
    out: str                        # pairs: the output folder; video: the span file
    names: tuple[str, ...] = ()     # pairs: pair names (PairSpec.name)
    start: int = 0                  # video: first input frame of the span
    stop: int = 0                   # video: last input frame (the next span starts here)
    frames: int = 0                 # frames this unit produces (for progress)


@dataclass
class Job:
    units: list[Unit] = field(default_factory=list)
    videos: list[dict] = field(default_factory=list)   # {src, out, stage, spans} to assemble when their spans are done
    skipped: list[str] = field(default_factory=list)   # outputs already complete
    failed: list[dict] = field(default_factory=list)   # sources refused while planning (each fails alone)
    outputs: list = field(default_factory=list)        # sfadacof.outputs.Output: every path the job writes


# -- planning ------------------------------------------------------------------------------------------------------

def _is_video(src: Path) -> bool:
    return src.is_file() and src.suffix.lower() in VIDEO_EXTENSIONS


def plan(sources: list[Path], out: Path, *, chunk_pairs: int, chunk_frames: int, factor: int,
         video_output: str = "mp4") -> Job:
    """Cut the sources into units. A source that cannot be read (a 0-byte video, a folder with a broken pair) fails
    alone: one entry in job.failed, the others planned. job.outputs: every path the job will write, for
    check_outputs (which the caller runs before any work)."""
    from sfadacof.outputs import json_with_key, output_folder

    job = Job()
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"two sources share the name {dupes[0]!r}: their outputs would collide in {out}")
    stems = [s.stem for s in sources if _is_video(s)] if video_output == "frames" else []
    clash = sorted({n for n in stems if stems.count(n) > 1 or any(s.name == n and s.is_dir() for s in sources)})
    if clash:
        raise UserError(f"two sources would both write {out / clash[0]} (--video-output frames names a clip's "
                        "folder by its stem)")
    job.outputs.append(output_folder("-o", out, [SUMMARY], ours=json_with_key("units")))
    for src in sources:
        try:
            _plan_source(job, src, out, chunk_pairs=chunk_pairs, chunk_frames=chunk_frames, factor=factor,
                         video_output=video_output)
        except UserError as e:
            job.failed.append({"unit": src.name, "status": "failed", "error": str(e)})
    return job


def _plan_source(job: Job, src: Path, out: Path, *, chunk_pairs: int, chunk_frames: int, factor: int,
                 video_output: str) -> None:
    from sfadacof.outputs import output_file, output_folder, png_is_ours, video_is_ours
    from sfadacof.video_decode import count_frames

    from .pairs import discover_pairs

    if _is_video(src):
        # mp4: OUT/clip.mp4, written whole and renamed (complete when present); frames: OUT/clip/ as
        # runtime.infer clip.mp4 -o OUT/clip writes it (renamed into place whole: complete when present)
        dst = out / (src.name if video_output == "mp4" else src.stem)
        if video_output == "mp4":
            job.outputs.append(output_file("-o", dst))  # an input under that name: check_outputs refuses the job
            complete = dst.is_file() and video_is_ours(dst)
            if dst.exists() and not complete:
                # a user's file (or one cut short by a foreign writer): neither taken for done nor replaced
                raise UserError(f"{dst}: exists and is not a video this command wrote; it is left as it is "
                                "(move it away, or choose another output folder)")
        else:
            complete = dst.is_dir() and any(dst.iterdir()) and all(
                f.name.startswith("frame_") and png_is_ours(f) for f in dst.iterdir())
            # not complete: absent or empty, or refused -- never emptied (it may hold the user's files)
            job.outputs.append(output_folder("-o", dst) if complete else output_folder("-o", dst, whole=True))
        if complete:
            job.skipped.append(str(dst))
            return
        n = count_frames(src)
        if n < 2:
            raise UserError(f"{src}: needs at least 2 video frames, found {n}")
        stage = out / f".{src.name}.batch"
        spans = []
        for a in range(0, n - 1, chunk_frames):
            b = min(a + chunk_frames, n - 1)
            span = stage / f"span_{a:07d}_{b:07d}.npz"
            spans.append(str(span))
            if not span.is_file():
                job.units.append(Unit(id=f"{src.name}[{a}:{b}]", kind="video", src=str(src), out=str(span),
                                      start=a, stop=b, frames=(b - a) * (factor - 1)))
        job.outputs.append(output_folder("-o", stage))
        job.videos.append({"src": str(src), "out": str(dst), "stage": str(stage), "spans": spans})
    elif src.is_dir():
        dst = out / src.name
        pairs = discover_pairs(src)
        # a PNG under its final name is complete (written atomically) if this project wrote it; any other file
        # there is refused by check_outputs rather than taken for an output or replaced
        job.outputs.append(output_folder("-o", dst, [f"{p.name}.png" for p in pairs], ours=png_is_ours))
        todo = [p.name for p in pairs if not (dst / f"{p.name}.png").is_file()]
        job.skipped += [str(dst / f"{p.name}.png") for p in pairs if (dst / f"{p.name}.png").is_file()]
        for i in range(0, len(todo), chunk_pairs):
            chunk = tuple(todo[i:i + chunk_pairs])
            job.units.append(Unit(id=f"{src.name}[{i}:{i + len(chunk)}]", kind="pairs", src=str(src),
                                  out=str(dst), names=chunk, frames=len(chunk)))
    else:
        raise UserError(f"{src}: not a pairs folder or a video ({', '.join(sorted(VIDEO_EXTENSIONS))})")


# -- the worker side -----------------------------------------------------------------------------------------------

_backend_cache: dict[tuple, object] = {}  # per worker process: one backend for the process's lifetime


def _backend(name: str, options: BackendOptions):
    from .backends.registry import create_backend

    key = (name, tuple(sorted((k, str(v)) for k, v in asdict(options).items())))
    if key not in _backend_cache:
        # units may be videos: their (larger) memory estimate serves pair folders too
        _backend_cache[key] = create_backend(name, options, video=True)
    return _backend_cache[key]


def run_unit(unit: Unit, backend_name: str, options: BackendOptions, factor: int, scene_cut: float | None,
             max_pixels: int | None) -> dict:
    """Run one unit in this process; returns its summary entry. UserError -> {"error": one line}."""
    t0 = time.perf_counter()
    try:
        backend = _backend(backend_name, options)
        if unit.kind == "pairs":
            from .pairs import discover_pairs, run_pairs

            wanted = set(unit.names)
            specs = [p for p in discover_pairs(unit.src) if p.name in wanted]
            report = run_pairs(backend, specs, Path(unit.out), max_pixels=max_pixels)
            done = report["summary"]["pairs"]
        else:
            from .video import compute_span

            done = compute_span(backend, Path(unit.src), Path(unit.out), unit.start, unit.stop, factor=factor,
                                scene_cut=scene_cut, max_pixels=max_pixels)
    except (UserError, OSError) as e:
        # bad input fails the unit alone; a failed write (full disk, EIO) names the file -- either way the worker
        # is fine, so this is a result, not a lost worker for Ray to retry
        msg = str(e) if isinstance(e, UserError) else f"cannot write: {os_error_line(e)}"
        return {"unit": unit.id, "status": "failed", "error": msg, "seconds": time.perf_counter() - t0,
                "pid": os.getpid()}
    return {"unit": unit.id, "status": "done", "frames": done, "seconds": time.perf_counter() - t0, "pid": os.getpid()}


# -- the driver ----------------------------------------------------------------------------------------------------

def _start_ray(address: str | None, workers: int, threads: int):
    try:
        import ray
    except ImportError:
        raise UserError("runtime.batch needs Ray (pip install 'ray>=2.40', or the sfadacof[batch] extra)") from None
    import signal

    env = {"OMP_NUM_THREADS": str(threads)}  # torch and OpenMP kernels: share the cores between workers
    # ray.init replaces the SIGTERM handler with sys.exit (no cleanup, and raised inside Ray's C++ wait it aborts
    # the driver): keep ours (sfadacof.interrupts), which ends a run as Ctrl-C does
    term = signal.getsignal(signal.SIGTERM)
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)
        from .ray_watchdog import watch_local_cluster

        watch_local_cluster()  # the local cluster dies with this driver, SIGKILL included
    if term is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, term)
    return ray


def run_job(job: Job, *, backend_name: str, options: BackendOptions, factor: int, scene_cut: float | None,
            max_pixels: int | None, workers: int, address: str | None, retries: int, gpus_per_unit: float,
            crf: int) -> tuple[list[dict], list[dict]]:
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    results: list[dict] = []
    videos: list[dict] = []
    bar = None
    if job.units:
        ray = _start_ray(address, workers, threads)
        try:
            task = ray.remote(run_unit).options(max_retries=retries, num_cpus=1, num_gpus=gpus_per_unit)
            pending = {task.remote(u, backend_name, options, factor, scene_cut, max_pixels): u for u in job.units}
            # units are the work items on the cluster; assembling videos afterwards is reported apart ("videos")
            bar = Progress(len(job.units), "computing", unit="unit")
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                unit = pending.pop(ready[0])
                try:
                    r = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # out of retries: the worker kept dying
                    r = {"unit": unit.id, "status": "failed",
                         "error": f"worker lost {retries + 1} time(s): {str(e).splitlines()[0][:200]}"}
                results.append(r)
                if r["status"] != "done":
                    print(one_line(f"{unit.id}: FAILED: {r['error']}"), file=sys.stderr)
                bar.update()
        finally:
            if bar is not None:
                bar.close(ok=len(results) == len(job.units))
            ray.shutdown()
    failed_src = {r["unit"].split("[")[0] for r in results if r["status"] != "done"}
    from .video import assemble_spans

    for v in job.videos:
        name = Path(v["src"]).name
        if name in failed_src:
            videos.append({"video": name, "status": "failed", "error": "not assembled: a span failed"})
            continue
        try:
            n = assemble_spans(Path(v["src"]), Path(v["out"]), [Path(s) for s in v["spans"]], factor=factor, crf=crf,
                               max_pixels=max_pixels)
        except UserError as e:
            videos.append({"video": name, "status": "failed", "error": str(e)})
            continue
        except OSError as e:
            videos.append({"video": name, "status": "failed", "error": f"cannot write: {os_error_line(e)}"})
            continue
        shutil.rmtree(v["stage"], ignore_errors=True)
        videos.append({"video": name, "status": "done", "frames": n, "output": v["out"]})
    return results, videos


def summary_line(results: list[dict], videos: list[dict], skipped: list, out: Path) -> str:
    """The closing line: units (as counted by the progress lines) and assembled videos, each counted apart."""
    done = sum(r["status"] == "done" for r in results)
    line = f"{done}/{len(results)} unit(s) done"
    if videos:
        line += f", {sum(v['status'] == 'done' for v in videos)}/{len(videos)} video(s) assembled"
    return line + f", {len(skipped)} output(s) skipped as complete -> {out}"


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("runtime.batch", __doc__)
    p.add_argument("sources", nargs="+", type=Path, help="pairs folders and videos, any mix")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--workers", type=int_range(1, 4096), default=max(1, os.cpu_count() or 1),
                   help="local cluster size in worker processes (default: the CPU count, %(default)s here); "
                        "ignored with --ray-address")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (e.g. ray://head:10001 or auto)")
    p.add_argument("--chunk-pairs", type=int_range(1, 100000), default=8, help="pairs per unit (default 8)")
    p.add_argument("--chunk-frames", type=int_range(1, 1000000), default=48,
                   help="input frames per video unit (default 48)")
    p.add_argument("--retries", type=int_range(0, 100), default=3, help="re-runs of a unit whose worker died")
    p.add_argument("--gpus-per-unit", type=float, default=None,
                   help="GPUs a unit reserves (default: 1 for trt or a cuda device, else 0)")
    add_backend_arguments(p)
    v = p.add_argument_group("video")
    v.add_argument("--factor", type=int, choices=(2, 4, 8), default=2, help="frame-rate multiplier")
    # runtime.infer's retiming (--fps) is not offered here: a span's unit would need the output times of its pairs
    # and the depth each needs, which the span planning does not carry. Refused by name, not as "unrecognized".
    v.add_argument("--fps", default=None, metavar="N",
                   help="not supported by runtime.batch (refused): retime a clip with runtime.infer CLIP -o OUT --fps N")
    v.add_argument("--scene-cut", type=float, default=None, metavar="T", help="as runtime.infer --scene-cut")
    v.add_argument("--crf", type=int_range(0, 51), default=18, help="x264 quality of the written videos")
    v.add_argument("--video-output", choices=("mp4", "frames"), default="mp4",
                   help="mp4: OUT/<clip>.mp4 (default); frames: OUT/<clip stem>/frame_NNNNNN.png, lossless")
    cli_args.add_size_limits(p)
    return p


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    if args.fps is not None:
        raise UserError(f"--fps {args.fps}: runtime.batch does not retime to a frame rate (its video units make "
                        "--factor 2, 4 or 8 midpoints); use --factor, or python -m runtime.infer CLIP -o OUT --fps N "
                        "per clip")
    set_memory_budget(args.memory_budget)  # in the environment: Ray's local workers inherit it
    memory_budget_bytes()  # a bad $SFADACOF_MEMORY_BUDGET_GB: refused here, not by every worker
    for s in args.sources:
        if not s.exists():
            raise UserError(f"{s}: no such file or folder")
    check_outputs([*args.sources, *backend_inputs(args)], [output_folder("-o", args.output)])
    options = backend_options(args)
    job = plan(list(args.sources), args.output, chunk_pairs=args.chunk_pairs, chunk_frames=args.chunk_frames,
               factor=args.factor, video_output=args.video_output)
    # every path the job writes, derived from the sources (OUT/<source>/..., a clip's frames folder): checked like
    # runtime.infer's outputs before the cluster starts
    check_outputs([*args.sources, *backend_inputs(args)], job.outputs)
    for f in job.failed:
        print(one_line(f"{f['unit']}: FAILED: {f['error']}"), file=sys.stderr)
    if job.skipped:
        print(f"resume: {len(job.skipped)} output(s) already complete, skipped", file=sys.stderr)
    gpus = args.gpus_per_unit
    if gpus is None:
        gpus = 1.0 if args.backend == "trt" or args.device.startswith("cuda") else 0.0
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        results, videos = run_job(job, backend_name=args.backend, options=options, factor=args.factor,
                                  scene_cut=args.scene_cut, max_pixels=args.max_pixels, workers=args.workers,
                                  address=args.ray_address, retries=args.retries, gpus_per_unit=gpus, crf=args.crf)
    except KeyboardInterrupt:
        # Ctrl-C (SIGTERM, SIGHUP) leaves complete outputs only: the finished pair PNGs stay, the videos' span
        # folders go, and so do the temp files of the workers ray.shutdown() just killed mid-write
        for v in job.videos:
            shutil.rmtree(v["stage"], ignore_errors=True)
        for o in job.outputs:
            clean_stale(o.path if o.folder else o.path.parent)
        raise
    results = job.failed + results  # sources refused while planning: each fails alone
    failed = [r for r in results if r["status"] != "done"] + [v for v in videos if v["status"] != "done"]
    write_json(args.output / SUMMARY, {"units": results, "videos": videos, "skipped": job.skipped,
                                       "failed": len(failed)})
    print(summary_line(results, videos, job.skipped, args.output))
    for r in failed:
        print(one_line(f"failed: {r.get('unit', r.get('video'))}: {r['error']}"), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
