"""TensorRT engine metadata that needs no TensorRT: shape profiles and the sidecar JSON beside every engine.

A serialized engine only runs on the TensorRT version that built it and on GPUs of the compute capability it was
built for; a mismatch fails deep inside deserialisation with a message that does not say why. The sidecar
(ENGINE.json) records what the engine was built from and for, so the runtime can refuse it up front with a reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sfadacof.errors import UserError

Shape = tuple[int, int, int, int]  # N, C, H, W

# Defaults for a 1080p user on a consumer GPU. TensorRT sizes the execution context's memory for the profile's *max*
# shape, so a 4 x 4K max would reserve ~20 GB of fp32 maps alone even for 1080p work. The graph takes the frames as they
# are (it pads to a multiple of 32 inside), so opt is 1080p itself; max 1920x1920 takes 1080p frames in either
# orientation at batch 1. Larger work passes --max (e.g. 1x3x2160x3840); the build prints the estimate for its max.
DEFAULT_MIN: Shape = (1, 3, 32, 32)
DEFAULT_OPT: Shape = (1, 3, 1080, 1920)
DEFAULT_MAX: Shape = (1, 3, 1920, 1920)
MIN_SIDE = 32
SIDECAR_SUFFIX = ".json"
SIDECAR_SCHEMA = 1


def parse_shape(text: str, flag: str = "shape") -> Shape:
    """'1x3x1088x1920' (also ',' or ' ' separated) -> (1, 3, 1088, 1920), validated for a frame input."""
    parts = [p for p in re.split(r"[x,\s]+", text.strip().lower()) if p]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected NxCxHxW, e.g. 1x3x1088x1920") from None
    if len(dims) != 4:
        raise UserError(f"{flag} {text!r}: expected 4 dimensions NxCxHxW, got {len(dims)}")
    n, c, h, w = dims
    if n < 1:
        raise UserError(f"{flag} {text!r}: batch must be >= 1")
    if c != 3:
        raise UserError(f"{flag} {text!r}: frames have 3 channels (RGB), got C={c}")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise UserError(f"{flag} {text!r}: H and W must be at least {MIN_SIDE}")
    return dims  # type: ignore[return-value]


def format_shape(s: Shape | list[int]) -> str:
    return "x".join(str(int(d)) for d in s)


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile, applied to every frame input of the network."""

    min: Shape = DEFAULT_MIN
    opt: Shape = DEFAULT_OPT
    max: Shape = DEFAULT_MAX

    def __post_init__(self) -> None:
        for i, name in enumerate("NCHW"):
            lo, mid, hi = self.min[i], self.opt[i], self.max[i]
            if not lo <= mid <= hi:
                raise UserError(f"profile: {name} must satisfy min <= opt <= max, got {lo}, {mid}, {hi} "
                                f"(--min {format_shape(self.min)} --opt {format_shape(self.opt)} "
                                f"--max {format_shape(self.max)})")

    @classmethod
    def from_args(cls, min_s: str | None, opt_s: str | None, max_s: str | None) -> "Profile":
        """Unset bounds take the defaults, widened where needed so that a single given shape is always valid."""
        mn = parse_shape(min_s, "--min") if min_s else None
        op = parse_shape(opt_s, "--opt") if opt_s else None
        mx = parse_shape(max_s, "--max") if max_s else None
        given = [s for s in (mn, op, mx) if s is not None]
        def lo(*xs): return tuple(min(v) for v in zip(*xs))  # noqa: E704
        def hi(*xs): return tuple(max(v) for v in zip(*xs))  # noqa: E704
        mn = mn or lo(DEFAULT_MIN, *given)
        mx = mx or hi(DEFAULT_MAX, *given)
        if op is None:
            op = hi(lo(DEFAULT_OPT, mx), mn)  # the default opt, clamped into [min, max]
        return cls(mn, op, mx)  # type: ignore[arg-type]

    def contains(self, shape: tuple[int, ...]) -> str | None:
        """None if `shape` (NCHW) fits the profile, else the reason."""
        if len(shape) != 4:
            return f"input has {len(shape)} dimensions, the engine takes NCHW"
        for i, name in enumerate("NCHW"):
            if not self.min[i] <= shape[i] <= self.max[i]:
                return (f"input {format_shape(shape)} is outside the engine's profile {format_shape(self.min)} .. "
                        f"{format_shape(self.max)} ({name}={shape[i]}); rebuild with --min/--max covering it")
        return None

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, d: dict) -> "Profile":
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))  # type: ignore[arg-type]


@dataclass
class EngineMeta:
    """The sidecar's content."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    precision: str  # fp32 / fp16 / int8
    profile: dict
    onnx_path: str
    onnx_sha256: str
    engine_sha256: str = ""
    plugin_path: str | None = None
    plugin_sha256: str | None = None
    plugin_serialized: bool = False
    strongly_typed: bool = False
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    build_seconds: float | None = None
    workspace_mb: int | None = None
    # Version-compatible engines (needed to embed the plugin library) run on later TensorRT releases (compatible()).
    version_compatible: bool = False
    # BuilderFlag.TF32, on by default in TensorRT, is cleared for every build (None: a sidecar from before that)
    tf32: bool | None = None
    schema: int = SIDECAR_SCHEMA


def sidecar_path(engine: str | os.PathLike) -> Path:
    return Path(str(engine) + SIDECAR_SUFFIX)


def fp16_graph_path(engine: str | os.PathLike) -> Path:
    """ENGINE.onnx: the fp16 graph an --fp16 build converts the fp32 ONNX to and parses, named after the engine like
    its sidecar (so no `.fp16` is doubled, and export.fp16_graph's MODEL.fp16.onnx is never written over)."""
    return Path(str(engine) + ".onnx")


def sidecar_bytes(meta: EngineMeta) -> bytes:
    return (json.dumps(asdict(meta), indent=2) + "\n").encode()


def write_sidecar(engine: str | os.PathLike, meta: EngineMeta) -> Path:
    from sfadacof.outputs import atomic_write_bytes

    p = sidecar_path(engine)
    data = sidecar_bytes(meta)
    atomic_write_bytes(p, lambda tmp: tmp.write_bytes(data))
    return p


def read_sidecar(engine: str | os.PathLike) -> EngineMeta:
    p = sidecar_path(engine)
    if not p.is_file():
        raise UserError(f"{p}: engine sidecar missing (engines built by runtime.build_engine have one; "
                        "pass --skip-engine-check to run anyway)")
    try:
        d = json.loads(p.read_text())
        known = set(EngineMeta.__dataclass_fields__)
        return EngineMeta(**{k: v for k, v in d.items() if k in known})
    except (ValueError, TypeError) as e:
        raise UserError(f"{p}: unreadable engine sidecar ({e})") from None


def mismatches(meta: EngineMeta, *, tensorrt_version: str, compute_capability: str, engine_sha256: str | None = None,
               plugin_sha256: str | None = None) -> list[str]:
    """Why an engine must not run here (empty list: it may). GPU *name* differences are not refused: an engine runs
    on any GPU of the same compute capability, only its tactic choices may be slower there."""
    bad = []
    if meta.version_compatible:
        if not version_compatible_runs_on(meta.tensorrt_version, tensorrt_version):
            bad.append(f"version-compatible engine built with TensorRT {meta.tensorrt_version} runs on that release, a "
                       f"later one of the same major, or (from 10.x) a TensorRT 11 runtime; this machine has "
                       f"{tensorrt_version}")
    elif meta.tensorrt_version != tensorrt_version:
        bad.append(f"built with TensorRT {meta.tensorrt_version}, this machine has {tensorrt_version}")
    if meta.compute_capability != compute_capability:
        bad.append(f"built for compute capability {meta.compute_capability} ({meta.gpu_name}), "
                   f"this GPU is {compute_capability}")
    if engine_sha256 is not None and meta.engine_sha256 and meta.engine_sha256 != engine_sha256:
        bad.append("the engine file's sha256 differs from the one recorded in the sidecar (rebuilt or replaced)")
    if not meta.plugin_serialized and meta.plugin_sha256 and plugin_sha256 is not None \
            and meta.plugin_sha256 != plugin_sha256:
        bad.append(f"plugin library differs from the one the engine was built with (sha256 {plugin_sha256[:12]} "
                   f"!= {meta.plugin_sha256[:12]})")
    return bad


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:4])


# Across majors, TensorRT supports exactly these (built, runtime) pairs for version-compatible engines: "TensorRT 10
# version-compatible engines can run with a TensorRT 11 runtime, and TensorRT 8 version-compatible engines can run
# with a TensorRT 10 runtime. No other combination across major versions is supported." (TensorRT 11.4 support
# matrix, "Engine Portability"; the 11.1 developer guide's "Engine Compatibility" says the same for 10 -> 11; the
# 10.16 guide's "Version Compatibility" adds TensorRT 8 engines on the TensorRT 9 runtime.)
VERSION_COMPATIBLE_ACROSS_MAJORS = {(10, 11), (8, 9), (8, 10)}
VERSION_COMPATIBLE_SINCE = (8, 6)  # "Version compatibility is supported from version 8.6" (build and runtime)


def version_compatible_runs_on(built: str, here: str) -> bool:
    """Whether a version-compatible engine built by TensorRT `built` may run on a TensorRT `here` runtime: the same
    release or a later one of its major, or a later major where TensorRT documents it (see above); never an older
    runtime."""
    b, h = _version_tuple(built), _version_tuple(here)
    if not b or not h or b < VERSION_COMPATIBLE_SINCE or h < b:
        return False
    return b[0] == h[0] or (b[0], h[0]) in VERSION_COMPATIBLE_ACROSS_MAJORS


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(name, 'major.minor') of GPU `device` via pycuda, else torch, else nvidia-smi; UserError when there is none."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        dev = cuda.Device(device)
        major, minor = dev.compute_capability()
        return dev.name(), f"{major}.{minor}"
    except Exception:  # pycuda absent or no driver: try the next source
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return torch.cuda.get_device_name(device), f"{major}.{minor}"
    except Exception:  # torch without CUDA
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader", f"--id={device}"],
                                 capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
            if out:
                name, cc = (x.strip() for x in out[0].rsplit(",", 1))
                return name, cc
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    raise UserError(f"no NVIDIA GPU {device} found (pycuda, torch.cuda and nvidia-smi all report none)")
