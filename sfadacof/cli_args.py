"""Flag validation shared by every CLI: argparse `type=` functions that refuse a bad value while the command line is
parsed, before any work starts, and an ArgumentParser whose errors are one line.

A `type=` function raising argparse.ArgumentTypeError makes argparse report "argument --fps: <message>"; the
parser below prints that as one line and exits 2 (argparse's usual status), instead of the full usage block.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

# 3840x2160 (4K UHD) fits; peak memory: sfadacof.images.estimated_gb (whole) and estimated_gb_in_pieces
DEFAULT_MAX_PIXELS = 8_400_000


HELP_WIDTH = 100  # --help lines stay within this, whatever the terminal


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every command's --help: the description laid out as written (a line over HELP_WIDTH wrapped, indented under
    itself), flag help wrapped at HELP_WIDTH, and each flag's default shown (" (default: X)") unless it is None or
    False (a switch) or the help already says it (tests/test_cli_help.py holds every command to this)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=HELP_WIDTH, max_help_position=30)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if lines and all(ln[:1].strip() for ln in lines) and any(len(indent + ln) > width for ln in lines):
                # prose written wider than the help: refilled as one paragraph
                out.append(textwrap.fill(" ".join(lines), width, initial_indent=indent, subsequent_indent=indent,
                                         break_on_hyphens=False))
                continue
            kept = []
            for line in lines:  # laid-out lines (usage examples, tables): kept, a too-long one wrapped under itself
                line = indent + line
                if len(line) <= width:
                    kept.append(line)
                    continue
                lead = line[:len(line) - len(line.lstrip())]
                kept.append(textwrap.fill(line.strip(), width, initial_indent=lead, subsequent_indent=lead + "    ",
                                          break_on_hyphens=False))
            out.append("\n".join(kept))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text or "default" in text:
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: `prog: error: argument --fps: must be > 0, got 0 (see --help)`, and the
    project's HelpFormatter unless another is given."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D102
        from .errors import one_line

        print(f"{self.prog}: error: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def add_size_limits(p: argparse.ArgumentParser) -> None:
    """--max-pixels and --memory-budget, which every command reading frames takes (checked from each frame's header,
    before decoding: sfadacof.images.check_pixel_budget)."""
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse frames with more pixels than this, before decoding (default {DEFAULT_MAX_PIXELS}: "
                        "3840x2160)")
    p.add_argument("--memory-budget", type=positive_float, default=None, metavar="GB",
                   help="refuse, before decoding, frames one interpolation of which would need more memory than this "
                        "(frames too large to run whole run in pieces; default $SFADACOF_MEMORY_BUDGET_GB, else half the "
                        "memory available when the command starts, at least 2 GB)")


def help_first(module_name: str, build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """`python -m X -h/--help` answered before X's heavy imports: X calls this above them, right after build_parser
    (which must need nothing heavy). A promise to users: --help within 1.5 s (tests/test_cli_help.py)."""
    if module_name == "__main__" and {"-h", "--help"} & set(sys.argv[1:]):
        build_parser().parse_args(["--help"])


def command_parser(module: str, doc: str | None) -> ArgumentParser:
    """The parser of `python -m MODULE`, its module docstring as the description, laid out as written."""
    return ArgumentParser(prog=f"python -m {module}", description=doc)


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (either bound may be open-ended: None)."""

    def parse(text: str) -> int:
        v = _number(text, int)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(_range_text(lo, hi, text))
        return v

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False) -> Callable[[str], float]:
    """A finite float in the range (each end closed unless *_open; None = unbounded)."""

    def parse(text: str) -> float:
        v = _number(text, float)
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or \
              (hi is not None and (v > hi or (hi_open and v == hi)))
        if bad:
            if hi is None:
                rule = f"{'>' if lo_open else '>='} {lo:g}"
            elif lo is None:
                rule = f"{'<' if hi_open else '<='} {hi:g}"
            else:
                rule = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return v

    parse.__name__ = "number"
    return parse


def _range_text(lo, hi, text) -> str:
    if hi is None:
        return f"must be >= {lo}, got {text}"
    if lo is None:
        return f"must be <= {hi}, got {text}"
    return f"must be in {lo}..{hi}, got {text}"


positive_int = int_range(1)
nonnegative_int = int_range(0)
positive_float = float_range(0.0, lo_open=True)
nonnegative_float = float_range(0.0)
finite_float = float_range()
fraction = float_range(0.0, 1.0, lo_open=True)          # (0, 1]
closed_fraction = float_range(0.0, 1.0)                 # [0, 1]
percentile = float_range(0.0, 100.0, lo_open=True)      # (0, 100]
crf = int_range(0, 51)                                  # x264's quality scale


def auto_device(text: str) -> str:
    """auto (cuda where torch sees a GPU, else cpu: resolve_device after parsing), cpu, cuda or cuda:N."""
    return "auto" if text.strip().lower() == "auto" else device(text)


def resolve_device(text: str) -> str:
    """auto_device's value as torch takes it (imports torch: call it after parsing)."""
    if text != "auto":
        return text
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device(text: str) -> str:
    """cpu, cuda or cuda:N (what torch and ONNX Runtime here can be asked for)."""
    t = text.strip().lower()
    if t == "cpu" or t == "cuda" or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"choose cpu, cuda or cuda:N, got {text!r}")
