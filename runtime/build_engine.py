"""`python -m runtime.build_engine MODEL.onnx --fp16 [-o ENGINE] [--plugin LIB] [--min/--opt/--max NxCxHxW]`

Builds a serialized TensorRT engine from the exported ONNX (AdaCoFSynthesis node -> the project's plugin) and writes
ENGINE.json beside it (TensorRT version, GPU, compute capability, profile, precision, ONNX/plugin hashes) that
runtime.infer --backend trt checks before running the engine.

Precision:
  * TensorRT 10.x: --fp16 / --int8 set the builder flags on a weakly typed network (TensorRT picks per layer);
    the AdaCoFSynthesis plugin declares fp32 I/O so the sampling stays fp32. --strongly-typed uses the 11.x path.
  * TensorRT 11.x (weakly typed networks and the precision flags are gone): networks are strongly typed and the
    ONNX types decide. --fp16 therefore converts the fp32 ONNX with runtime.fp16_graph (fp16 trunk; offset heads
    and synthesis in fp32) to ENGINE.fp16.onnx and builds from that; an ONNX that is already fp16 is used as is.
  * --int8 expects the Q/DQ ONNX of the calibration step (explicit quantization).
Default profile: 1x3x256x256 .. 1x3x1088x1920 .. 4x3x2176x3840 on every frame input.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import sys
import time
from pathlib import Path

from sfadacof.checkpoint import file_sha256
from sfadacof.errors import UserError, cli_main

from .engine_meta import EngineMeta, Profile, format_shape, gpu_info, write_sidecar
from .media import atomic_write_bytes

TRT_INSTALL_HINT = "pip install tensorrt-cu12 (or the sfadacof[gpu] extra) on a machine with an NVIDIA GPU"


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def import_tensorrt():
    """The tensorrt module, or one UserError line saying what is missing."""
    if importlib.util.find_spec("tensorrt") is None:
        raise UserError(f"TensorRT Python package not installed ({TRT_INSTALL_HINT})")
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError / OSError when libnvinfer or CUDA libs are missing
        raise UserError(f"TensorRT Python package found but not loadable: {str(e).splitlines()[0][:200]}") from None
    return trt


def load_plugin_library(trt, path: Path | None, logger) -> tuple[object | None, str | None]:
    """Register the AdaCoFSynthesis creator; returns (registry handle or ctypes lib, sha256)."""
    trt.init_libnvinfer_plugins(logger, "")
    if path is None:
        return None, None
    if not path.is_file():
        raise UserError(f"{path}: plugin library not found (build it with plugins/build.py)")
    registry = trt.get_plugin_registry()
    try:
        # TensorRT >= 10: the registry loads the library and registers its creators (incl. IPluginV3 ones)
        handle = registry.load_library(str(path))
    except AttributeError:
        handle = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except Exception as e:  # TensorRT raises RuntimeError with its own message
        raise UserError(f"{path}: TensorRT could not load the plugin library ({str(e).splitlines()[0][:200]})") from None
    return handle, file_sha256(path)


def onnx_frame_inputs(onnx_path: Path) -> tuple[list[str], list[str], bool]:
    """(frame input names, output names, is fp16 graph) read without loading weights."""
    import onnx

    from .fp16_graph import is_fp16_graph

    try:
        m = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # DecodeError etc.
        raise UserError(f"{onnx_path}: not a readable ONNX model ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    inits = {t.name for t in m.graph.initializer}
    inputs = [i.name for i in m.graph.input if i.name not in inits]
    if len(inputs) != 2:
        raise UserError(f"{onnx_path}: expected 2 frame inputs, found {len(inputs)} ({', '.join(inputs)})")
    return inputs, [o.name for o in m.graph.output], is_fp16_graph(m)


def build(args) -> Path:
    onnx_path: Path = args.onnx
    if not onnx_path.is_file():
        raise UserError(f"{onnx_path}: ONNX model not found")
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    profile = Profile.from_args(args.min, args.opt, args.max)
    inputs, outputs, onnx_is_fp16 = onnx_frame_inputs(onnx_path)
    engine_path: Path = args.output or onnx_path.with_suffix(f".{precision}.engine")

    trt = import_tensorrt()
    name, cc = gpu_info()
    if args.plugin is None:
        from .backends.tensorrt_backend import default_plugin_library

        args.plugin = default_plugin_library()  # None when not built: the parser error below then says so
    logger = trt.Logger(trt.Logger.VERBOSE if args.verbose else trt.Logger.WARNING)
    _plugin_handle, plugin_sha = load_plugin_library(trt, args.plugin, logger)
    major = trt_major(trt.__version__)
    strongly_typed = major >= 11 or args.strongly_typed

    parse_path = onnx_path
    if strongly_typed and precision == "fp16" and not onnx_is_fp16:
        from .fp16_graph import convert_file

        parse_path = engine_path.with_suffix(".fp16.onnx")
        convert_file(onnx_path, parse_path)
        print(f"strongly typed build: fp16 graph written to {parse_path}")

    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # implicit in 10.x, removed later
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(parse_path)):  # parse_from_file resolves external weight files
        errs = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        hint = "" if args.plugin else " (no --plugin given: the AdaCoFSynthesis node needs the plugin library: python -m plugins.build)"
        raise UserError(f"{parse_path}: TensorRT could not parse it: {errs[0] if errs else 'unknown error'}{hint}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace) << 20)
    if not strongly_typed:
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # int8 builds keep fp16 for the non-quantized layers
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        opt_profile.set_shape(network.get_input(i).name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(opt_profile)

    cache = None
    if args.timing_cache:
        blob = args.timing_cache.read_bytes() if args.timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    if args.serialize_plugin:
        if args.plugin is None:
            raise UserError("--serialize-plugin needs --plugin LIB")
        config.plugins_to_serialize = [str(args.plugin)]

    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise UserError(f"{parse_path}: TensorRT build failed (run with --verbose for the builder log)")
    data = bytes(serialized)
    atomic_write_bytes(engine_path, lambda tmp: tmp.write_bytes(data))
    if cache is not None:
        cache_blob = bytes(config.get_timing_cache().serialize())
        atomic_write_bytes(args.timing_cache, lambda tmp: tmp.write_bytes(cache_blob))

    meta = EngineMeta(tensorrt_version=trt.__version__, gpu_name=name, compute_capability=cc, precision=precision,
                      profile=profile.to_json(), onnx_path=str(onnx_path), onnx_sha256=file_sha256(onnx_path),
                      engine_sha256=file_sha256(engine_path), plugin_path=str(args.plugin) if args.plugin else None,
                      plugin_sha256=plugin_sha, plugin_serialized=bool(args.serialize_plugin),
                      strongly_typed=strongly_typed, inputs=inputs, outputs=outputs, build_seconds=seconds,
                      workspace_mb=int(args.workspace))
    side = write_sidecar(engine_path, meta)
    print(f"{engine_path}: {precision} engine, TensorRT {trt.__version__}, {name} (sm {cc}), profile "
          f"{format_shape(profile.min)} .. {format_shape(profile.opt)} .. {format_shape(profile.max)}, "
          f"built in {seconds:.1f} s; sidecar {side}")
    return engine_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runtime.build_engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx", type=Path, help="exported model (fp32, or the Q/DQ model for --int8)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="half precision (default fp32)")
    prec.add_argument("--fp32", action="store_true", help="full precision (the default)")
    prec.add_argument("--int8", action="store_true", help="INT8 from a Q/DQ ONNX (calib step)")
    p.add_argument("-o", "--output", type=Path, default=None, help="engine path (default MODEL.<precision>.engine)")
    p.add_argument("--plugin", type=Path, default=None,
                   help="AdaCoFSynthesis plugin library (default: libsfadacof_trt_plugin.so found by plugins/_libs.py)")
    p.add_argument("--serialize-plugin", action="store_true", help="embed the plugin library in the engine")
    p.add_argument("--min", default=None, metavar="NxCxHxW", help="default 1x3x256x256")
    p.add_argument("--opt", default=None, metavar="NxCxHxW", help="default 1x3x1088x1920")
    p.add_argument("--max", default=None, metavar="NxCxHxW", help="default 4x3x2176x3840")
    p.add_argument("--timing-cache", type=Path, default=None, help="read and update this timing cache file")
    p.add_argument("--workspace", type=int, default=4096, metavar="MB", help="builder workspace limit (MiB)")
    p.add_argument("--strongly-typed", action="store_true", help="TensorRT 10.x: build a strongly typed network")
    p.add_argument("--verbose", action="store_true")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workspace <= 0:
        raise UserError(f"--workspace {args.workspace}: must be a positive number of MiB")
    build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
