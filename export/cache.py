"""The export cache: an ONNX export of a checkpoint, made on first use and reused (runtime backends without --onnx).

    onnx_for_checkpoint(checkpoint=None, synthesis=None, precision="fp32", variant=None, kernel_size=None,
                        dilation=None, opset=None, exporter="auto", cache_dir_override=None, also=()) -> Path

Exports are cached under $SFADACOF_CACHE/onnx (default ~/.cache/sfadacof/onnx), in a file named by a key over the
checkpoint's sha256, every export option, the versions that shape the graph (sfadacof, torch, onnx) and a hash of
the exporter's own source (an edited export/ must not serve a stale graph); the file is written atomically (temp
file + rename), so concurrent runs never see a half-written model. Beside each entry, `NAME.onnx.sha256` (the
`sha256sum` format) records the digest of the file as written; an entry whose content no longer matches it (weights
altered in place, a file cut short, no digest at all) is said in one line on stderr and exported again, never used.
Checking costs one sha256 of the file per run: ~50 ms for the shipped model's 35 MB. precision "fp16" converts the
fp32 export with export.fp16_graph. `also` names other synthesis forms (fp32) to cache from the same trace when the
entry is exported: the trace is most of an export's time (20-50 s with the dynamo exporter on 2 cores), and each
form is only the traced graph written with or without its synthesis node lowered (export.core.export_model).

synthesis None (the default) is "plugin" (the fused custom op, run by ONNX Runtime through the C++ CPU kernel
library) where that library is found, else "onnx" (standard ops only): an install without a C++ compiler still runs,
and says so once on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from sfadacof import outputs
from sfadacof.checkpoint import file_sha256
from sfadacof.errors import UserError, one_line

from .core import DEFAULT_OPSET, SYNTHESIS_FORMS, export_model, resolve_exporter


_FALLBACK_SAID = False


def default_synthesis() -> str:
    """"plugin" where the C++ CPU kernel library (plugins/) is found, else "onnx", saying so once on stderr."""
    global _FALLBACK_SAID
    from plugins import _libs

    if _libs.find_library(_libs.CPU_LIBRARY) is not None:
        return "plugin"
    if not _FALLBACK_SAID:
        _FALLBACK_SAID = True
        print(f"note: the C++ CPU kernel library ({_libs.library_filename(_libs.CPU_LIBRARY)}) is not built: "
              "using the standard-op graph (synthesis=onnx); `pip install .` with a C++ compiler, or "
              f"`{_libs.BUILD_COMMAND}`, builds it", file=sys.stderr)
    return "onnx"


def cache_dir() -> Path:
    return outputs.cache_dir("onnx")


def export_cache_key(checkpoint_sha256: str, options: dict) -> str:
    """sha256 over the checkpoint's hash, the export options and the versions that determine the graph."""
    import onnx
    import torch

    from sfadacof import __version__

    from . import core, standard_synthesis

    # The exporter's own source is part of the key: an edited export/ must not serve a stale graph from the cache.
    src = hashlib.sha256(Path(core.__file__).read_bytes() + Path(standard_synthesis.__file__).read_bytes()).hexdigest()[:16]
    blob = json.dumps({"checkpoint": checkpoint_sha256, "options": options, "sfadacof": __version__,
                       "torch": torch.__version__, "onnx": onnx.__version__, "export_src": src}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_digest(path: Path) -> None:
    """Record the sha256 of the cache entry `path` as written, in `sha256sum` format (`sha256sum -c` checks it)."""
    outputs.atomic_write_text(digest_path(path), f"{file_sha256(path)}  {path.name}\n")


def cached_export_ok(path: Path) -> bool:
    """The entry's content is what was written: its sha256 equals the digest recorded beside it then. Parsing is not
    enough: weights altered in place (same length, metadata intact) parse and pass onnx.checker."""
    try:
        recorded = digest_path(path).read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return False  # no digest (written by an older version, or removed): unverifiable, so not used
    return recorded == file_sha256(path)


def onnx_for_checkpoint(checkpoint: str | os.PathLike | None = None, synthesis: str | None = None,
                        precision: str = "fp32", variant: str | None = None, kernel_size: int | None = None,
                        dilation: int | None = None, opset: int | None = None, exporter: str = "auto",
                        cache_dir_override: str | os.PathLike | None = None, also: tuple[str, ...] = ()) -> Path:
    """Path of an ONNX export of `checkpoint` (None: the shipped default), exported on first use and cached.

    synthesis None: default_synthesis(). precision "fp16" converts the fp32 export with export.fp16_graph (offset
    heads and the synthesis stay fp32). also: other synthesis forms written to the cache (fp32) from the same trace
    when this entry is exported, unless they are cached already (fp32 only)."""
    from sfadacof.checkpoint import load_checkpoint

    if synthesis is None:
        synthesis = default_synthesis()
    for form in (synthesis, *also):
        if form not in SYNTHESIS_FORMS:
            raise UserError(f"synthesis {form!r}: choose {', '.join(SYNTHESIS_FORMS)}")
    if precision not in ("fp32", "fp16"):
        raise UserError(f"precision {precision!r}: choose fp32 or fp16")
    if also and precision != "fp32":
        raise UserError("also: the other forms are cached from an fp32 export only")
    loaded = load_checkpoint(checkpoint, variant=variant, kernel_size=kernel_size, dilation=dilation)
    try:
        exporter = resolve_exporter(exporter)
    except ValueError as e:
        raise UserError(str(e)) from None
    root = Path(cache_dir_override) if cache_dir_override else cache_dir()

    def entry(form: str, prec: str) -> Path:
        options = {"synthesis": form, "precision": prec, "variant": loaded.variant,
                   "kernel_size": loaded.kernel_size, "dilation": loaded.dilation, "opset": opset or DEFAULT_OPSET,
                   "exporter": exporter}
        key = export_cache_key(loaded.sha256, options)
        return root / f"{loaded.variant}_k{loaded.kernel_size}d{loaded.dilation}_{form}_{prec}_{key}.onnx"

    path = entry(synthesis, precision)
    if path.is_file():
        if cached_export_ok(path):
            return path
        # altered, cut short by a full disk, or from a version that wrote no digest: replaced (atomically) below
        print(f"note: {one_line(path)}: cached export does not match the digest recorded when it was written "
              "(altered or damaged); exporting it again", file=sys.stderr)
    outputs.create_cache_dir(root, "export cache")
    # fp16: the fp32 graph goes to a temp name of outputs' pattern, so a killed run's copy is cleaned by the next
    fp32_path = path if precision == "fp32" else outputs.temp_path_beside(path, ".fp32.onnx")
    others = {form: entry(form, "fp32") for form in also if form != synthesis}
    others = {form: p for form, p in others.items() if not (p.is_file() and cached_export_ok(p))}
    # export_model writes atomically; a concurrent export of the same key just replaces the file with an equal one
    export_model(loaded.model, fp32_path, synthesis=synthesis, exporter=exporter, opset=opset or DEFAULT_OPSET,
                 checkpoint_sha256=loaded.sha256, checkpoint_name=loaded.path.name, epoch=loaded.epoch, also=others)
    if precision == "fp16":
        from .fp16_graph import convert_file

        try:
            convert_file(fp32_path, path)  # writes atomically itself
        finally:
            fp32_path.unlink(missing_ok=True)
    for p in (path, *others.values()):
        write_digest(p)
    return path
