"""`python -m runtime.build_engine MODEL.onnx --fp16 [-o ENGINE] [--plugin LIB] [--min/--opt/--max NxCxHxW]`

Builds a serialized TensorRT engine from the exported ONNX (AdaCoFSynthesis node -> the project's plugin) and writes
ENGINE.json beside it (TensorRT version, GPU, compute capability, profile, precision, ONNX/plugin hashes) that
runtime.infer --backend trt checks before running the engine.

Precision: every build is a strongly typed network (TensorRT 10.x and 11.x alike), so the ONNX types decide what runs
in which precision and the builder cannot move the offset heads or the sampling coordinates to fp16 (with 10.x's weak
typing and the FP16 flag it may, and 11.x has no such flags at all):
  * --fp16 converts the fp32 ONNX with export.fp16_graph to ENGINE.onnx (fp16 trunk and weight/occlusion heads;
    offset heads fp32; the synthesis plugin in its fp16 + fp32-offsets form) and builds from that; an ONNX that is
    already fp16 is used as is.
  * TF32 is off for every build (BuilderFlag.TF32 is on by default): the fp32 engine and the fp32 layers of an fp16
    or int8 engine (the offset heads) compute in fp32, not with 10-bit mantissa inputs.
  * --int8 expects the Q/DQ ONNX of the calibration step (explicit quantization); layers without Q/DQ run in the
    graph's own type (fp32).
  * --serialize-plugin embeds the plugin library in the engine. TensorRT does that only for version-compatible engines,
    so the flag also sets BuilderFlag.VERSION_COMPATIBLE (the lean runtime travels inside the engine, which therefore
    runs on this TensorRT release, a later one of the same major, or, built by 10.x, on an 11.x runtime, with host
    code allowed at deserialization: runtime.engine_meta.version_compatible_runs_on).
ENGINE, ENGINE.json and an updated --timing-cache file are written together (or none of them, when the build or a
write fails); a timing cache made on another GPU or TensorRT version is refused before the build.
Default profile: 1x3x32x32 .. 1x3x1080x1920 .. 1x3x1920x1920 (1080p frames of either orientation); TensorRT reserves
context memory for the max shape, so pass --max for larger frames. The estimated activation memory at the max shape
is printed before the build.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sfadacof import cli_args
from sfadacof.errors import UserError, cli_command

from .engine_meta import (EngineMeta, Profile, format_shape, fp16_graph_path, gpu_info, sidecar_bytes,
                          sidecar_path)
from sfadacof.outputs import atomic_write_files, check_outputs, output_file
from .tensorrt_env import default_plugin_library, import_tensorrt, load_plugin_library, on_device, trt_major

PRECISIONS = ("fp32", "fp16", "int8")


def onnx_frame_inputs(onnx_path: Path) -> tuple[list[str], list[str], bool]:
    """(frame input names, output names, is fp16 graph) read without loading weights."""
    import onnx

    from export.fp16_graph import is_fp16_graph
    from export.graph import frame_inputs

    try:
        m = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # DecodeError etc.
        raise UserError(f"{onnx_path}: not a readable ONNX model ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    inputs = frame_inputs(m)
    if len(inputs) != 2:
        raise UserError(f"{onnx_path}: expected 2 frame inputs, found {len(inputs)} ({', '.join(inputs)})")
    return inputs, [o.name for o in m.graph.output], is_fp16_graph(m)


def estimate_memory(onnx_path: Path, profile: Profile) -> tuple[int, int]:
    """(peak activation bytes at the profile's max shape, weight bytes) of the graph TensorRT will parse."""
    import onnx

    from .memory_estimate import peak_activation_bytes, weight_bytes

    m = onnx.load(str(onnx_path))
    return peak_activation_bytes(m, profile.max), weight_bytes(m)


@dataclass
class BuildRequest:
    """Everything that decides one engine; runtime.engine_cache builds through this too."""

    onnx: Path
    engine: Path
    precision: str = "fp32"
    profile: Profile = Profile()
    plugin: Path | None = None
    serialize_plugin: bool = False
    timing_cache: Path | None = None
    workspace_mb: int = 4096
    device: int = 0
    verbose: bool = False


def build_engine(req: BuildRequest) -> EngineMeta:
    """Build `req.onnx` into `req.engine` (+ sidecar), atomically; returns the sidecar's content."""
    if req.precision not in PRECISIONS:
        raise UserError(f"precision {req.precision!r}: choose {', '.join(PRECISIONS)}")
    onnx_path, engine_path, profile = Path(req.onnx), Path(req.engine), req.profile
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: ONNX model not found")
    if onnx_path.resolve() in {p.resolve() for p in (engine_path, fp16_graph_path(engine_path), sidecar_path(engine_path))}:
        raise UserError(f"{engine_path}: the engine (or its .onnx / .json beside it) would overwrite the input model; "
                        "choose another -o")
    inputs, outputs, onnx_is_fp16 = onnx_frame_inputs(onnx_path)
    if req.serialize_plugin and req.plugin is None:
        raise UserError("--serialize-plugin needs the plugin library (--plugin LIB, or build it: python -m plugins.build)")

    trt = import_tensorrt()
    with on_device(req.device):
        return _build(trt, req, inputs, outputs, onnx_is_fp16)


def _build(trt, req: BuildRequest, inputs: list[str], outputs: list[str], onnx_is_fp16: bool) -> EngineMeta:
    onnx_path, engine_path = Path(req.onnx), Path(req.engine)
    parse_path = onnx_path
    if req.precision == "fp16" and not onnx_is_fp16:
        from export.fp16_graph import convert_file

        parse_path = fp16_graph_path(engine_path)
        convert_file(onnx_path, parse_path, synthesis="fp16")
        print(f"fp16 graph for the strongly typed build written to {parse_path}", file=sys.stderr)
    try:
        return _build_from(trt, req, parse_path, inputs, outputs)
    except BaseException:
        if parse_path != onnx_path:  # the fp16 graph written above: no use without its engine
            parse_path.unlink(missing_ok=True)
        raise


def _use_timing_cache(config, path: Path):
    """The builder's timing cache, read from `path` (absent: a new one); a cache TensorRT refuses (made on another
    GPU or TensorRT version, or not a timing cache) is a one-line error before the build, not a silent rebuild."""
    blob = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
    except Exception:  # TensorRT raises on bytes it cannot parse in some versions, returns None in others
        cache = None
    # set_timing_cache returns False on a device or version mismatch (ignore_mismatch=False): refused here
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise UserError(f"{path}: timing cache made on another GPU or TensorRT version (or not a timing cache); "
                        "pass --timing-cache with a new file name")
    return cache


def _build_from(trt, req: BuildRequest, parse_path: Path, inputs: list[str], outputs: list[str]) -> EngineMeta:
    onnx_path, engine_path, profile = Path(req.onnx), Path(req.engine), req.profile
    name, cc = gpu_info(req.device)
    logger = trt.Logger(trt.Logger.VERBOSE if req.verbose else trt.Logger.WARNING)
    plugin_sha = load_plugin_library(trt, req.plugin, logger)
    act, weights = estimate_memory(parse_path, profile)
    print(f"estimated device memory at the profile's max {format_shape(profile.max)}: activations <= "
          f"{act / 2**30:.2f} GiB (upper estimate from the ONNX graph), weights {weights / 2**20:.0f} MiB",
          file=sys.stderr)

    builder = trt.Builder(logger)
    # 10.x: strongly typed on request; 11.x: always (its STRONGLY_TYPED flag is deprecated and ignored)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if trt_major(trt.__version__) < 11 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(parse_path)):  # parse_from_file resolves external weight files
        errs = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        hint = "" if req.plugin else " (no plugin library: the AdaCoFSynthesis node needs it: python -m plugins.build)"
        raise UserError(f"{parse_path}: TensorRT could not parse it: {errs[0] if errs else 'unknown error'}{hint}")

    config = builder.create_builder_config()
    # TF32 is on by default (NvInfer.h, BuilderFlag::kTF32, both majors): fp32 convolutions would round their inputs
    # to 10-bit mantissas, against the fp32 engine's bound and the reason the offset heads stay fp32 in fp16 builds.
    config.clear_flag(trt.BuilderFlag.TF32)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_mb) << 20)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        opt_profile.set_shape(network.get_input(i).name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(opt_profile)

    cache = _use_timing_cache(config, req.timing_cache) if req.timing_cache else None
    if req.serialize_plugin:
        # plugins_to_serialize takes effect only for version-compatible engines (TensorRT developer guide).
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        config.plugins_to_serialize = [str(Path(req.plugin).resolve())]

    print(f"building the TensorRT engine {engine_path.name} ({req.precision}); this may take minutes", file=sys.stderr)
    t0 = time.perf_counter()
    from sfadacof.progress import heartbeat

    with heartbeat("building the TensorRT engine") as phase:  # minutes of tactic search that print nothing
        phase("TensorRT builder running")
        serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise UserError(f"{parse_path}: TensorRT build failed (run with --verbose for the builder log)")
    data = bytes(serialized)
    files = {engine_path: data}
    if cache is not None:
        try:
            files[req.timing_cache] = bytes(config.get_timing_cache().serialize())
        except Exception as e:  # nothing written yet: the engine is dropped with it
            raise UserError(f"{req.timing_cache}: TensorRT could not serialize the updated timing cache "
                            f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__}); nothing written") from None

    meta = EngineMeta(tensorrt_version=trt.__version__, gpu_name=name, compute_capability=cc,
                      precision=req.precision, profile=profile.to_json(), onnx_path=str(onnx_path),
                      onnx_sha256=_sha256(onnx_path), engine_sha256=hashlib.sha256(data).hexdigest(),
                      plugin_path=str(req.plugin) if req.plugin else None, plugin_sha256=plugin_sha,
                      plugin_serialized=req.serialize_plugin, strongly_typed=True, inputs=inputs, outputs=outputs,
                      build_seconds=seconds, workspace_mb=int(req.workspace_mb),
                      version_compatible=req.serialize_plugin, tf32=config.get_flag(trt.BuilderFlag.TF32))
    # Engine, timing cache and sidecar as one write, the sidecar last: it is what marks an engine complete
    # (runtime.engine_cache, runtime.infer's engine check).
    side = sidecar_path(engine_path)
    files[side] = sidecar_bytes(meta)
    atomic_write_files(files)
    print(f"{engine_path}: {req.precision} engine, TensorRT {trt.__version__}, {name} (sm {cc}), profile "
          f"{format_shape(profile.min)} .. {format_shape(profile.opt)} .. {format_shape(profile.max)}, "
          f"built in {seconds:.1f} s; sidecar {side}")
    return meta


def _sha256(path: Path) -> str:
    from sfadacof.checkpoint import file_sha256  # here: sfadacof.checkpoint imports torch, --help must not

    return file_sha256(path)


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.command_parser("runtime.build_engine", __doc__)
    p.add_argument("onnx", type=Path, help="exported model (fp32, or the Q/DQ model for --int8)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="half precision (default fp32)")
    prec.add_argument("--fp32", action="store_true", help="full precision (the default)")
    prec.add_argument("--int8", action="store_true", help="INT8 from a Q/DQ ONNX (calib step)")
    p.add_argument("-o", "--output", type=Path, default=None, help="engine path (default MODEL.<precision>.engine)")
    p.add_argument("--plugin", type=Path, default=None,
                   help="the TensorRT plugin library, libsfadacof_trt_plugin.so (default: the one plugins/_libs.py "
                        "finds: $SFADACOF_PLUGIN_DIR, build/, then plugins/ where pip puts it)")
    p.add_argument("--serialize-plugin", action="store_true",
                   help="embed the plugin library in the engine (builds a version-compatible engine)")
    p.add_argument("--min", default=None, metavar="NxCxHxW", help="default 1x3x32x32")
    p.add_argument("--opt", default=None, metavar="NxCxHxW", help="default 1x3x1080x1920")
    p.add_argument("--max", default=None, metavar="NxCxHxW",
                   help="default 1x3x1920x1920 (context memory is reserved for this shape)")
    p.add_argument("--timing-cache", type=Path, default=None, help="read and update this timing cache file")
    p.add_argument("--workspace", type=int, default=4096, metavar="MB", help="builder workspace limit (MiB)")
    p.add_argument("--device", type=int, default=0, help="CUDA device to build for")
    p.add_argument("--verbose", action="store_true", help="print TensorRT's builder log")
    return p


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    if args.workspace <= 0:
        raise UserError(f"--workspace {args.workspace}: must be a positive number of MiB")
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    profile = Profile.from_args(args.min, args.opt, args.max)
    engine = args.output or args.onnx.with_suffix(f".{precision}.engine")
    # before TensorRT is even imported: the engine, its sidecar and the fp16 graph must not overwrite an input
    check_outputs([args.onnx, args.plugin],
                  [output_file("-o", engine), output_file("-o (sidecar)", sidecar_path(engine)),
                   output_file("-o (fp16 graph)", fp16_graph_path(engine)) if precision == "fp16" else None,
                   output_file("--timing-cache", args.timing_cache)])
    build_engine(BuildRequest(onnx=args.onnx, engine=engine, precision=precision, profile=profile,
                              plugin=args.plugin or default_plugin_library(), serialize_plugin=args.serialize_plugin,
                              timing_cache=args.timing_cache, workspace_mb=args.workspace, device=args.device,
                              verbose=args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
