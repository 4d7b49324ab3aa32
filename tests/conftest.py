"""Shared test configuration: GPU/TensorRT markers skip with a reason where the hardware or library is absent."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The model contract lives beside the repo (../shared/spec); SFADACOF_SPEC_DIR points elsewhere if needed.
SPEC_DIR = Path(os.environ.get("SFADACOF_SPEC_DIR", REPO_ROOT.parent / "shared" / "spec"))


def _gpu_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    return None


def _tensorrt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT Python package is not installed (it cannot be installed on this project's CI machines)"
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # the bindings import but fail without libnvinfer
        return f"TensorRT failed to import: {str(e).splitlines()[0][:120]}"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed"
    return _gpu_reason()


def pytest_collection_modifyitems(config, items):
    gpu_reason = _gpu_reason()
    trt_reason = None
    for item in items:
        if "tensorrt" in item.keywords:
            trt_reason = trt_reason or _tensorrt_reason() or ""
            if trt_reason:
                item.add_marker(pytest.mark.skip(reason=trt_reason))
        elif "gpu" in item.keywords and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    if not (SPEC_DIR / "MODEL.md").is_file():
        pytest.fail(f"the model contract is missing: {SPEC_DIR}/MODEL.md (set SFADACOF_SPEC_DIR)")
    return SPEC_DIR
