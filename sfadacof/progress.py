"""Progress of long runs on stderr, whether or not stderr is a terminal (every command that can run > ~10 s).

    with Progress(total, "interpolating", unit="pair") as bar: ... bar.update()
    for x in progress(items, total, "interpolating", unit="pair"): ...
    with heartbeat("exporting ONNX"): ...         # work that reports no steps (the ONNX exporter)
    per_unit(seconds, count, unit) -> "2.77 s/pair" -- the one definition of a per-item figure

On a terminal: a tqdm bar. Otherwise (a log file, CI, a tool capturing output) a plain line at least every
`every` seconds (10 by default; $SFADACOF_PROGRESS_SECONDS), from a background thread so that one slow item (a 25 s
frame) still gets its lines:

    interpolating: 3/10 pairs, 2.77 s/pair, ETA 19 s, 8 s elapsed

and a closing line when the loop finished (none after an error: the error is the last line). Rates are wall time since the start divided by the items done: what the user waits for, and
the figure a command's summary line repeats under the same name (per_unit).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

EVERY_SECONDS = 10.0


def _every(every: float | None) -> float:
    """The interval: `every`, else $SFADACOF_PROGRESS_SECONDS (tests shorten it), else 10 s."""
    if every is not None:
        return every
    try:
        return max(0.01, float(os.environ.get("SFADACOF_PROGRESS_SECONDS", EVERY_SECONDS)))
    except ValueError:
        return EVERY_SECONDS


def _plural(unit: str, n: float) -> str:
    return unit if n == 1 else unit + "s"


def per_unit(seconds: float, count: int, unit: str) -> str:
    """`X s/<unit>`: wall seconds per item, the figure progress lines and summaries print under one name."""
    return f"{seconds / count:.3f} s/{unit}" if count else f"- s/{unit}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d} min"


class Progress:
    """A counted loop's progress (see the module doc). Thread-safe `update`; `close` prints the last line."""

    def __init__(self, total: int | None, desc: str, unit: str = "item", *, every: float | None = None,
                 stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, _every(every)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.done = 0
        self.t0 = time.perf_counter()
        self._end: float | None = None  # set by close: elapsed stays the figure the closing line printed
        self._last_line = self.t0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)
        # no opening line: bad input found on the first item ends as its one error line, not among progress lines
        # one line (or a bar refresh) per interval even while an item runs for longer than that
        self._thread = threading.Thread(target=self._tick, name=f"progress {desc}", daemon=True)
        self._thread.start()

    @property
    def elapsed(self) -> float:
        return (self._end if self._end is not None else time.perf_counter()) - self.t0

    def line(self) -> str:
        """The plain progress line: done/total, wall seconds per item, ETA, elapsed."""
        elapsed, done = self.elapsed, self.done
        text = f"{self.desc}: {done}" + (f"/{self.total}" if self.total is not None else "")
        text += f" {_plural(self.unit, self.total if self.total is not None else done)}"
        if done:
            text += f", {per_unit(elapsed, done, self.unit)}"
            if self.total is not None:
                text += f", ETA {_duration(elapsed / done * max(self.total - done, 0))}"
        return text + f", {_duration(elapsed)} elapsed"

    def _emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last_line = time.perf_counter()

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.every)):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()  # keeps the bar's elapsed time moving during a long item
                elif time.perf_counter() - self._last_line >= self.every:
                    self._emit()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
            elif time.perf_counter() - self._last_line >= self.every:
                self._emit()

    def close(self, ok: bool = True) -> None:
        """Stop the thread; the closing line only when the loop finished (`ok`): a failure's last line is its error."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._end = time.perf_counter()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
            elif ok:
                print(f"{self.desc}: finished {self.done} {_plural(self.unit, self.done)} in "
                      f"{_duration(self.elapsed)}" + (f", {per_unit(self.elapsed, self.done, self.unit)}"
                                                      if self.done else ""), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(ok=exc_type is None)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "item", *,
             every: float | None = None, stream: IO[str] | None = None, tty: bool | None = None,
             bar: list | None = None) -> Iterator[T]:
    """Iterate with a Progress; `bar`, when a list, receives the Progress (for its elapsed time afterwards)."""
    p = Progress(total, desc, unit, every=every, stream=stream, tty=tty)
    if bar is not None:
        bar.append(p)
    with p:
        for x in iterable:
            yield x
            p.update()


@contextlib.contextmanager
def heartbeat(desc: str, *, every: float | None = None, stream: IO[str] | None = None) -> Iterator[callable]:
    """Lines for work that reports no steps: `desc: <phase>, N s elapsed` at each phase() and every `every` seconds
    from a thread while the block runs, and `desc: done in N s` when it succeeded. Yields `phase(text)`
    to name the current phase (it prints a line at once). On a terminal too: the exporter shows nothing else."""
    stream = stream if stream is not None else sys.stderr
    every = _every(every)
    t0 = time.perf_counter()
    state = {"phase": "running"}
    stop = threading.Event()
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(f"{desc}: {text}", file=stream, flush=True)

    def phase(text: str) -> None:
        state["phase"] = text
        say(f"{text}, {_duration(time.perf_counter() - t0)} elapsed")

    def tick() -> None:
        while not stop.wait(every):
            say(f"{state['phase']}, {_duration(time.perf_counter() - t0)} elapsed")

    # no opening line: bad input found at once ends as its one error line; phase() (or the first tick) starts the lines
    thread = threading.Thread(target=tick, name=f"heartbeat {desc}", daemon=True)
    thread.start()
    try:
        yield phase
    finally:
        stop.set()
        thread.join()
    # after a failure nothing more: its error (or "interrupted") is the last line
    say(f"done in {_duration(time.perf_counter() - t0)}")
