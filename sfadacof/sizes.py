"""Frame sizes on the command line, the one parser for them: WIDTHxHEIGHT everywhere, as image tools say it.

    parse_size("448x256", "--size") -> (448, 256)   # (width, height)

Used by sfadacof.train (--crop, --val-crop), sfadacof.evaluate (--crop), calib (--size, --eval-size,
--bench-size), runtime.benchmark (--sizes) and runtime.parity (--benchmark). Until this module, train's and
evaluate's crops were HEIGHTxWIDTH; they are WIDTHxHEIGHT now (train's default --val-crop 256x448 became 448x256),
which the help of each flag says.
"""

from __future__ import annotations

from .errors import UserError


def parse_size(text: str, flag: str, *, minimum: int = 32, multiple: int = 1, square: bool = False,
               full: bool = False) -> tuple[int, int] | None:
    """'WIDTHxHEIGHT' -> (width, height); UserError naming `flag` otherwise.

    square: a single number N means NxN; full: 'full' means no size (returns None); each side must be at least
    `minimum` and a multiple of `multiple`."""
    t = text.strip().lower()
    if full and t == "full":
        return None
    try:
        if square and "x" not in t:
            w = h = int(t)
        else:
            w, h = (int(v) for v in t.split("x"))
    except ValueError:
        forms = ["WIDTHxHEIGHT such as 448x256"] + (["N"] if square else []) + (["'full'"] if full else [])
        raise UserError(f"{flag} {text!r}: expected {' or '.join(forms)}") from None
    if w < minimum or h < minimum or w % multiple or h % multiple:
        raise UserError(f"{flag} {w}x{h}: must be at least {minimum}x{minimum}"
                        + (f" and multiples of {multiple}" if multiple > 1 else ""))
    return w, h
