"""Where a command may write, and how: the one home of the output-path guard and of atomic writes.

Guard (`check_outputs`), called by every CLI before any work:
  * no output may be an input (same file, through symlinks and hard links), nor lie inside an input folder being
    read, nor contain an input folder's files as its own (an output folder equal to an input folder);
  * a file output must not be an existing folder, a folder output must not be an existing file;
  * two outputs must not be the same path;
  * the place an output will be created must be writable now -- probed by creating (and at once removing) an
    anonymous file there, because os.access() answers "writable" for root on read-only or immutable folders.

Atomic writes: every file is written to a hidden temp file beside its target and renamed over it, so a reader (or
an interrupted run) never leaves a half-written file under the real name; the temp file is removed on any error,
KeyboardInterrupt included.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Output:
    """One path a command will write: `flag` names it in messages, `folder` says whether it is a folder."""

    flag: str
    path: Path
    folder: bool = False


def output_file(flag: str, path: PathLike | None) -> Output | None:
    return None if path is None else Output(flag, Path(path), False)


def output_folder(flag: str, path: PathLike | None) -> Output | None:
    return None if path is None else Output(flag, Path(path), True)


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _real(a) == _real(b)


def _is_within(child: Path, parent: Path) -> bool:
    c, p = _real(child), _real(parent)
    return c == p or p in c.parents


def _existing_ancestor(p: Path) -> Path:
    p = Path(os.path.abspath(p))
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe_writable(folder: Path) -> str | None:
    """None if a file can be created in `folder`, else the reason."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def check_outputs(inputs: Iterable[PathLike | None], outputs: Iterable[Output | None]) -> None:
    """Refuse (UserError, one line) any output that is an input, lies inside an input folder, collides with another
    output or cannot be created. `inputs`: every file and folder the command reads (None entries ignored)."""
    ins = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    outs = [o for o in outputs if o is not None]
    for o in outs:
        p = o.path
        for i in ins:
            if i.is_dir():
                if _is_within(p, i):
                    where = "is" if _real(p) == _real(i) else "is inside"
                    raise UserError(f"{p}: {o.flag} {where} the input folder {i}; outputs must not be written "
                                    "into the input tree (choose another path)")
            elif p.exists() and _same_file(p, i):
                raise UserError(f"{p}: {o.flag} is the input {i}; it would be overwritten (choose another path)")
        if p.exists():
            if o.folder and not p.is_dir():
                raise UserError(f"{p}: {o.flag} exists and is not a folder")
            if not o.folder and p.is_dir():
                raise UserError(f"{p}: {o.flag} is a folder; pass a file name")
        target = p if o.folder and p.is_dir() else _existing_ancestor(p.parent if not o.folder else p)
        if not target.is_dir():
            raise UserError(f"{p}: {o.flag} cannot be created ({target} is not a folder)")
        reason = _probe_writable(target)
        if reason is not None:
            raise UserError(f"{p}: {o.flag} cannot be written ({target}: {reason})")
    for a_i, a in enumerate(outs):
        for b in outs[a_i + 1:]:
            if _real(a.path) == _real(b.path):
                raise UserError(f"{a.path}: {a.flag} and {b.flag} name the same path")


# -- atomic writes ---------------------------------------------------------------------------------------------------

def default_file_mode() -> int:
    """What open() would give a new file (0o666 minus the umask); mkstemp's files are 0o600."""
    old = os.umask(0)
    os.umask(old)
    return 0o666 & ~old


def temp_path_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new hidden, empty temp file in `path`'s folder (created, so the name is ours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is given the usual file mode and renamed over `path`, on any
    exception (KeyboardInterrupt included) it is removed. `suffix` lets writers that pick a format by extension
    (PIL, ONNX Runtime's quantizer, muxers) see the real one."""
    path = Path(path)
    tmp = temp_path_beside(path, suffix)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, write: Callable[[Path], object]) -> None:
    """Call write(tmp_path) on a temp file beside `path`, then rename it over `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def atomic_write_files(files: dict[PathLike, bytes]) -> None:
    """Write several files as one: every temp file is written first (a failure there leaves none of them), then
    they are renamed in order, so put the one whose presence says "complete" (a sidecar) last. A rename that fails
    undoes the earlier ones: files this call created are removed, files it replaced get their old content back
    (kept as a hard link, or a copy, until the last rename is done)."""
    temps: list[tuple[Path, Path]] = []
    done: list[tuple[Path, Path | None]] = []  # (path renamed into place, its previous content)
    try:
        for path, data in files.items():
            tmp = temp_path_beside(Path(path))
            temps.append((tmp, Path(path)))
            tmp.write_bytes(data)
            os.chmod(tmp, default_file_mode())
        for tmp, path in temps:
            old = None
            if path.exists() or path.is_symlink():
                old = Path(f"{tmp}.old")
                try:
                    os.link(path, old, follow_symlinks=False)
                except OSError:
                    shutil.copy2(path, old, follow_symlinks=False)
            done.append((path, old))
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for path, old in reversed(done):
            if old is not None and old.exists():
                os.replace(old, path)
            elif old is None:
                path.unlink(missing_ok=True)
        raise
    for _, old in done:
        if old is not None:
            old.unlink(missing_ok=True)


class StagedFolder:
    """Files destined for `folder`, written into a hidden sibling folder and moved in by `commit()`; `abort()`
    removes them. An interrupted or failed run leaves no partial set of files in `folder`."""

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", suffix=".partial", dir=self.folder.parent))

    def path(self, name: str) -> Path:
        return self.stage / name

    def commit(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        mode = default_file_mode()
        for f in sorted(self.stage.iterdir()):
            os.chmod(f, mode)
            os.replace(f, self.folder / f.name)
        self.stage.rmdir()

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


def cache_dir(kind: str) -> Path:
    """$SFADACOF_CACHE/KIND (default ~/.cache/sfadacof/KIND): the ONNX export cache ("onnx"), the engines ("engines")."""
    env = os.environ.get("SFADACOF_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "sfadacof") / kind


def create_cache_dir(root: Path, what: str) -> None:
    """mkdir -p a cache folder; UserError naming it (and SFADACOF_CACHE, to put it elsewhere) when that fails."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{root}: cannot create the {what} ({e.strerror or e}); set SFADACOF_CACHE") from None
