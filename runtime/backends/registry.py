"""One place that turns `--backend NAME` and its options into a Backend.

Each backend module is imported only when chosen, so a machine without onnxruntime / TensorRT / pycuda can still
use the others, and a missing piece is reported as one line naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sfadacof.errors import UserError

from .base import Backend

BACKENDS: tuple[str, ...] = ("torch", "ort", "trt")


@dataclass
class BackendOptions:
    checkpoint: Path | None = None  # torch; ort exports from it when no --onnx is given
    variant: str | None = None
    device: str = "cpu"             # torch: cpu / cuda; ort: cpu / cuda provider
    onnx: Path | None = None        # ort: run this graph instead of exporting the checkpoint
    engine: Path | None = None      # trt: serialized engine (with its sidecar JSON beside it)
    plugin: Path | None = None      # trt: plugin library (when not serialized into the engine)
    precision: str = "fp32"         # ort: fp32 / fp16 graph
    skip_engine_check: bool = False  # trt: run even if the sidecar does not match this machine


def _torch(o: BackendOptions) -> Backend:
    from .torch_backend import TorchBackend

    return TorchBackend(o.checkpoint, device=o.device, variant=o.variant)


def _ort(o: BackendOptions) -> Backend:
    try:
        from .ort_backend import OrtBackend, onnx_for_checkpoint
    except ModuleNotFoundError as e:
        if e.name == "onnxruntime":
            raise UserError("--backend ort: onnxruntime is not installed (pip install onnxruntime)") from None
        raise
    # Without --onnx, export the checkpoint (or reuse a cached export keyed by its hash and the export options).
    onnx_path = o.onnx if o.onnx is not None else onnx_for_checkpoint(o.checkpoint, precision=o.precision,
                                                                      variant=o.variant)
    return OrtBackend(onnx_path, device=o.device)


def _trt(o: BackendOptions) -> Backend:
    from .tensorrt_backend import TensorRTBackend

    if o.engine is None:
        raise UserError("--backend trt needs --engine ENGINE (build one with python -m runtime.build_engine)")
    return TensorRTBackend(o.engine, plugin=o.plugin, check_sidecar=not o.skip_engine_check)


_FACTORIES: dict[str, Callable[[BackendOptions], Backend]] = {"torch": _torch, "ort": _ort, "trt": _trt}


def create_backend(name: str, options: BackendOptions) -> Backend:
    if name not in _FACTORIES:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return _FACTORIES[name](options)
