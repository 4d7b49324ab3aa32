"""TensorRT engines built on demand and cached, as `--backend trt` without `--engine` uses them.

An engine is valid only for the exact things that went into it, so the cache key covers all of them: the GPU's name
and compute capability (tactics are timed on that GPU), the TensorRT version, the plugin library's and the ONNX file's
sha256, the precision and the optimisation profile. A second run with the same key reuses the engine at once; runs
that start together build it once (a file lock per key: the others wait, then find it built). An entry is complete
when its sidecar exists: build_engine writes the engine and the sidecar as one write, the sidecar renamed
into place last (sfadacof.outputs.atomic_write_files). An entry whose engine
no longer has the sha256 its sidecar recorded (altered or damaged) is said in one line on stderr and built again.

Location: $SFADACOF_CACHE/engines (default ~/.cache/sfadacof/engines), beside the ONNX export cache.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sfadacof.checkpoint import file_sha256
from sfadacof.errors import UserError, one_line
from sfadacof.outputs import cache_dir, create_cache_dir

from .build_engine import BuildRequest, build_engine
from .engine_meta import Profile, format_shape, read_sidecar, sidecar_path


@dataclass(frozen=True)
class Target:
    """The machine side of the key: what TensorRT and which GPU the engine is built by and for."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def cache_root() -> Path:
    return cache_dir("engines")


def engine_cache_key(target: Target, *, onnx_sha256: str, plugin_sha256: str | None, precision: str,
                     profile: Profile) -> str:
    from export import fp16_graph

    # The fp16 conversion runs inside the build: an edited converter must not serve an engine of the old graph.
    converter = hashlib.sha256(Path(fp16_graph.__file__).read_bytes()).hexdigest()[:16] if precision == "fp16" else None
    blob = json.dumps({"tensorrt": target.tensorrt_version, "gpu": target.gpu_name, "fp16_converter": converter,
                       "compute_capability": target.compute_capability, "onnx": onnx_sha256,
                       "plugin": plugin_sha256, "precision": precision, "profile": profile.to_json()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def current_target(device: int = 0) -> Target:
    from .engine_meta import gpu_info
    from .tensorrt_env import import_tensorrt

    trt = import_tensorrt()
    name, cc = gpu_info(device)
    return Target(trt.__version__, name, cc)


def _entry_ok(path: Path) -> bool:
    """Complete (engine and sidecar) and unaltered (the engine's sha256 is the one the sidecar recorded)."""
    if not (sidecar_path(path).is_file() and path.is_file()):
        return False
    try:
        return read_sidecar(path).engine_sha256 == file_sha256(path)
    except UserError:  # an unreadable sidecar: rebuilt
        return False


def cached_engine(onnx: Path, *, precision: str, profile: Profile, plugin: Path | None, device: int = 0,
                  root: Path | None = None, target: Target | None = None,
                  build: Callable[[BuildRequest], object] = build_engine) -> Path:
    """Path of an engine for these inputs, built now if the cache has none. `target` and `build` default to this
    machine's TensorRT and GPU and to runtime.build_engine."""
    from filelock import FileLock

    onnx = Path(onnx)
    target = target or current_target(device)
    key = engine_cache_key(target, onnx_sha256=file_sha256(onnx),
                           plugin_sha256=file_sha256(plugin) if plugin is not None else None,
                           precision=precision, profile=profile)
    root = Path(root) if root is not None else cache_root()
    path = root / f"{onnx.stem}.{precision}.{key}.engine"
    if _entry_ok(path):
        return path
    if sidecar_path(path).is_file() and path.is_file():
        print(f"note: {one_line(path)}: cached engine does not match the sha256 its sidecar recorded (altered or "
              "damaged); building it again", file=sys.stderr)
    create_cache_dir(root, "engine cache")
    with FileLock(str(path) + ".lock"):
        if _entry_ok(path):  # built by a concurrent run while this one waited
            return path
        print(f"no cached TensorRT engine for this model, GPU and TensorRT: building one ({precision}, profile up to "
              f"{format_shape(profile.max)}); this may take minutes, later runs reuse it", file=sys.stderr)
        t0 = time.perf_counter()
        build(BuildRequest(onnx=onnx, engine=path, precision=precision, profile=profile, plugin=plugin,
                           device=device))
        print(f"engine built in {time.perf_counter() - t0:.0f} s, cached as {path}", file=sys.stderr)
    return path
