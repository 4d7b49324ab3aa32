"""What every runtime command writes besides frames: the JSON report and the metrics note (progress lines:
sfadacof.progress; the report keys: runtime/README.md, "Report keys").

    write_json(path, obj)   -- atomic; Path and numpy scalars as plain JSON, inf/nan as the strings "inf"/"nan"
    METRICS_NOTE            -- how psnr/ssim in a report were computed (runtime.infer, runtime.accuracy)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sfadacof.outputs import atomic_write_text

METRICS_NOTE = ("psnr/ssim are computed on the written 8-bit output (/255) against the ground truth as decoded "
                "(8-bit /255, 16-bit /65535, alpha dropped, grayscale replicated), data range 1, over all pixels "
                "and the three RGB channels; SSIM: 11x11 Gaussian window, sigma 1.5")


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(type(o).__name__)


def _finite(x):
    """JSON has no inf/nan: identical images (PSNR inf) become the string 'inf'."""
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def write_json(path: str | Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, default=_json_default) + "\n")
