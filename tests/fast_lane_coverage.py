"""Which modules of the packages a test run never exercised, from coverage.py's data of that run (tests/README.md,
"The fast lane"): a module counts as exercised when a line inside one of its functions ran -- importing it (its
`def` and class lines, its constants) is not enough; a module without functions, when it was imported.

    python -m coverage run -m pytest -n 2 -m "not slow"     # [tool.coverage.run] in pyproject.toml: subprocesses too
    python -m coverage combine
    python -m tests.fast_lane_coverage [DATA_FILE]           # lists what never ran; exit 1 if any module is listed
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("sfadacof", "export", "runtime", "calib", "plugins")
ROOT = Path(__file__).resolve().parents[1]


def body_lines(path: Path) -> set[int]:
    """Line numbers of the statements inside the module's functions and methods (what only a call runs)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def unexercised(data_file: str | None = None) -> list[str]:
    from coverage import CoverageData

    data = CoverageData(basename=data_file) if data_file else CoverageData()
    data.read()
    ran = {Path(f).resolve(): set(data.lines(f) or ()) for f in data.measured_files()}
    missing = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            body, lines = body_lines(path), ran.get(path.resolve(), set())
            if not (lines & body if body else lines or path.stat().st_size == 0):
                missing.append(str(path.relative_to(ROOT)))
    return missing


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    missing = unexercised(argv[0] if argv else None)
    for m in missing:
        print(f"not exercised: {m}")
    print(f"{len(missing)} module(s) of {', '.join(PACKAGES)} with no function line run")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
