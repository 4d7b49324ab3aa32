"""User-facing errors: one line, naming the file and the problem, turned into a non-zero exit by the CLIs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, TypeVar

# At import (a command imports this before its main runs, most before torch or Ray): interrupts registers its exit
# step now, so that it runs after the exit steps those libraries register later (atexit runs the last first).
from .interrupts import exiting, interrupted_line, install_termination_handlers

if TYPE_CHECKING:
    import argparse

T = TypeVar("T")


class UserError(Exception):
    """An error caused by the user's input (bad file, bad flag); printed as one line, never a traceback."""


def require(module: str, why: str):
    """Import an optional dependency, or a UserError saying what needs it and how to install it (`why`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(why) from None


def one_line(text: object) -> str:
    """`text` with every character that is not printable (newline, carriage return, tab, escape, DEL, the C1
    controls, U+2028/U+2029, undecodable bytes of a file name) written as its Python escape (\\n, \\x1b, \\udcff):
    a file name holding a newline must not split an error into two lines, nor send escapes to the terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def os_error_line(e: OSError) -> str:
    """'FILE: what happened' for an OSError (a failed write names the output)."""
    where = e.filename if e.filename is not None else ""
    what = e.strerror or str(e) or type(e).__name__
    return f"{where}: {what}" if where else what


def cli_main(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a CLI `main`: every error a user can cause or fix ends as one line on stderr and a non-zero exit
    (one_line: control characters in names are escaped, so the line stays one line).

    UserError -> exit 2; KeyboardInterrupt -> "interrupted", exit 130 (128 + SIGINT, what a shell reports), and
    SIGTERM / SIGHUP the same way (sfadacof.interrupts: raised as KeyboardInterrupt, exit 143 / 129);
    OSError (disk full, permission denied, read-only file system while writing) -> exit 1 naming the file;
    MemoryError -> exit 1 with a hint. Anything else is a bug and keeps its traceback."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        # The process's own command (`python -m X`: main is defined in __main__), not a main called in-process:
        # from its end on, a signal ends the process in one line, never as a traceback or a kill (interrupts.exiting).
        own = main.__module__ == "__main__"
        try:
            install_termination_handlers()
            try:
                return main(*args, **kwargs)
            finally:
                if own:  # inside the outer try: a signal before this is an interrupt of the command (below)
                    exiting(ended_by_signal=False)
        except UserError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt as e:
            if own:
                exiting(ended_by_signal=True)  # its line follows: a second signal must not add another
            line, status = interrupted_line(e)
            print(line, file=sys.stderr)
            raise SystemExit(status) from None
        except MemoryError:
            print("error: out of memory (try smaller frames, or a lower --max-pixels)", file=sys.stderr)
            raise SystemExit(1) from None
        except BrokenPipeError:
            raise SystemExit(1) from None
        except OSError as e:
            print(f"error: {one_line(os_error_line(e))}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper


def cli_command(build_parser: Callable[[], "argparse.ArgumentParser"]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """`@cli_command(build_parser)` on `def main(args) -> int`: the decorated name is `main(argv=None)`, which parses
    argv (None: sys.argv) with build_parser() and runs the body under cli_main's error handling; `args.argv` holds
    the arguments it parsed."""

    def decorate(run: Callable[..., T]) -> Callable[..., T]:
        @cli_main
        @wraps(run)
        def main(argv: list[str] | None = None) -> T:
            args = build_parser().parse_args(argv)
            args.argv = list(sys.argv[1:] if argv is None else argv)  # as given (a report quotes its command line)
            return run(args)

        return main

    return decorate
