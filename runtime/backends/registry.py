"""One place that turns `--backend NAME` and its options into a Backend.

    add_backend_arguments(parser)  -- the backend flags runtime.infer / accuracy / benchmark share
    backend_options(args)          -- BackendOptions from the parsed flags
    create_backend(name, options)

Each backend module is imported only when chosen, so a machine without onnxruntime / TensorRT / pycuda can still
use the others, and a missing piece is reported as one line naming it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from sfadacof import cli_args
from sfadacof.errors import UserError

from .base import Backend

BACKENDS: tuple[str, ...] = ("auto", "torch", "ort", "openvino", "trt")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
# The precisions each backend offers (the first is its default, except openvino: bf16 on a CPU with native bf16).
# torch fp16 needs CUDA; ort fp16 is the fp16 graph; openvino bf16 is an inference-precision hint (offset heads and
# synthesis kept fp32); openvino int8 is an NNCF-quantized IR (the shipped one for the shipped weights, else --onnx);
# trt: the on-demand engine's precision.
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {"torch": ("fp32", "fp16"), "ort": ("fp32", "fp16"),
                                                  "openvino": ("fp32", "bf16", "int8"), "trt": ("fp32", "fp16")}
CPU_BACKENDS: tuple[str, ...] = ("torch", "ort", "openvino")  # runtime.benchmark's default: side by side
# What `auto` runs where TensorRT or a GPU is missing: OpenVINO, in the precision measured fastest on this CPU
# (cpu_choice.py: int8 / bf16 / fp32, those available); ONNX Runtime when openvino is not installed. OpenVINO was
# chosen by measurement on the project's 2-core AVX-512/VNNI/BF16 machine (README, "The CPU default"): per 960x507 frame, OpenVINO bf16 and
# fp32 beat ONNX Runtime (plugin or standard-op form) and eager PyTorch, within the accuracy rule (bf16: every frame
# >= 45 dB against fp32 PyTorch, no loss of PSNR against ground truth beyond 0.05 dB).
CPU_DEFAULT = "openvino"
CPU_FALLBACK = "ort"  # the CPU default's stand-in when openvino is not importable


@dataclass
class BackendOptions:
    checkpoint: Path | None = None  # torch; ort exports from it when no --onnx is given
    variant: str | None = None
    device: str = "cpu"             # torch: cpu / cuda; ort: cpu / cuda provider
    onnx: Path | None = None        # ort: run this graph instead of exporting the checkpoint
    engine: Path | None = None      # trt: serialized engine (with its sidecar JSON beside it); None: built on demand
    plugin: Path | None = None      # trt: plugin library (when not serialized into the engine)
    precision: str | None = None    # None: the backend's default (fp32; openvino: bf16 on a CPU with native bf16)
                                    # ort: fp32 / fp16 graph; openvino: fp32 / bf16 inference; trt: engine precision
    skip_engine_check: bool = False  # trt: run even if the sidecar does not match this machine


def add_backend_arguments(p: argparse.ArgumentParser, *, backend: str | None = "auto", choose: bool = True,
                          variant_default: str | None = None,
                          variant_help: str = "override the variant detected from the checkpoint") -> None:
    """The backend flags: --checkpoint --variant --device --onnx --engine --plugin, and with `choose` also --backend
    (default `backend`; None: required), --precision and --skip-engine-check (runtime.benchmark chooses those per
    configuration with its own --backends / --precisions)."""
    p.add_argument("--checkpoint", type=Path, default=None, help="PyTorch checkpoint (default: the shipped weights)")
    p.add_argument("--variant", default=variant_default, help=variant_help)
    if choose:
        p.add_argument("--backend", choices=BACKENDS, default=backend, required=backend is None,
                       help="auto: trt where TensorRT, pycuda, a GPU and the plugin are available, else the CPU default "
                            f"({CPU_DEFAULT}, or {CPU_FALLBACK} without openvino); "
                            "ort: ONNX Runtime on the CPU (or CUDA with --device cuda); openvino: OpenVINO on the "
                            "CPU (standard-op graph); torch; trt: --engine E, or "
                            "an engine built on demand and cached" + (" (default auto)" if backend == "auto" else ""))
    p.add_argument("--device", type=cli_args.device, default="cpu", help="torch/ort device: cpu or cuda[:N]")
    p.add_argument("--onnx", type=Path, default=None,
                   help="ort/openvino: ONNX graph to run (default: export the checkpoint); openvino also takes an "
                        "OpenVINO IR .xml (calib.openvino_int8)")
    if choose:
        p.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="default: fp32, except openvino: bf16 where the CPU has native bf16 (AVX512_BF16/AMX), "
                            "offset heads and synthesis kept fp32, and auto on a CPU: the fastest of int8/bf16/fp32 "
                            "measured here (once per CPU, cached; giving one skips it). ort: fp32/fp16 graph; "
                            "openvino: fp32/bf16 inference, or int8: the shipped INT8 model for the shipped "
                            "weights (else --onnx M.int8.xml); torch: fp16 on CUDA; trt without --engine: engine "
                            "precision")
    p.add_argument("--engine", type=Path, default=None, help="trt: serialized TensorRT engine")
    p.add_argument("--plugin", type=Path, default=None,
                   help="trt: the TensorRT plugin library, libsfadacof_trt_plugin.so (default: the one "
                        "plugins/_libs.py finds: $SFADACOF_PLUGIN_DIR, build/, then plugins/ where pip puts it)")
    if choose:
        p.add_argument("--skip-engine-check", action="store_true",
                       help="trt: run even when the engine's sidecar does not match this machine")


def backend_options(args: argparse.Namespace, **override) -> BackendOptions:
    """BackendOptions from flags added by add_backend_arguments; `override` replaces single fields."""
    values = {f.name: getattr(args, f.name) for f in fields(BackendOptions) if hasattr(args, f.name)}
    return BackendOptions(**{**values, **override})


def backend_inputs(args: argparse.Namespace) -> list:
    """The files the backend flags name (for check_outputs: no output may overwrite them)."""
    return [args.checkpoint, args.onnx, args.engine, args.plugin]


def _refuse_precision(backend: str, precision: str | None, allowed: tuple[str, ...]) -> str:
    """The precision a backend runs (None: its first, fp32), or one line saying which it takes."""
    p = precision or allowed[0]
    if p not in allowed:
        hint = "; bf16 runs on --backend openvino" if p == "bf16" else ""
        raise UserError(f"--backend {backend} --precision {p}: choose {' or '.join(allowed)}{hint}")
    return p


def _torch(o: BackendOptions) -> Backend:
    if _refuse_precision("torch", o.precision, BACKEND_PRECISIONS["torch"]) == "fp16":
        if not o.device.startswith("cuda"):
            raise UserError(f"--backend torch --precision fp16 needs --device cuda (got --device {o.device}); "
                            "on a CPU use --precision fp32, or --backend ort --precision fp16")
        from .torch_cuda_fp16 import TorchCudaFp16Backend

        return TorchCudaFp16Backend(o.checkpoint, device=o.device, variant=o.variant)
    from .torch_backend import TorchBackend

    return TorchBackend(o.checkpoint, device=o.device, variant=o.variant)


def _ort(o: BackendOptions) -> Backend:
    try:
        from .ort_backend import OrtBackend
    except ModuleNotFoundError as e:
        if e.name == "onnxruntime":
            raise UserError("--backend ort: onnxruntime is not installed (pip install onnxruntime)") from None
        raise
    from export.cache import onnx_for_checkpoint

    precision = _refuse_precision("ort", o.precision, BACKEND_PRECISIONS["ort"])
    # Without --onnx, export the checkpoint (or reuse a cached export keyed by its hash and the export options).
    onnx_path = o.onnx if o.onnx is not None else onnx_for_checkpoint(o.checkpoint, precision=precision,
                                                                      variant=o.variant)
    return OrtBackend(onnx_path, device=o.device)


def openvino_default_precision() -> str:
    """bf16 where OpenVINO reports native bf16 on this CPU (AVX512_BF16 or AMX), else fp32."""
    from .openvino_backend import native_bf16

    return "bf16" if native_bf16() else "fp32"


def _openvino(o: BackendOptions) -> Backend:
    from .openvino_backend import OpenVINOBackend, import_openvino

    import_openvino()  # say it is missing before exporting anything
    if o.device != "cpu":
        raise UserError(f"--backend openvino --device {o.device}: this backend runs on the CPU only")
    precision = o.precision or openvino_default_precision()
    _refuse_precision("openvino", precision, BACKEND_PRECISIONS["openvino"])
    onnx_path = o.onnx
    if onnx_path is None and precision == "int8":
        from .openvino_int8 import shipped_int8_ir

        onnx_path = shipped_int8_ir(o.checkpoint)
        if onnx_path is None and o.checkpoint is None:
            raise UserError("--backend openvino --precision int8: no INT8 model ships with this package; make one "
                            "with python -m calib.shipped_int8 -o OUT and pass --onnx "
                            "OUT/sf_adacof_default.int8.xml")
        if onnx_path is None:
            raise UserError(f"--backend openvino --precision int8: no INT8 model ships for {o.checkpoint} (the shipped "
                            "one belongs to the shipped weights); make one with python -m calib.openvino_int8 DATA "
                            "-o M.int8.xml --checkpoint CKPT and pass --onnx M.int8.xml")
    if onnx_path is None:
        from export.cache import onnx_for_checkpoint

        # the standard-op form: OpenVINO has no kernel for the plugin form's custom node
        onnx_path = onnx_for_checkpoint(o.checkpoint, synthesis="onnx", precision="fp32", variant=o.variant)
    return OpenVINOBackend(onnx_path, precision=precision)


def _cuda_index(device: str) -> int:
    """'cuda' / 'cuda:1' / 'cpu' (the ORT/torch default, meaning the first GPU for TensorRT) -> the GPU index."""
    _, _, index = device.partition(":")
    try:
        return int(index) if index else 0
    except ValueError:
        raise UserError(f"--device {device!r}: expected cuda or cuda:N for TensorRT") from None


def _trt(o: BackendOptions) -> Backend:
    from .tensorrt_backend import OnDemandTensorRTBackend, TensorRTBackend

    device = _cuda_index(o.device)
    precision = _refuse_precision("trt", o.precision, BACKEND_PRECISIONS["trt"])
    if o.engine is not None:
        return TensorRTBackend(o.engine, plugin=o.plugin, check_sidecar=not o.skip_engine_check, device=device)
    from ..tensorrt_env import import_pycuda, import_tensorrt

    import_tensorrt(), import_pycuda()  # say what is missing before exporting anything
    onnx_path = o.onnx
    if onnx_path is None:
        from export.cache import onnx_for_checkpoint  # the same cached export ORT uses; the build converts to fp16

        onnx_path = onnx_for_checkpoint(o.checkpoint, precision="fp32", variant=o.variant)
    return OnDemandTensorRTBackend(onnx_path, precision=precision, plugin=o.plugin, device=device)


def _auto(o: BackendOptions) -> Backend:
    """TensorRT where TensorRT, pycuda, a GPU and the plugin library are all here; the CPU default otherwise.
    The choice and its reason go into describe(), and so into every report."""
    from ..tensorrt_env import default_plugin_library, tensorrt_available

    why_not = tensorrt_available()
    if why_not is None and o.plugin is None and default_plugin_library() is None:
        why_not = "the TensorRT plugin library is not built (python -m plugins.build)"
    measurement = None
    if why_not is None:
        backend, reason = _trt(o), "TensorRT, pycuda, a GPU and the plugin library are available"
    else:
        backend, reason, measurement = _cpu_default(o, why_not)
    return _Chosen(backend, f"auto -> {backend.name}: {reason}", measurement)


def _cpu_default(o: BackendOptions, why_not_trt: str) -> tuple[Backend, str, dict | None]:
    """CPU_DEFAULT, or CPU_FALLBACK where its package is missing; the reason names both choices. Without
    --precision, OpenVINO's precision is chosen by measurement on this CPU (cpu_choice.py, cached per CPU)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return _FACTORIES[CPU_FALLBACK](o), (f"{CPU_FALLBACK} (CPU fallback: openvino is not installed, "
                                             f"pip install openvino): {why_not_trt}"), None
    if o.precision is None and o.device == "cpu":
        from .cpu_choice import choose_cpu

        backend, why_precision, measurement = choose_cpu(o)
        precision = backend.describe().get("precision")
        return backend, f"{CPU_DEFAULT} {precision} (CPU default; measured: {why_precision}): {why_not_trt}", \
            measurement
    backend = _FACTORIES[CPU_DEFAULT](o)
    precision = backend.describe().get("precision")
    if o.precision is not None:
        why_precision = f"{precision}: --precision {o.precision}"
    else:
        from .openvino_backend import bf16_reason

        why_precision = bf16_reason(precision)
    return backend, f"{CPU_DEFAULT} {precision} (CPU default; {why_precision}): {why_not_trt}", None


class _Chosen(Backend):
    """The backend `auto` picked, reporting why."""

    def __init__(self, inner: Backend, choice: str, measurement: dict | None = None) -> None:
        self.inner, self.choice, self.name, self.measurement = inner, choice, inner.name, measurement

    def infer(self, frame0, frame2):
        return self.inner.infer(frame0, frame2)

    def infer_many(self, pairs):
        return self.inner.infer_many(pairs)

    def describe(self) -> dict:
        d = {**self.inner.describe(), "chosen_by": self.choice}
        if self.measurement is not None:
            d["chosen_by_measurement"] = self.measurement
        return d

    def close(self) -> None:
        self.inner.close()


_FACTORIES: dict[str, Callable[[BackendOptions], Backend]] = {"auto": _auto, "torch": _torch, "ort": _ort,
                                                              "openvino": _openvino, "trt": _trt}


def create_backend(name: str, options: BackendOptions, video: bool = False) -> Backend:
    """The backend `name`; on the CPU wrapped so that frames too large to run whole within the memory budget run
    in pieces (runtime/backends/large_frames.py). video: the frames come from a video (more memory held beside)."""
    if name not in _FACTORIES:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    backend = _FACTORIES[name](options)
    if options.device == "cpu" and backend.name in ("torch", "ort", "openvino"):
        from .large_frames import LargeFrameBackend

        backend = LargeFrameBackend(backend, options.checkpoint, options.variant,
                                    checkpoint_known=options.onnx is None or options.checkpoint is not None,
                                    video=video)
    return backend
