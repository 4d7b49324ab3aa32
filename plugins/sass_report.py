"""SASS instructions per output pixel of the synthesis kernel (plugins/adacof_kernels.cu) on sm_90, with spills.

    python -m plugins.sass_report [--library LIB | --compile] [--cache-dir DIR] [--json]

Reads the sm_90 code of the built library (by default the TensorRT plugin library of <repo>/build, else
libsfadacof_cuda) with `cuobjdump -sass`, or with --compile (or when no library with sm_90 code is built, or the
build is older than a kernel source) compiles
adacof_kernels.cu alone with `nvcc -cubin -arch=sm_90` under the library's flags into the cache directory (one
compile per source state, keyed by a hash of the sources, flags and nvcc version) and reads ptxas' -v lines too.

Counting (what issue 22 asks for: "the static count of straight-line code, loop bodies times their trip counts"):
every instruction of a kernel (the padding NOPs and the final self-branch left out) counts once, times the trip
count of each loop that contains it. Loops are found from the backward branches (a BRA to an address at or before
its own; a loop spans target .. branch). Trip counts come from the source's loop structure, which the kernel fixes
at compile time: the K = 5 kernels have no loop (both tap loops fully unrolled: the report refuses one that has),
and in the K = 11 kernels every loop is a tap loop (`#pragma unroll 1` over k, and over l inside it), so each runs
K = 11 times. The run-time-K kernels (K = 0 in the name) are listed by size only. Per pixel = per thread / kPix (the
pixels one thread computes, read from the source). The count is per thread that does work: the early exit of
threads past the row's end is counted as taken by nobody and every predicated instruction as issued.

Spills: ptxas' "bytes spill stores/loads" when compiled here; from a library, the STACK of `cuobjdump -res-usage`
and the local-memory instructions (LDL/STL) in the SASS, which is what a spill is.

Exit status: 0 with the table printed, 2 with one line on stderr when nvcc/cuobjdump or the input is missing,
1 when a limit checked by --check fails (K = 5 over 4,000 per pixel, a spill, K = 11 fully unrolled).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import _libs

ARCH = "sm_90"
LIMIT_PER_PIXEL = 4000  # issue 22: at K = 5, fp32 and fp16 maps
SOURCES = ("adacof_kernels.cu", "adacof_kernel_body.h", "adacof_kernels.h", "adacof_kernels_internal.h",
           "adacof_math.h")
# The library's flags (CMakeLists.txt, Release): -O3 -DNDEBUG, C++17, no fast math.
NVCC_FLAGS = ("-O3", "-DNDEBUG", "-std=c++17", "-Xptxas", "-v")
KERNEL_NAME = "synthesis_kernel"
TYPES = {"f": "fp32", "6__half": "fp16", "S2_": "fp16"}


class ReportError(RuntimeError):
    """A tool or input is missing, or the SASS has a structure the counting rules do not cover."""


def find_tool(name: str) -> str | None:
    """`name` on PATH, else in the NVIDIA wheel (nvidia-cuda-cuobjdump installs nvidia/cu13/bin/cuobjdump)."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import nvidia  # namespace package of NVIDIA's CUDA wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for candidate in sorted(Path(root).glob(f"cu*/bin/{name}")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def pixels_per_thread(source: Path | None = None) -> int:
    text = (source or _libs.PACKAGE_DIR / "adacof_kernel_body.h").read_text()
    m = re.search(r"constexpr int kPix = (\d+);", text)
    if not m:
        raise ReportError("adacof_kernel_body.h: no `constexpr int kPix = N;` (pixels per thread)")
    return int(m.group(1))


@dataclasses.dataclass
class Kernel:
    name: str
    kernel_size: int  # 0: run-time K
    vector: bool
    maps: str  # fp32 / fp16: frames, weights, occlusion, output
    offsets: str  # fp32 / fp16: alpha, beta
    static: int = 0
    loops: list = dataclasses.field(default_factory=list)  # [(first, last, body instructions, trips)]
    executed: int | None = None
    per_pixel: float | None = None
    registers: int | None = None
    spill_bytes: int | None = None
    local_instructions: int = 0

    @property
    def label(self) -> str:
        k = f"K={self.kernel_size}" if self.kernel_size else "K=run-time"
        return f"{k} maps {self.maps} offsets {self.offsets} {'vector' if self.vector else 'scalar'} loads"


def parse_kernel_name(mangled: str) -> Kernel | None:
    """synthesis_kernel<KC, Vec, T, TO> from its Itanium-mangled name; None for other functions."""
    m = re.search(KERNEL_NAME + r"ILi(\d+)ELb([01])E(f|6__half)(f|6__half|S2_)EEv", mangled)
    if not m:
        return None
    maps = TYPES[m.group(3)]
    offsets = maps if m.group(4) == "S2_" else TYPES[m.group(4)]
    return Kernel(mangled, int(m.group(1)), m.group(2) == "1", maps, offsets)


_FUNC = re.compile(r"^\s*Function : (\S+)")
_INSTR = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BRA = re.compile(r"^(?:@!?U?P\w+\s+)?BRA(?:\.\S+)?\s+(?:\S+\s+)?`?\(?0x([0-9a-f]+)")


def parse_sass(text: str) -> dict[str, list[tuple[int, str]]]:
    """cuobjdump -sass text -> {function: [(address, instruction)]}."""
    funcs: dict[str, list[tuple[int, str]]] = {}
    current = None
    for line in text.splitlines():
        m = _FUNC.match(line)
        if m:
            current = m.group(1)
            funcs[current] = []
            continue
        m = _INSTR.match(line)
        if m and current is not None:
            funcs[current].append((int(m.group(1), 16), m.group(2).strip()))
    return funcs


def count(instructions: list[tuple[int, str]], trips_of_loop) -> tuple[int, int, list]:
    """(static, executed, loops) of one function. trips_of_loop(first, last, depth) gives each loop's trip count."""
    body = [(a, t) for a, t in instructions if not t.startswith("NOP")]
    # The function's end marker: a branch to itself after EXIT.
    body = [(a, t) for a, t in body if not ((m := _BRA.match(t)) and int(m.group(1), 16) == a)]
    loops = []
    for a, t in body:
        m = _BRA.match(t)
        if m and int(m.group(1), 16) < a:
            loops.append((int(m.group(1), 16), a))
    # Loops must nest or be disjoint (a structured CFG); then each instruction counts the product of its loops' trips.
    for i, (s1, e1) in enumerate(loops):
        for s2, e2 in loops[i + 1:]:
            overlap = s1 <= e2 and s2 <= e1
            nested = (s1 <= s2 and e2 <= e1) or (s2 <= s1 and e1 <= e2)
            if overlap and not nested:
                raise ReportError(f"loops {hex(s1)}..{hex(e1)} and {hex(s2)}..{hex(e2)} overlap without nesting")
    described = []
    trips = {}
    for s, e in loops:
        depth = sum(1 for s2, e2 in loops if (s2, e2) != (s, e) and s2 <= s and e <= e2)
        trips[(s, e)] = trips_of_loop(s, e, depth)
        described.append((s, e, sum(1 for a, _ in body if s <= a <= e), trips[(s, e)]))
    executed = 0
    for a, _ in body:
        mult = 1
        for (s, e), n in trips.items():
            if s <= a <= e:
                mult *= n
        executed += mult
    return len(body), executed, described


def analyse(sass: str, pix: int) -> list[Kernel]:
    kernels = []
    for name, instructions in parse_sass(sass).items():
        k = parse_kernel_name(name)
        if k is None:
            continue

        def trips(first, last, depth, k=k):
            if k.kernel_size == 5:
                raise ReportError(f"{k.label}: a loop at {hex(first)}..{hex(last)}; the K = 5 kernel is meant to "
                                  "be straight-line code (both tap loops unrolled)")
            # K = 11: every loop is a tap loop over k or l (#pragma unroll 1), K trips each.
            return k.kernel_size

        if k.kernel_size in (5, 11):
            k.static, k.executed, k.loops = count(instructions, trips)
            k.per_pixel = k.executed / pix
        else:
            k.static = len([1 for _, t in instructions if not t.startswith("NOP")])
        k.local_instructions = sum(1 for _, t in instructions if re.match(r"(@!?P\w+\s+)?(LDL|STL)\b", t))
        kernels.append(k)
    if not kernels:
        raise ReportError(f"no {KERNEL_NAME} function in the {ARCH} SASS")
    return sorted(kernels, key=lambda k: (k.kernel_size == 0, k.kernel_size, not k.vector, k.maps, k.offsets))


def parse_ptxas(text: str, kernels: list[Kernel]) -> None:
    """Registers and spill bytes from nvcc -Xptxas -v output."""
    by_name = {k.name: k for k in kernels}
    current = None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = by_name.get(m.group(1))
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current is not None:
            current.spill_bytes = int(m.group(1)) + int(m.group(2))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and current is not None:
            current.registers = int(m.group(1))


def parse_res_usage(text: str, kernels: list[Kernel]) -> None:
    """Registers and stack bytes from cuobjdump -res-usage (stack: where spills live)."""
    by_name = {k.name: k for k in kernels}
    current = None
    for line in text.splitlines():
        m = re.match(r"\s*Function (\S+?):?\s*$", line)
        if m:
            current = by_name.get(m.group(1))
            continue
        m = re.search(r"REG:(\d+) STACK:(\d+)", line)
        if m and current is not None:
            current.registers = int(m.group(1))
            current.spill_bytes = int(m.group(2))


def _run(cmd: list[str]) -> str:
    env = None
    if Path(cmd[0]).name == "cuobjdump":
        # cuobjdump -sass runs nvdisasm, which the wheel keeps beside it but which need not be on PATH.
        nvdisasm = find_tool("nvdisasm")
        if nvdisasm is None:
            raise ReportError("nvdisasm not found (cuobjdump -sass needs it: on PATH or from the "
                              "nvidia-cuda-nvdisasm wheel)")
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(nvdisasm).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ReportError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout + proc.stderr


def compile_cubin(nvcc: str, cache_dir: Path) -> tuple[Path, str]:
    """The sm_90 cubin of adacof_kernels.cu and ptxas' -v output, from the cache when the sources are unchanged."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((_libs.PACKAGE_DIR / name).read_bytes())
    h.update(" ".join(NVCC_FLAGS).encode())
    h.update(_run([nvcc, "--version"]).encode())
    key = h.hexdigest()[:16]
    cubin = cache_dir / f"adacof_kernels.{ARCH}.{key}.cubin"
    log = cubin.with_suffix(".ptxas.txt")
    if cubin.is_file() and log.is_file():
        return cubin, log.read_text()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cubin.with_name(f".{cubin.name}.{os.getpid()}.tmp")
    try:
        out = _run([nvcc, "-cubin", f"-arch={ARCH}", *NVCC_FLAGS, "-I", str(_libs.PACKAGE_DIR),
                    str(_libs.PACKAGE_DIR / "adacof_kernels.cu"), "-o", str(tmp)])
        log_tmp = log.with_name(f".{log.name}.{os.getpid()}.tmp")
        log_tmp.write_text(out)
        os.replace(log_tmp, log)
        os.replace(tmp, cubin)
    finally:
        tmp.unlink(missing_ok=True)
    # Earlier source states' files (this function's own naming) are stale now.
    for old in cache_dir.glob(f"adacof_kernels.{ARCH}.*"):
        if old not in (cubin, log) and re.fullmatch(rf"adacof_kernels\.{ARCH}\.[0-9a-f]{{16}}\.(cubin|ptxas\.txt)", old.name):
            old.unlink(missing_ok=True)
    return cubin, out


def default_library() -> Path | None:
    """The built plugin library (what TensorRT runs), else the CUDA kernel library, if either has sm_90 code and is
    newer than every kernel source (a stale build would report the old kernel: then None, and the report compiles)."""
    from . import build

    newest_source = max((_libs.PACKAGE_DIR / name).stat().st_mtime for name in SOURCES)
    for stem in (_libs.PLUGIN_LIBRARY, _libs.CUDA_LIBRARY):
        lib = _libs.find_library(stem)
        if lib is not None and lib.stat().st_mtime >= newest_source:
            archs = build.built_cuda_archs(lib)
            if archs is None or "90" in archs:
                return lib
    return None


def report(library: Path | None, compile_here: bool, cache_dir: Path) -> tuple[list[Kernel], str]:
    cuobjdump = find_tool("cuobjdump")
    if cuobjdump is None:
        raise ReportError("cuobjdump not found (on PATH or from the nvidia-cuda-cuobjdump wheel: "
                          "`pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`, in the dev extra)")
    pix = pixels_per_thread()
    if library is None and not compile_here:
        library = default_library()
    if library is not None and not compile_here:
        if not library.is_file():
            raise ReportError(f"{library}: no such library")
        sass = _run([cuobjdump, "-sass", "-arch", ARCH, str(library)])
        kernels = analyse(sass, pix)
        parse_res_usage(_run([cuobjdump, "-res-usage", "-arch", ARCH, str(library)]), kernels)
        return kernels, f"{library} (cuobjdump -sass -arch {ARCH})"
    nvcc = find_tool("nvcc")
    if nvcc is None:
        raise ReportError("nvcc not found on PATH (needed to compile adacof_kernels.cu for sm_90)")
    cubin, ptxas = compile_cubin(nvcc, cache_dir)
    kernels = analyse(_run([cuobjdump, "-sass", str(cubin)]), pix)
    parse_ptxas(ptxas, kernels)
    return kernels, f"{cubin} (nvcc -cubin -arch={ARCH} {' '.join(NVCC_FLAGS)})"


def problems(kernels: list[Kernel]) -> list[str]:
    """What breaks issue 22's limits: K = 5 over 4,000 per pixel, any spill, K = 11 without a loop."""
    out = []
    for k in kernels:
        if k.kernel_size == 5 and k.vector and k.per_pixel is not None and k.per_pixel > LIMIT_PER_PIXEL:
            out.append(f"{k.label}: {k.per_pixel:.0f} instructions per pixel > {LIMIT_PER_PIXEL}")
        if k.spill_bytes or k.local_instructions:
            out.append(f"{k.label}: spills ({k.spill_bytes} bytes, {k.local_instructions} LDL/STL)")
        if k.kernel_size == 11 and not k.loops:
            out.append(f"{k.label}: fully unrolled (no loop in its SASS)")
    for maps, offsets in (("fp32", "fp32"), ("fp16", "fp16"), ("fp16", "fp32")):
        if not any(k.kernel_size == 5 and k.vector and (k.maps, k.offsets) == (maps, offsets) for k in kernels):
            out.append(f"no K=5 vector-load kernel for maps {maps} offsets {offsets} in the SASS")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plugins.sass_report", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--library", type=Path, help="a built library with sm_90 code (default: the plugin library of "
                     "the build directory, else libsfadacof_cuda)")
    src.add_argument("--compile", action="store_true", help="compile adacof_kernels.cu for sm_90 here instead")
    ap.add_argument("--cache-dir", type=Path, default=_libs.DEFAULT_BUILD_DIR / "sass",
                    help="where --compile keeps the cubin (default: build/sass)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 when a limit of issue 22 is not met")
    args = ap.parse_args(argv)
    try:
        kernels, source = report(args.library, args.compile, args.cache_dir)
    except (ReportError, OSError) as e:
        print(f"plugins.sass_report: {e}", file=sys.stderr)
        return 2
    found = problems(kernels)
    if args.json:
        print(json.dumps({"source": source, "arch": ARCH, "pixels_per_thread": pixels_per_thread(),
                          "limit_per_pixel_k5": LIMIT_PER_PIXEL, "problems": found,
                          "kernels": [{**dataclasses.asdict(k), "label": k.label} for k in kernels]}, indent=1))
    else:
        print(f"{KERNEL_NAME} on {ARCH}: {source}")
        print(f"{pixels_per_thread()} pixels per thread; per pixel = executed per thread / pixels per thread")
        print(f"{'kernel':<58} {'static':>7} {'loops (body x trips)':<24} {'per pixel':>9} {'regs':>5} {'spill':>5}")
        for k in kernels:
            loops = ", ".join(f"{b}x{n}" for _, _, b, n in k.loops) or ("-" if k.kernel_size else "run-time K")
            per = f"{k.per_pixel:9.0f}" if k.per_pixel is not None else f"{'-':>9}"
            spill = "?" if k.spill_bytes is None else str(k.spill_bytes + k.local_instructions)
            print(f"{k.label:<58} {k.static:>7} {loops:<24} {per} {k.registers or '?':>5} {spill:>5}")
        print("\n".join(f"LIMIT: {p}" for p in found) or
              f"limits met: K=5 <= {LIMIT_PER_PIXEL} per pixel (vector loads), no spills, K=11 not fully unrolled")
    return 1 if (args.check and found) else 0


if __name__ == "__main__":
    sys.exit(main())
