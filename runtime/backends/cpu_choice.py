"""`--backend auto` on a CPU: the fastest of OpenVINO int8 / bf16 / fp32 that this checkpoint and this CPU offer,
measured once per CPU and cached.

    choose_cpu(options) -> (backend, reason, measurement)     # registry._cpu_default calls it
    choose(seconds) -> dict                                    # the rule, on recorded figures

Candidates: fp32 always; bf16 where the CPU computes bf16 natively (AVX512_BF16 or AMX, and no ONEDNN_MAX_CPU_ISA
cap hiding them: runtime/cpu_info.py) -- emulated bf16 is never measured; int8 where an INT8 model exists for the
weights: the user's own IR (`--onnx MODEL.int8.xml`, from calib.openvino_int8), else the shipped INT8 model for
the shipped weights (runtime/backends/openvino_int8.py) where this CPU computes it in a way it was validated on
(its sidecar's validations by class of arithmetic, runtime/cpu_info.py INT8_NUMERICS: bf16 or fp32 float parts,
exact VNNI/AMX or saturating VPMADDUBSW int8 sums). int8 is measured on every such CPU, VNNI or not: without VNNI
it may still win (fewer bytes moved), and only the measurement says.

The measurement: each candidate compiled at MEASURE_SIZE and run once untimed (compile, first-call allocation),
then CALLS timed calls, the candidates interleaved call by call (round r runs every candidate once, in a rotated
order) so that load from other processes falls on all alike; a candidate's figure is the median of its calls.
MEASURE_SIZE is 448x256: the cost per pixel is what ranks the candidates, and a frame that small keeps the whole
measurement to a few seconds (~0.2-0.4 s a call per candidate on the project's 2-core AVX-512 machine, about a
quarter of a 960x507 frame, where a full-size measurement would cost ~10 s per candidate); it is nearly 16:9 like
the footage, large enough that the U-Net's deepest level (1/32 scale, 14x8) is more than a few tiles of the AMX
and VNNI kernels, and it is the size calib.openvino_int8 calibrates at.

The rule (choose): the fastest median wins, unless a more accurate candidate (fp32 > bf16 > int8) is within the
noise of it -- then the most accurate of those. The noise is the largest relative spread (half the range over the
median) among the candidates' calls, at least MIN_TIE and at most MAX_TIE.

The cache: one JSON file per key under $SFADACOF_CACHE/cpu_choice (beside the export cache, default
~/.cache/sfadacof/cpu_choice), written atomically (sfadacof.outputs). The key covers what changes the answer:
the synthesis the candidates run (the C++ kernel library's SHA-256, or the export's ops where it is not built),
the CPU model string and family/model/stepping, the ISA flags that matter (after any cap), the cap, the cores this
process may use, the OpenVINO version, the candidates (each with its model file's SHA-256), the checkpoint's
SHA-256 and the measurement's own settings. Another checkpoint, IR, OpenVINO or core count measures again. An
entry is read only when it is a JSON object of this format whose key equals the current one and whose figures are
positive finite seconds for exactly the current candidates; anything else (cut short, edited, another machine's)
is said in one line on stderr and measured again. JSON only: nothing read from the cache is ever executed. The
choice is recomputed from the figures on every read, never taken from the file.

An explicit `--precision` skips all of this: the user's choice runs (registry._cpu_default).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sfadacof import outputs
from sfadacof.errors import UserError, one_line

from .base import Backend

FORMAT = "sfadacof-cpu-choice/1"
MEASURE_SIZE = (448, 256)  # width, height; see the module docstring
WARMUP = 1                 # untimed calls per candidate (the first compiles)
CALLS = 3                  # timed calls per candidate
MIN_TIE, MAX_TIE = 0.02, 0.10  # bounds of the relative margin within which two figures tie
ACCURACY_ORDER = ("fp32", "bf16", "int8")  # most accurate first: a tie goes to the earlier


@dataclass
class Candidate:
    name: str                       # fp32 / bf16 / int8
    model: Path                     # the ONNX export or IR it runs
    make: Callable[[], Backend]     # builds the backend
    source: str                     # where the model comes from, in words


def _file_digest(path: Path) -> str:
    """SHA-256 over the model file (and an IR's .bin beside it)."""
    from sfadacof.checkpoint import file_sha256

    parts = [file_sha256(path)]
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        parts.append(file_sha256(path.with_suffix(".bin")))
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def _is_int8_ir(path: Path) -> bool:
    """An OpenVINO IR holding FakeQuantize nodes (calib.openvino_int8's output); read as text, without OpenVINO."""
    if path.suffix.lower() != ".xml" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any('type="FakeQuantize"' in line for line in f)
    except OSError:
        return False


def _shipped_int8(checkpoint) -> Path | None:
    """The shipped INT8 IR for these weights, where this install has one (runtime/backends/openvino_int8.py)."""
    try:
        from .openvino_int8 import shipped_int8_ir
    except ImportError:
        return None
    return shipped_int8_ir(checkpoint)


def _openvino(path: Path, precision: str) -> Callable[[], Backend]:
    def make() -> Backend:
        from .openvino_backend import PRECISIONS, OpenVINOBackend

        # an INT8 IR: "int8" where the backend knows it (what stayed float in bf16 where native), else the fp32 hint
        p = precision if precision != "int8" or "int8" in PRECISIONS else "fp32"
        return OpenVINOBackend(path, precision=p)
    return make


def candidates(o, bf16_native: bool, numerics: str | None = None) -> tuple[list[Candidate], str, list[str]]:
    """The candidates for options `o`, the checkpoint SHA-256 they share, and notes on what was left out and why
    (numerics: this CPU's class of INT8 arithmetic, default cpu_info.int8_numerics())."""
    from ..cpu_info import INT8_NUMERICS, int8_numerics
    from .openvino_backend import _onnx_metadata
    from .openvino_int8 import validated_numerics

    notes: list[str] = []
    user_int8 = o.onnx is not None and _is_int8_ir(Path(o.onnx))
    if user_int8:
        int8, ir_sha = Path(o.onnx), _ir_checkpoint_sha(Path(o.onnx))
        float_model = _float_export(o, ir_sha, notes)
        sha = ir_sha
    else:
        float_model = Path(o.onnx) if o.onnx is not None else _export(o)
        meta = {} if float_model.suffix.lower() == ".xml" else _onnx_metadata(float_model)
        sha = meta.get("checkpoint_sha256", "")
        int8 = _shipped_int8(o.checkpoint) if o.onnx is None else None
        here = numerics or int8_numerics()
        if int8 is not None and here not in (valid := validated_numerics(int8)):
            # the same model gives other frames with fp32 float parts or without VNNI (a model validated with bf16
            # float parts once lost 0.0553 dB on a frame run as an AVX2-only CPU): offered only where it was shown
            # to meet the rule
            from .openvino_synthesis import synthesis_form_here

            form = synthesis_form_here()
            other = "ops" if form == "kernel" else "kernel"
            if here in validated_numerics(int8, other):  # shown, but with the synthesis form this install lacks
                notes.append(f"int8: the shipped INT8 model met the accuracy rule as {here} with the synthesis "
                             f"as {'the C++ kernel' if other == 'kernel' else 'standard ops'}, and this install runs "
                             f"{'standard ops' if form == 'ops' else 'the C++ kernel'} (the two differ by float32 "
                             "rounding, which can move a frame's 8-bit levels), so it is not a candidate here"
                             + (" (build the kernel: python -m plugins.build, or pip install .)" if form == "ops"
                                else "") + "; --precision int8 still runs it")
            else:
                notes.append(f"int8: this CPU computes the shipped INT8 model as {here} ({INT8_NUMERICS[here]}), "
                             "where it was not shown to meet the accuracy rule (its sidecar records it met as "
                             f"{', '.join(valid) or 'no class'}), so it is not a candidate here (--precision int8 "
                             "still runs it)")
            int8 = None
        elif int8 is None:
            notes.append("int8: no INT8 model for these weights (the shipped one belongs to the shipped weights; "
                         "python -m calib.openvino_int8 makes one, run with --onnx M.int8.xml)")
    out: list[Candidate] = []
    if float_model is not None:
        out.append(Candidate("fp32", float_model, _openvino(float_model, "fp32"), "the standard-op export"))
        if bf16_native:
            out.append(Candidate("bf16", float_model, _openvino(float_model, "bf16"), "the standard-op export"))
        else:
            notes.append("bf16: " + _bf16_absent())
    if int8 is not None:
        out.append(Candidate("int8", int8, _openvino(int8, "int8"),
                             "the given IR" if user_int8 else "the shipped INT8 model"))
    return out, sha, notes


def _bf16_absent() -> str:
    from ..cpu_info import cpu_flags, isa_cap  # at call time: the flags as they are now

    have = [f for f in ("avx512_bf16", "amx_bf16") if f in cpu_flags()]
    if have:
        return (f"not measured: the ISA cap {isa_cap()} hides {' and '.join(have)} (bf16 would be "
                "emulated)")
    return "not measured: no avx512_bf16 or amx_bf16 (/proc/cpuinfo), bf16 would be emulated"


def _ir_checkpoint_sha(xml: Path) -> str:
    import openvino as ov

    from .openvino_backend import ir_metadata

    try:
        return ir_metadata(ov.Core().read_model(str(xml))).get("checkpoint_sha256", "")
    except Exception as e:  # unreadable: the backend says so in its own words when it opens it
        raise UserError(f"{xml}: OpenVINO cannot read it ({one_line(str(e))[:200]})") from None


def _export(o) -> Path:
    from export.cache import onnx_for_checkpoint

    return onnx_for_checkpoint(o.checkpoint, synthesis="onnx", precision="fp32", variant=o.variant)


def _float_export(o, ir_sha: str, notes: list[str]) -> Path | None:
    """The float export of the weights the given INT8 IR quantized: the checkpoint's (given, or the shipped one)
    when its SHA-256 is the IR's; None (int8 alone) when those weights are not at hand."""
    from sfadacof.checkpoint import DEFAULT_CHECKPOINT, file_sha256

    ckpt = Path(o.checkpoint) if o.checkpoint is not None else DEFAULT_CHECKPOINT
    if ckpt.is_file() and ir_sha and file_sha256(ckpt) == ir_sha:
        return _export(o)
    notes.append(f"fp32/bf16: not measured: the given IR quantizes weights {ir_sha[:12] or '(unnamed)'}, which "
                 f"{'--checkpoint' if o.checkpoint is not None else 'the shipped checkpoint'} is not "
                 "(give --checkpoint with those weights to compare)")
    return None


def cache_key(cands: list[Candidate], checkpoint_sha: str) -> dict:
    """Everything the answer depends on (see the module docstring); equal keys, same answer."""
    import openvino as ov

    from ..cpu_info import facts

    f = facts()
    from sfadacof.checkpoint import file_sha256

    from .openvino_synthesis import kernel_library

    lib = kernel_library()  # the synthesis the candidates run: the C++ kernel node (this build of it) or the ops
    return {"synthesis": f"kernel {file_sha256(lib)}" if lib else "ops",
            "cpu": f["model"], "family_model_stepping": f["family_model_stepping"],
            "flags": f["effective_flags"], "isa_cap": f["isa_cap"], "cores": f["cores"],
            "openvino": ov.__version__, "checkpoint_sha256": checkpoint_sha,
            "candidates": {c.name: _file_digest(c.model) for c in cands},
            "size": list(MEASURE_SIZE), "warmup": WARMUP, "calls": CALLS}


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return outputs.cache_dir("cpu_choice") / f"auto_{digest}.json"


def choose(seconds: dict[str, list[float]]) -> dict:
    """The rule: {"winner", "median_s" per candidate, "tie_margin", "fastest"} from each candidate's calls."""
    med = {k: float(np.median(v)) for k, v in seconds.items()}
    spread = max(((max(v) - min(v)) / 2 / float(np.median(v)) for v in seconds.values()), default=0.0)
    margin = min(MAX_TIE, max(MIN_TIE, spread))
    fastest = min(med, key=lambda k: (med[k], ACCURACY_ORDER.index(k)))
    tied = [k for k in med if med[k] <= med[fastest] * (1 + margin)]
    winner = min(tied, key=ACCURACY_ORDER.index)
    return {"winner": winner, "median_s": med, "tie_margin": margin, "fastest": fastest}


def _valid_seconds(v) -> bool:
    return (isinstance(v, list) and len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                       and math.isfinite(x) and x > 0 for x in v))


def read_entry(path: Path, key: dict) -> tuple[dict | None, str | None]:
    """(entry, None) when `path` holds a valid measurement for `key`; (None, why not) otherwise (None, None: none)."""
    if not path.exists():
        return None, None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable ({one_line(str(e))[:120]})"
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None, f"not a {FORMAT} entry"
    if entry.get("key") != key:
        return None, "its key is not this CPU's, OpenVINO's, models' and settings'"
    seconds, failed = entry.get("seconds"), entry.get("failed", {})
    if not isinstance(seconds, dict) or not seconds or not isinstance(failed, dict) \
            or set(seconds) | set(failed) != set(key["candidates"]) or set(seconds) & set(failed) \
            or not all(_valid_seconds(v) for v in seconds.values()) \
            or not all(isinstance(v, str) for v in failed.values()):
        return None, "its figures are not positive seconds for each candidate"
    return entry, None


def measure(cands: list[Candidate], size: tuple[int, int] | None = None, warmup: int | None = None,
            calls: int | None = None, built: dict[str, Backend] | None = None,
            ) -> tuple[dict[str, list[float]], dict[str, Backend], dict[str, str]]:
    """Each candidate's timed calls (seconds), the backends built, and the candidates that failed (name -> why);
    size, warmup, calls default to MEASURE_SIZE, WARMUP, CALLS; `built`: candidates' backends already made."""
    w, h = size or MEASURE_SIZE
    warmup = WARMUP if warmup is None else warmup
    calls = CALLS if calls is None else calls
    rng = np.random.default_rng(0)
    f0, f2 = (rng.random((1, 3, h, w), dtype=np.float32) for _ in range(2))
    backends: dict[str, Backend] = {}
    failed: dict[str, str] = {}
    for c in cands:
        try:
            b = (built or {}).get(c.name) or c.make()
            for _ in range(warmup):
                b.infer(f0, f2)
            backends[c.name] = b
        except Exception as e:  # noqa: BLE001 -- a candidate that cannot run here is left out, its reason kept
            failed[c.name] = one_line(str(e) or type(e).__name__)
    seconds: dict[str, list[float]] = {k: [] for k in backends}
    names = list(backends)
    for r in range(calls):
        for k in names[r % len(names):] + names[:r % len(names)] if names else []:
            t0 = time.perf_counter()
            backends[k].infer(f0, f2)
            seconds[k].append(time.perf_counter() - t0)
    return seconds, backends, failed


def _figures_text(choice: dict, size) -> str:
    return ", ".join(f"{k} {choice['median_s'][k]:.3f} s" for k in ACCURACY_ORDER if k in choice["median_s"]) + \
        f" per {size[0]}x{size[1]} call (median)"


def choose_cpu(o) -> tuple[Backend, str, dict]:
    """The measured choice for options `o` (no --precision): the backend, a one-line reason, and the figures."""
    from .openvino_backend import native_bf16

    cands, sha, notes = candidates(o, native_bf16())
    if not cands:
        raise UserError("--backend auto: no CPU configuration to run (see --precision)")
    key = cache_key(cands, sha)
    path = cache_path(key)
    entry, problem = read_entry(path, key)
    if problem:
        print(f"note: {path}: {problem}; measuring again", file=sys.stderr)
    built: dict[str, Backend] = {}
    if entry is None:
        first: dict[str, Backend] = {}
        if len(cands) > 1 and o.onnx is not None:
            # the user's graph is built first, outside the measurement: a graph that is not ours is refused in the
            # backend's own one line (exit 2), before any note about measuring, not recorded as "failed here"
            first[cands[0].name] = cands[0].make()
        if len(cands) > 1:
            print(f"choosing the CPU configuration: measuring {', '.join(c.name for c in cands)} at "
                  f"{MEASURE_SIZE[0]}x{MEASURE_SIZE[1]} once for this CPU (cached in {path.parent})", file=sys.stderr)
        seconds, built, failed = measure(cands, built=first) if len(cands) > 1 else ({cands[0].name: [1.0]}, {}, {})
        for name, why in failed.items():
            notes.append(f"{name}: failed here ({one_line(why)[:160]})")
        if not seconds:
            raise UserError("--backend auto: no CPU configuration runs here: " + "; ".join(notes))
        entry = {"format": FORMAT, "key": key, "seconds": seconds, "failed": failed,
                 "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        written = False
        if len(cands) > 1:
            try:
                outputs.create_cache_dir(path.parent, "CPU choice cache")
                outputs.atomic_write_text(path, json.dumps(entry, indent=1) + "\n")
                written = True
            except (OSError, UserError) as e:
                print(f"note: {path}: not cached ({one_line(str(e))[:160]}); measured again next time",
                      file=sys.stderr)
        cached = False
    else:
        cached, written = True, True
        notes += [f"{name}: failed here when measured ({one_line(why)[:160]})"
                  for name, why in entry.get("failed", {}).items()]
    entry.setdefault("failed", {})
    choice = choose(entry["seconds"])
    winner = next(c for c in cands if c.name == choice["winner"])
    for name, b in built.items():
        if name != winner.name:
            b.close()
    backend = built.get(winner.name) or winner.make()
    if hasattr(backend, "_compiled"):
        backend._compiled.clear()  # the measurement's shape: not the user's frames, free its buffers
    import openvino as ov

    from ..cpu_info import facts as cpu_facts

    facts = cpu_facts()
    single = len(cands) == 1
    measurement = {
        "winner": winner.name, "model": str(winner.model), "source": winner.source,
        "seconds_per_call": None if single else choice["median_s"],
        "calls_s": None if single else entry["seconds"], "tie_margin": None if single else choice["tie_margin"],
        "fastest": None if single else choice["fastest"],
        "rule": "the fastest median; within the tie margin the more accurate (fp32 > bf16 > int8)",
        "size": f"{MEASURE_SIZE[0]}x{MEASURE_SIZE[1]}", "cpu": facts["model"],
        "family_model_stepping": facts["family_model_stepping"], "flags": facts["effective_flags"],
        "isa_cap": facts["isa_cap"], "cores": facts["cores"], "openvino": ov.__version__,
        "measured_at": entry.get("measured_at"), "cache": str(path) if written and not single else None,
        "from_cache": cached,
        "left_out": notes}
    if single:
        reason = f"{winner.name}: the only configuration for these weights ({'; '.join(notes)})"
    else:
        why = ("fastest" if choice["winner"] == choice["fastest"] else
               f"within {choice['tie_margin']:.0%} of the fastest ({choice['fastest']}), and more accurate")
        reason = (f"{winner.name}: {why} on this CPU ({facts['model']}, {facts['cores']} cores"
                  f"{', ISA cap ' + facts['isa_cap'] if facts['isa_cap'] else ''}): {_figures_text(choice, MEASURE_SIZE)}"
                  f", measured {entry.get('measured_at')}"
                  + (f", {'cached in' if cached else 'now cached in'} {path}" if written else ", not cached"))
        if notes:
            reason += "; " + "; ".join(notes)
    return backend, reason, measurement
