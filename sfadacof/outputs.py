"""Where a command may write, and how: the one home of the output-path guard and of atomic writes.

Guard (`check_outputs`), called by every CLI before any work, on every path the command will write -- the named
outputs and the files it derives inside an output folder (a pair's NAME.png, a Triton model folder, batch's
OUT/<source>/), so that one rule holds for every command:
  * no output may be an input (same file, through symlinks and hard links), nor lie inside an input folder being
    read, nor contain an input folder's files as its own (an output folder equal to an input folder);
  * a folder the command replaces as a whole (`output_folder(..., whole=True)`: a video's PNG frames, a Triton model
    folder) must not hold an input, and must be absent, empty or recognised as this command's own earlier output
    (`ours`); a derived file may replace only a file this project wrote (`ours`; a PNG carries PNG_MARK) -- a
    command never deletes or replaces a file it did not create;
  * a file output must not be an existing folder, a folder output must not be an existing file;
  * two outputs must not be the same path (--report OUT/p.png vs pair p's frame), nor a file output lie inside a
    folder replaced as a whole;
  * the place an output will be created must be writable now -- probed by creating (and at once removing) an
    anonymous file there, because os.access() answers "writable" for root on read-only or immutable folders.
It also removes what a killed run (SIGKILL, power loss) left beside the outputs: hidden temp files and staging
folders of this module's naming pattern (`.NAME.sfa<pid>-XXXXXXXX.ext`) whose process is gone (`clean_stale`).

Atomic writes: every file is written to a hidden temp file beside its target and renamed over it, so a reader (or
an interrupted run) never leaves a half-written file under the real name; the temp file is removed on any error,
KeyboardInterrupt included (SIGTERM and SIGHUP arrive as KeyboardInterrupt too: sfadacof.interrupts). The temp name
holds the writer's pid, so a later run can tell a dead process's leftovers from a live writer's file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

PathLike = str | os.PathLike


Owner = Callable[[Path], bool]


@dataclass(frozen=True)
class Output:
    """One path a command will write: `flag` names it in messages, `folder` says whether it is a folder.

    `files`: the files the command derives inside it (a pair's NAME.png), each checked like an output of its own;
    `whole`: a folder the command replaces as a whole; `ours(path)`: whether an existing file of `files` (or, with
    `whole`, the existing folder) is this command's own earlier output and may be replaced."""

    flag: str
    path: Path
    folder: bool = False
    files: tuple[Path, ...] = ()
    whole: bool = False
    ours: Owner | None = None


def output_file(flag: str, path: PathLike | None) -> Output | None:
    return None if path is None else Output(flag, Path(path), False)


def output_folder(flag: str, path: PathLike | None, files: Iterable[PathLike] = (), *, whole: bool = False,
                  ours: Owner | None = None) -> Output | None:
    """A folder output; `files`: names (relative to it) or paths the command writes inside it."""
    if path is None:
        return None
    path = Path(path)
    return Output(flag, path, True, tuple(path / f for f in files), whole, ours)


# -- what this project wrote ----------------------------------------------------------------------------------------

PNG_MARK = ("Software", "sfadacof")  # a tEXt chunk in every PNG written here: whose file it is


def png_info():
    """PIL PngInfo carrying PNG_MARK (for Image.save(..., pnginfo=png_info()))."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(*PNG_MARK)
    return info


def png_is_ours(path: Path) -> bool:
    """True for a PNG this project wrote (PNG_MARK present; only the header chunks are read)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.format == "PNG" and getattr(im, "text", {}).get(PNG_MARK[0]) == PNG_MARK[1]
    except Exception:  # unreadable, not an image: not ours
        return False


HTML_MARK = '<meta name="generator" content="sfadacof">'  # in the <head> of every HTML page written here


def html_is_ours(path: Path) -> bool:
    """True for an HTML page this project wrote (HTML_MARK in its first 2 KB)."""
    try:
        with open(path, "rb") as f:
            return HTML_MARK.encode() in f.read(2048)
    except OSError:
        return False


VIDEO_MARK = ("comment", "sfadacof")  # container metadata of every video written here (mp4/mov/mkv keep it)


def video_is_ours(path: Path) -> bool:
    """True for a video this project wrote (VIDEO_MARK in its container metadata; only the header is read)."""
    try:
        import av

        with av.open(str(path)) as c:
            meta = {k.lower(): v for k, v in c.metadata.items()}
        return meta.get(VIDEO_MARK[0]) == VIDEO_MARK[1]
    except Exception:  # unreadable, not a video: not ours
        return False


def json_with_key(key: str) -> Owner:
    """An `ours` test for a JSON report of this project: an object holding `key`."""
    def ours(path: Path) -> bool:
        import json

        try:
            return key in json.loads(path.read_text())
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            return False
    return ours


def _files_under(folder: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(folder) for f in fs]


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


def _check_not_input(p: Path, flag: str, ins: list[Path]) -> None:
    for i in ins:
        if i.is_dir():
            if _is_within(p, i):
                where = "is" if _real(p) == _real(i) else "is inside"
                raise UserError(f"{p}: {flag} {where} the input folder {i}; outputs must not be written "
                                "into the input tree (choose another path)")
        elif p.exists() and _same_file(p, i):
            raise UserError(f"{p}: {flag} is the input {i}; it would be overwritten (choose another path)")


def _check_whole_folder(o: Output, ins: list[Path]) -> None:
    """A folder replaced as a whole: no input inside it; absent, empty, or this command's own (o.ours)."""
    for i in ins:
        if _is_within(i, o.path):
            raise UserError(f"{o.path}: {o.flag} would replace this folder, which holds the input {i} "
                            "(keep inputs outside the output, or choose another path)")
    if o.path.is_dir():
        held = _files_under(o.path)
        if held and not (o.ours is not None and o.ours(o.path)):
            raise UserError(f"{o.path}: {o.flag} already holds {len(held)} file(s) this command did not write "
                            f"(e.g. {held[0].name}); choose a new or empty folder")


def check_outputs(inputs: Iterable[PathLike | None], outputs: Iterable[Output | None]) -> None:
    """Refuse (UserError, one line) any output that is an input, lies inside an input folder, would replace a file
    this project did not write, collides with another output or cannot be created. `inputs`: every file and folder
    the command reads (None entries ignored). Also removes a dead run's temp files beside the outputs (clean_stale)."""
    ins = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    outs = [o for o in outputs if o is not None]
    for o in outs:
        p = o.path
        _check_not_input(p, o.flag, ins)
        for f in o.files:
            _check_not_input(f, o.flag, ins)
            if f.is_dir():
                raise UserError(f"{f}: {o.flag} would write a file here, and it is a folder")
            if f.exists() and (o.ours is None or not o.ours(f)):
                raise UserError(f"{f}: {o.flag} would replace this file, which this command did not write "
                                "(move it away, or choose another output folder)")
        if o.whole:
            _check_whole_folder(o, ins)
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
    # every file written, named or derived: no two the same, none inside a folder that is replaced as a whole
    written: dict[Path, str] = {}
    for o in outs:
        for f in ([] if o.folder else [o.path]) + list(o.files):
            r = _real(f)
            if r in written and written[r] != o.flag:
                raise UserError(f"{f}: {o.flag} and {written[r]} would both write this file (choose another path)")
            written[r] = o.flag
    for o in outs:
        if o.whole:
            for r, flag in written.items():
                if flag != o.flag and _is_within(r, o.path):
                    raise UserError(f"{r}: {flag} lies inside {o.path}, which {o.flag} replaces as a whole "
                                    "(choose another path)")
    for folder in {(o.path if o.folder else o.path.parent) for o in outs} | {o.path.parent for o in outs}:
        clean_stale(folder)


# -- atomic writes ---------------------------------------------------------------------------------------------------

def default_file_mode() -> int:
    """What open() would give a new file (0o666 minus the umask); mkstemp's files are 0o600."""
    old = os.umask(0)
    os.umask(old)
    return 0o666 & ~old


# .NAME.sfa<pid>-XXXXXXXX<suffix>: mkstemp/mkdtemp names with the writer's pid, so that clean_stale can tell a dead
# process's leftovers (SIGKILL cannot be caught) from a live writer's
_STALE = re.compile(r"^\..+\.sfa(\d+)-[A-Za-z0-9_]{8}(\.[A-Za-z0-9_]+)*$")


def temp_prefix(name: str) -> str:
    return f".{name}.sfa{os.getpid()}-"


def _process_started_at(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), None if there is no such process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0  # alive, start unknown: never taken for stale


def clean_stale(folder: PathLike) -> list[Path]:
    """Remove the temp files and staging folders of this module's pattern in `folder` whose process is gone (or is a
    later process that reused the pid: it started after the file was last written). Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _STALE.match(e.name)
        if m is None:
            continue
        pid = int(m.group(1))
        started = _process_started_at(pid)
        try:
            mtime = e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if started is not None and (started == 0.0 or started <= mtime + 1.0):
            continue  # a live writer's
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def temp_path_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new hidden, empty temp file in `path`'s folder (created, so the name is ours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def temp_folder_beside(path: Path, suffix: str = ".partial") -> Path:
    """A new hidden, empty folder beside `path` (same naming pattern as temp_path_beside)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent))


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
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _naming_output(e, tmp, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _naming_output(e: OSError, tmp: Path, path: Path) -> OSError:
    """A failed write (full disk) names the output, not the hidden temp file it was being written as."""
    if e.filename is None or Path(e.filename).name == tmp.name:
        return OSError(e.errno, e.strerror or str(e), str(path))
    return e


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
    current: tuple[Path, Path] | None = None  # the (temp, output) being written or renamed
    try:
        for path, data in files.items():
            current = (temp_path_beside(Path(path)), Path(path))
            temps.append(current)
            tmp = current[0]
            tmp.write_bytes(data)
            os.chmod(tmp, default_file_mode())
        for tmp, path in temps:
            current = (tmp, path)
            old = None
            if path.exists() or path.is_symlink():
                old = Path(f"{tmp}.old")
                try:
                    os.link(path, old, follow_symlinks=False)
                except OSError:
                    shutil.copy2(path, old, follow_symlinks=False)
            done.append((path, old))
            os.replace(tmp, path)
    except BaseException as e:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for path, old in reversed(done):
            if old is not None and old.exists():
                os.replace(old, path)
            elif old is None:
                path.unlink(missing_ok=True)
        if isinstance(e, OSError) and current is not None:
            raise _naming_output(e, *current) from None
        raise
    for _, old in done:
        if old is not None:
            old.unlink(missing_ok=True)


class StagedFolder:
    """Files destined for `folder`, written into a hidden sibling folder that `commit()` renames into place in one
    step; `abort()` removes them. An interrupted or failed run leaves no partial set of files in `folder`.

    `folder` must be absent or empty at commit (check_outputs' `whole` rule refuses anything else up front); with
    `replace=True` an existing `folder` -- this command's own earlier output, as check_outputs established -- is
    moved aside first and removed after the rename."""

    def __init__(self, folder: PathLike, replace: bool = False) -> None:
        self.folder = Path(folder)
        self.replace = replace
        self.stage = temp_folder_beside(self.folder)

    def path(self, name: str) -> Path:
        return self.stage / name

    def commit(self) -> None:
        mode = default_file_mode()
        for f in _files_under(self.stage):
            os.chmod(f, mode)
        os.chmod(self.stage, _default_dir_mode())
        old = None
        if self.replace and self.folder.is_dir() and any(self.folder.iterdir()):
            old = temp_folder_beside(self.folder, suffix=".old")
            os.replace(self.folder, old / "x")
        # rename(2) onto an empty folder replaces it; onto a non-empty one it fails (ENOTEMPTY): nothing is mixed
        try:
            os.replace(self.stage, self.folder)
        except OSError as e:
            if old is not None:
                os.replace(old / "x", self.folder)
                shutil.rmtree(old, ignore_errors=True)
            raise OSError(e.errno, e.strerror, str(self.folder)) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


def _default_dir_mode() -> int:
    """What mkdir would give a new folder (0o777 minus the umask); mkdtemp's folders are 0o700."""
    old = os.umask(0)
    os.umask(old)
    return 0o777 & ~old


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
    clean_stale(root)  # what an export killed mid-write left
