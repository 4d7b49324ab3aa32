"""Ctrl-C inside foreign code: `deferred_sigint()` holds SIGINT while a native call that calls back into Python runs.

Why: ONNX Runtime calls the sfadacof custom op's Python function (runtime/backends/ort_custom_op.py) from C++ through
onnxruntime-extensions. Python delivers a pending SIGINT as KeyboardInterrupt at the next bytecode the main thread
runs -- which, while `session.run` is in progress, is that callback; the exception then unwinds into C++ and
std::terminate() aborts the process (SIGABRT, temp files left behind). No try/except inside the callback can
close this: the interrupt may be raised at its first instruction, before any handler is set up. So the signal is
recorded while the call runs and delivered as KeyboardInterrupt the moment it returns, in ordinary Python code.
The cost: Ctrl-C waits for the current call (one frame) to finish.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Record SIGINT during the block; afterwards hand it to the previous handler (default: KeyboardInterrupt).

    Only the main thread can install signal handlers (and only it receives Python-level signals), so elsewhere
    this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[object] = []
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt
