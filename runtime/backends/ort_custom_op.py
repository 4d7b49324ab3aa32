"""ONNX Runtime support for the plugin-form graph: the `sfadacof::AdaCoFSynthesis` node computed by the project's
C++ CPU kernel (plugins/adacof_cpu.cpp, through plugins.cpu_op's ctypes wrapper).

Route: onnxruntime-extensions' Python custom ops ("PyOp"). `register()` declares the op once per process with
onnxruntime_extensions.onnx_op; `session_options()` returns SessionOptions with the extensions library registered,
which makes ORT resolve the node and call back into Python, which calls the C++ kernel on the input buffers.
Why this route:
  * It runs the exact graph TensorRT parses (same node, same domain, attributes) with the same C++ arithmetic the
    CUDA kernel shares (plugins/adacof_math.h), so no second implementation of the op exists for ORT.
  * It needs no ORT C/C++ headers or per-ORT-version build: onnxruntime-extensions ships wheels matching ORT's ABI.
    (Checked: onnxruntime-extensions 0.15.2 with onnxruntime 1.32.0.)
  * The PyOp domain: extensions registers Python ops in its own domain "ai.onnx.contrib" unless the op_type is
    spelled "domain::OpType", which registers it in that domain -- used here so the node keeps domain `sfadacof`.
Costs (measured at 960x544, 2 cores): the callback copies the output through a Python list
(onnxruntime-extensions' PyOp protocol), ~0.15 s per call, ~2% of an ORT CPU frame with this model. The op
holds the GIL while it runs (the C++ kernel itself is multi-threaded).

The kernel's thread count follows `set_threads()` (OrtBackend sets it from its `threads`), default: all cores.

Errors: a Python exception must never leave the callback -- onnxruntime-extensions calls it from C++, where an
exception ends in std::terminate() (SIGABRT). The callback therefore catches every exception, records it, returns
a zero frame, and `run_session()` raises the recorded error (CustomOpError) once `session.run` has returned.
Ctrl-C is held during `run_session` by sfadacof.interrupts.deferred_sigint (see there why a try/except inside the
callback cannot cover it) and raised as KeyboardInterrupt right after. Run every session holding this op through
`run_session`.
"""

from __future__ import annotations

import threading

import numpy as np

from plugins.onnx_node import DOMAIN, OP_TYPE
from sfadacof.errors import UserError
from sfadacof.interrupts import deferred_sigint

_lock = threading.Lock()
_registered = False
_threads = 0  # 0: the C++ kernel uses every hardware thread
_errors: list[BaseException] = []  # raised inside the callback, re-raised by run_session


class CustomOpError(Exception):
    """The AdaCoFSynthesis node failed inside ONNX Runtime (bad attributes, map shapes that do not fit)."""


def run_session(session, output_names, feed: dict):
    """session.run with the custom op's errors and Ctrl-C raised here, in Python, instead of aborting in C++."""
    with _lock:
        _errors.clear()
    with deferred_sigint():
        try:
            out = session.run(output_names, feed)
        finally:
            with _lock:
                errors = list(_errors)
                _errors.clear()
    if errors:
        first = errors[0]
        if isinstance(first, KeyboardInterrupt):
            raise first
        text = str(first).strip().splitlines()[0] if str(first).strip() else type(first).__name__
        raise CustomOpError(f"{DOMAIN}::{OP_TYPE} node: {text}")
    return out


def set_threads(n: int | None) -> None:
    """Threads the C++ kernel uses per call (None or 0: all hardware threads)."""
    global _threads
    _threads = int(n or 0)


def cpu_library_path() -> str:
    """Path of the C++ CPU library the op will use; UserError (one line, how to build it) when it is missing."""
    from plugins._libs import LibraryNotBuilt
    from plugins.cpu_op import library_path

    try:
        return library_path()
    except LibraryNotBuilt as e:
        raise UserError(f"the plugin-form graph needs the C++ CPU kernel: {e}") from None


def _require_extensions():
    try:
        import onnxruntime_extensions
    except ImportError:
        raise UserError("the plugin-form graph needs onnxruntime-extensions (pip install onnxruntime-extensions), "
                        "or export with --synthesis onnx") from None
    return onnxruntime_extensions


def register() -> None:
    """Declare the PyOp (idempotent; declaring it twice would register two kernels for one op)."""
    global _registered
    with _lock:
        if _registered:
            return
        ortx = _require_extensions()
        cpu_library_path()  # fail now, with the build command, rather than inside ORT at the first run
        from plugins import cpu_op

        dt = ortx.PyCustomOpDef

        # Not declared: the optional `fp16_offsets` (plugins/onnx_node.py). onnxruntime-extensions requires every
        # declared attribute on the node, ignores undeclared ones, and this op is float32 throughout anyway.
        @ortx.onnx_op(op_type=f"{DOMAIN}::{OP_TYPE}", inputs=[dt.dt_float] * 9, outputs=[dt.dt_float],
                      attrs={"kernel_size": dt.dt_int64, "dilation": dt.dt_int64,
                             "plugin_version": dt.dt_string, "plugin_namespace": dt.dt_string})
        def _adacof_synthesis(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion,
                              kernel_size=5, dilation=1, plugin_version="1", plugin_namespace=""):
            try:
                if int(kernel_size) < 1 or int(dilation) < 1:
                    raise ValueError(f"kernel_size {kernel_size} and dilation {dilation} must be >= 1")
                # looked up per call (not bound at registration) so a rebuilt/reloaded wrapper is picked up
                out = cpu_op.adacof_synthesis_cpu(frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2,
                                                  occlusion, int(kernel_size), int(dilation), num_threads=_threads)
                return np.ascontiguousarray(out, dtype=np.float32)
            except BaseException as e:  # noqa: BLE001 -- nothing may propagate into C++ (see module docstring)
                with _lock:
                    _errors.append(e)
                return np.zeros(np.shape(frame0), dtype=np.float32)

        _registered = True


def library_path() -> str:
    """The onnxruntime-extensions library to pass to SessionOptions.register_custom_ops_library."""
    return _require_extensions().get_library_path()


def add_to_session_options(options) -> None:
    """Make `options` (onnxruntime.SessionOptions) resolve the sfadacof custom op."""
    register()
    options.register_custom_ops_library(library_path())


def session_options(threads: int | None = None):
    """Fresh SessionOptions with the custom op registered (see runtime.backends.ort_backend for tuned ones)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    add_to_session_options(so)
    return so
