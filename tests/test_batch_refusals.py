"""runtime.batch's flags that belong to runtime.infer only: `--fps N` (retiming to a target rate) is refused by name
in one line, exit 2, before a cluster starts or anything is written -- not left to argparse's generic
"unrecognized arguments", and never silently run as --factor 2. No Ray needed: the refusal comes first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import write_bikes_pair

REPO = Path(__file__).resolve().parents[1]


def test_fps_is_refused_in_one_line(tmp_path):
    src = tmp_path / "pairs"
    write_bikes_pair(src / "p00", 64, names=("a.png", "b.png"))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "runtime.batch", str(src), "-o", str(out), "--backend", "torch",
                        "--fps", "60"], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: --fps 60: runtime.batch does not retime"), lines[0]
    assert "runtime.infer CLIP -o OUT --fps N" in lines[0]
    assert r.stdout == "" and not out.exists()  # refused before any output folder, summary or cluster
