"""User-facing errors: one line, naming the file and the problem, turned into exit code 2 by the CLIs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """An error caused by the user's input (bad file, bad flag); printed as one line, never a traceback."""


def cli_main(main: Callable[..., T]) -> Callable[..., T]:
    """Decorate a CLI `main`: UserError and KeyboardInterrupt become one line on stderr and a non-zero exit."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
