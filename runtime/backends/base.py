"""The seam every backend implements: torch (reference), ONNX Runtime, TensorRT + pycuda.

A backend takes two batches of frames as float32 NCHW RGB in [0, 1] (any H, W >= 32; the model pads to 32 and
crops internally) and returns the middle frames as float32 NCHW, not clamped, so that accuracy checks compare
raw model outputs. Converting to 8-bit and writing files is the caller's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

import numpy as np

from ..cpu_info import available_cores, cpu_flags  # noqa: F401  (re-exported: the backends' import)


REPORTED_METADATA = ("variant", "kernel_size", "dilation", "checkpoint_sha256", "exporter", "opset")
_INTEGER_METADATA = frozenset({"kernel_size", "dilation", "opset", "epoch"})


def reported_metadata(meta: dict[str, str]) -> dict:
    """The export's metadata (ONNX metadata_props / IR rt_info: strings) as a report gives it: integers as numbers
    ("kernel_size": 5, "opset": 18), the rest as written."""
    out = {}
    for k in REPORTED_METADATA:
        if k in meta:
            v = meta[k]
            out[k] = int(v) if k in _INTEGER_METADATA and str(v).strip().isdigit() else v
    return out


class Backend(ABC):
    #: short name used on the command line (--backend NAME)
    name: str = ""

    @abstractmethod
    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 x2 -> (B, 3, H, W) float32."""

    def infer_many(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Outputs for a stream of pairs, in order. Backends that can overlap transfers with compute (TensorRT)
        override this; the default just calls infer."""
        for frame0, frame2 in pairs:
            yield self.infer(frame0, frame2)

    def describe(self) -> dict:
        """What ran: precision, device/provider, model identity; goes into reports."""
        return {"backend": self.name}

    def close(self) -> None:
        """Release sessions/buffers (idempotent)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
