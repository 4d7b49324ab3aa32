"""Signals that end a run: SIGINT (Ctrl-C), SIGTERM and SIGHUP all end it the same way, and never inside foreign code.

SIGTERM / SIGHUP: Python's default is to die at once, skipping every `finally` -- the hidden temp files and staging
folders of sfadacof.outputs stay behind. `install_termination_handlers()` (run by every CLI, sfadacof.errors) turns
them into `Terminated`, a KeyboardInterrupt, so the cleanup that Ctrl-C runs runs for them too, and the CLI ends
with one line and exit 128 + N, as a shell reports a process killed by signal N. A second signal while that cleanup
runs is ignored (the cleanup finishes; SIGKILL still ends it at once).

`deferred_sigint()`: holds these signals while a native call that calls back into Python runs. Why: ONNX Runtime
calls the sfadacof custom op's Python function (runtime/backends/ort_custom_op.py) from C++ through
onnxruntime-extensions. Python delivers a pending signal's exception at the next bytecode the main thread runs --
which, while `session.run` is in progress, is that callback; the exception then unwinds into C++ and
std::terminate() aborts the process (SIGABRT, temp files left behind). No try/except inside the callback can
close this: the interrupt may be raised at its first instruction, before any handler is set up. So the signal is
recorded while the call runs and delivered the moment it returns, in ordinary Python code.
The cost: an interrupt waits for the current call (one frame) to finish.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TERMINATING = (signal.SIGTERM, signal.SIGHUP)
HELD = (signal.SIGINT, *TERMINATING)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so that every cleanup path runs for it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the terminating signal, kept apart: foreign code (Ray's wait) may re-raise a plain
                           # KeyboardInterrupt in place of ours


def _ignore_further(signum, frame) -> None:
    """A second signal during the cleanup of the first: let the cleanup finish."""


def _raise_terminated(signum, frame) -> None:
    if _received:
        return
    _received.append(signum)
    for s in HELD:
        signal.signal(s, _ignore_further)
    raise Terminated(signum)


def install_termination_handlers() -> None:
    """SIGTERM and SIGHUP -> Terminated (a KeyboardInterrupt) in the main thread. A signal the process was told to
    ignore (nohup sets SIGHUP to SIG_IGN) stays ignored; elsewhere than the main thread this is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in TERMINATING:
        if signal.getsignal(s) is signal.SIG_DFL:
            signal.signal(s, _raise_terminated)


def interrupted_line(e: KeyboardInterrupt) -> tuple[str, int]:
    """The CLI's last line and exit status for an interrupt: 128 + the signal's number."""
    signum = getattr(e, "signum", _received[0] if _received else signal.SIGINT)
    if signum == signal.SIGINT:
        return "interrupted", 128 + signal.SIGINT
    return f"interrupted ({signal.Signals(signum).name})", 128 + signum


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Record SIGINT, SIGTERM and SIGHUP during the block; afterwards hand the first to its previous handler
    (SIGINT's default: KeyboardInterrupt; SIGTERM/SIGHUP under a CLI: Terminated).

    Only the main thread can install signal handlers (and only it receives Python-level signals), so elsewhere
    this is a no-op. A signal whose handler is not a Python function (default death, ignored) is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for s in HELD:
        h = signal.getsignal(s)
        if callable(h) or (s == signal.SIGINT and h == signal.SIG_DFL):
            previous[s] = h
            signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if received:
            first = received[0]
            h = previous[first]
            if callable(h):
                h(first, None)
            elif h == signal.SIG_DFL:
                raise KeyboardInterrupt
