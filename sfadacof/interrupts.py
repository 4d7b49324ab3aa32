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

`exiting()`: a signal that arrives after a CLI's main has ended. Without it, Ctrl-C in `sys.exit(main())` raised a
KeyboardInterrupt outside every handler (a traceback, and the interpreter killed itself by SIGINT: exit -2), in an
exit step a library registered (a traceback, exit 0), or, once the interpreter had put the default actions back
for its last teardown, killed the process outright (exit -2 / -15). From the end of main on, such a signal is
recorded while Python still runs (the exit steps run on) and ends the process at sfadacof's own exit step with the
command's one line and exit 128 + N; that step then ignores these signals for the teardown that follows, where no
Python handler can run: a signal there leaves the finished command's status as it is.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
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
    return _line_for(getattr(e, "signum", _received[0] if _received else signal.SIGINT))


def _line_for(signum: int) -> tuple[str, int]:
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


_exit_state: dict = {"armed": False, "ended_by_signal": False}
_late: list[int] = []  # signals received after main ended


def _record_late(signum, frame) -> None:
    """After main: the exit steps run on; a second signal ends the process at once (an exit step that hangs)."""
    _late.append(signum)
    if len(_late) > 1:
        _end_interrupted(_late[0])


def _end_interrupted(signum: int) -> None:
    line, status = _line_for(signum)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        pass
    os._exit(status)


def exiting(ended_by_signal: bool) -> None:
    """Called by the CLI wrapper (sfadacof.errors.cli_main) when the process's own command ends, in every way, before
    the interpreter exits: from now on SIGINT / SIGTERM / SIGHUP never raise. After a normal end or an error, the
    first is recorded and ends the process at the last exit step (_at_exit) with its one line and 128 + N; after an
    interrupt (its line already printed) they are ignored. A signal the process ignores (nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    _exit_state["armed"] = True
    _exit_state["ended_by_signal"] = ended_by_signal
    for s in HELD:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _ignore_further if ended_by_signal else _record_late)


@atexit.register  # at import, before the libraries a command imports later: atexit runs the last registered first
def _at_exit() -> None:
    """The last Python-level exit step of a CLI process: a signal recorded since main ended ends it here, in one
    line; then the held signals are ignored for the interpreter's teardown, which runs no Python handler (it puts
    the default actions back, which killed the process by the signal)."""
    if not _exit_state["armed"]:
        return
    held = [s for s in HELD if signal.getsignal(s) is not signal.SIG_IGN]
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    pending = signal.sigpending()  # sent since the block; one sent just before it was recorded by its handler
    for s in held:
        signal.signal(s, signal.SIG_IGN)  # also drops the pending ones
    signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    first = _late[0] if _late else next((s for s in held if s in pending), None)
    if first is not None and not _exit_state["ended_by_signal"]:
        _end_interrupted(first)
