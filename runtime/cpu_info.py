"""What this CPU offers the CPU configurations, in one place: its model, the ISA features that choose and judge them
(after any oneDNN ISA cap), the cores this process may use, its clock, and its peak arithmetic rate per precision.

    cpu_flags()          the /proc/cpuinfo flags as the hardware reports them
    isa_cap()            the oneDNN ISA cap in force (ONEDNN_MAX_CPU_ISA, else DNNL_MAX_CPU_ISA), or None
    effective_flags()    cpu_flags() less what the cap forbids: what OpenVINO's kernels may use
    native_bf16()        bf16 computed natively (AVX512_BF16 or AMX-BF16 among the effective flags)
    int8_numerics()      how an INT8 model's arithmetic runs here: "bf16+vnni", "fp32+vnni" or "fp32+novnni"
    numerics_caps()      the ISA cap that makes this CPU compute like each class it can reach (for validations)
    facts()              model, family/model/stepping, the flags that matter, the cap, cores, clock (a dict)
    peak_gflops(p)       the peak rate of precision p (fp32 / bf16 / int8) on the cores used, with how it was reckoned

The ISA cap: OpenVINO's CPU plugin picks its kernels through its oneDNN, which honours ONEDNN_MAX_CPU_ISA (and the
older DNNL_MAX_CPU_ISA) read once at start. Checked on the compiled model's execution graph (OpenVINO 2026.4, a
Xeon with AMX): uncapped the convolutions run brgconv_avx512_f32 / brgconv_avx512_amx_bf16 / brgconv_avx512_amx_I8;
with ONEDNN_MAX_CPU_ISA=AVX2 they run brgconv_avx2_f32 and jit_avx2_I8, and a bf16 compile fails outright, while
OpenVINO's OPTIMIZATION_CAPABILITIES still lists BF16. So the candidates and peaks follow the capped flags here,
not OpenVINO's property (tests/test_cpu_info.py checks the cap on a real compiled graph).

Peaks, per core per cycle (FLOP; int8: multiply and add counted as 2 ops, as Intel counts them). Two FMA units per
core are assumed, as on Intel's Xeon Scalable Gold/Platinum and every 4th-generation (Sapphire Rapids) and later
core; Xeon Silver/Bronze of generations 1-2 have one AVX-512 FMA unit, which halves the AVX-512 figures:
  fp32  AVX-512 FMA 2 units x 16 lanes x 2 = 64;  AVX2 FMA 2 x 8 x 2 = 32;  AVX without FMA 8 x 2 = 16
  bf16  AMX-BF16 1024 (Intel's documented TMUL rate: 1024 BF16 ops/cycle/core);  AVX512_BF16 128 (VDPBF16PS:
        32 bf16 products summed in pairs = 64 FLOP per zmm instruction, 2 per cycle);  without either: emulated,
        no native peak (None)
  int8  AMX-INT8 2048 (Intel: 2048 INT8 ops/cycle/core);  AVX512_VNNI 256 (VPDPBUSD: 64 u8*s8 MACs = 128 ops per
        zmm instruction, 2 per cycle);  AVX-VNNI 128 (the ymm form);  AVX-512 without VNNI 128 and AVX2 64
        (VPMADDUBSW + VPMADDWD: two multiply uops per 64 or 32 MACs)
Clock: /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq (the highest single-core turbo) where the kernel has
it, else /proc/cpuinfo "cpu MHz" (on a VM usually the nominal/TSC clock); which one is said. All-core AVX-512 and
AMX clocks are lower than single-core turbo, so the fraction of peak is a lower bound on how busy the units are.
"""

from __future__ import annotations

import os
from pathlib import Path

# oneDNN's cpu_isa names (ONEDNN_MAX_CPU_ISA values, case-insensitive), lowest first, with the /proc/cpuinfo
# flags each level adds. A flag of FEATURE_FLAGS is kept under a cap only when a level up to the cap adds it.
ISA_LEVELS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("SSE41",), ()),
    (("AVX",), ()),
    (("AVX2",), ("avx2", "fma")),
    (("AVX2_VNNI",), ("avx_vnni",)),
    (("AVX2_VNNI_2",), ()),
    (("AVX512_CORE",), ("avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd")),
    (("AVX512_CORE_VNNI",), ("avx512_vnni",)),
    (("AVX512_CORE_BF16",), ("avx512_bf16",)),
    (("AVX10_1_512", "AVX512_CORE_FP16"), ("avx512_fp16",)),
    (("AVX10_1_512_AMX", "AVX512_CORE_AMX"), ("amx_tile", "amx_bf16", "amx_int8")),
    (("AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL", "DEFAULT"), ("amx_fp16",)),
)
FEATURE_FLAGS: tuple[str, ...] = tuple(f for _, added in ISA_LEVELS for f in added)
CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # oneDNN reads the first one set

FMA_UNITS = 2  # per core; see the module docstring


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def isa_cap(environ: dict | None = None) -> str | None:
    """The oneDNN ISA cap in force (upper-cased level name), None when none is set or the value is not a level
    oneDNN knows (oneDNN then ignores it too)."""
    env = os.environ if environ is None else environ
    for var in CAP_VARIABLES:
        value = env.get(var)
        if value:
            value = value.strip().upper()
            return value if any(value in names for names, _ in ISA_LEVELS) else None
    return None


def _level(flag: str) -> int | None:
    """Index in ISA_LEVELS of the level that brings `flag` (other AVX-512 and AMX extensions: the base AVX-512 or
    AMX level); None for a flag no cap touches (sse4_2, aes, ...)."""
    for i, (_, added) in enumerate(ISA_LEVELS):
        if flag in added:
            return i
    for i, (names, _) in enumerate(ISA_LEVELS):
        if (flag.startswith("amx") and "AVX512_CORE_AMX" in names) or \
                (flag.startswith("avx512") and "AVX512_CORE" in names):
            return i
    return None


def _cap_index(cap: str | None) -> int:
    for i, (names, _) in enumerate(ISA_LEVELS):
        if cap in names:
            return i
    return len(ISA_LEVELS)


def allowed_flags(cap: str | None) -> set[str]:
    """The FEATURE_FLAGS a cap lets oneDNN use (all of them without a cap)."""
    return {f for f in FEATURE_FLAGS if _level(f) <= _cap_index(cap)}


def effective_flags(flags: set[str] | None = None, cap: str | None = None, environ: dict | None = None) -> set[str]:
    """The flags the kernels may use: the CPU's, less the ISA extensions above the cap (cap None: the one in force)."""
    flags = cpu_flags() if flags is None else set(flags)
    top = _cap_index(isa_cap(environ) if cap is None else cap)
    return {f for f in flags if (_level(f) or 0) <= top}


def native_bf16(flags: set[str] | None = None) -> bool:
    """bf16 computed natively (AVX512_BF16 or AMX-BF16 in effect); elsewhere bf16 is emulated, slower than fp32."""
    flags = effective_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _cpuinfo_fields() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                k, _, v = line.partition(":")
                out.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return out


def clock_ghz() -> tuple[float | None, str]:
    """The clock the peak is reckoned at, and where it comes from."""
    sysfs = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(sysfs.read_text()) / 1e6, f"{sysfs} (highest turbo)"
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo_fields().get("cpu MHz")
    try:
        return float(mhz) / 1e3, "/proc/cpuinfo cpu MHz (no cpufreq in /sys: the clock the hypervisor reports)"
    except (TypeError, ValueError):
        return None, "unknown (no cpufreq in /sys, no cpu MHz in /proc/cpuinfo)"


# How OpenVINO computes an INT8 model (calib.shipped_int8) on a CPU, in the two ways its results can differ:
#  * its float parts (the layers left unquantized) run bf16 where bf16 is native, else fp32;
#  * its int8 dot products: VNNI / AMX (VPDPBUSD, TDPBUSD) sum u8*s8 products straight into int32, exactly; without
#    VNNI, oneDNN pairs them with VPMADDUBSW, whose int16 pair sums saturate (2 x 255 x 127 > 32767) unless the
#    weights use 7 bits (NNCF's overflow fix) -- so the same model can give other frames there.
# An INT8 model's validation holds for the class it ran as; calib.shipped_int8 validates every class this CPU
# reaches by an ISA cap, and --backend auto offers the shipped model only on a CPU of a validated class.
INT8_NUMERICS = {"bf16+vnni": "float parts bf16, int8 sums exact (VNNI/AMX)",
                 "fp32+vnni": "float parts fp32, int8 sums exact (AVX512_VNNI/AVX-VNNI)",
                 "fp32+novnni": "float parts fp32, int8 sums through VPMADDUBSW (AVX2 or AVX-512 without VNNI)"}
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_numerics(flags: set[str] | None = None) -> str:
    """This CPU's class of INT8 arithmetic (a key of INT8_NUMERICS), after any ISA cap."""
    flags = effective_flags() if flags is None else flags
    if native_bf16(flags):
        return "bf16+vnni"  # every CPU with native bf16 (AVX512_BF16, AMX) has AVX512_VNNI too
    return "fp32+vnni" if VNNI_FLAGS & flags else "fp32+novnni"


def numerics_caps(flags: set[str] | None = None) -> dict[str, str | None]:
    """{class: the oneDNN cap that makes this CPU compute as that class (None: as it is)}, for every class this CPU
    reaches: a cap only removes features, so a CPU reaches its own class and the ones below it."""
    flags = cpu_flags() if flags is None else flags
    caps: dict[str, str | None] = {int8_numerics(effective_flags(flags, cap="ALL")): None}
    for cap in ("AVX512_CORE_VNNI", "AVX2_VNNI", "AVX2"):
        if {"AVX512_CORE_VNNI": "avx512_vnni", "AVX2_VNNI": "avx_vnni", "AVX2": "avx2"}[cap] in flags:
            caps.setdefault(int8_numerics(effective_flags(flags, cap=cap)), cap)
    return caps


def facts() -> dict:
    """The CPU as the choice of configuration and the peaks see it (numbers as numbers)."""
    info = _cpuinfo_fields()
    ghz, clock_source = clock_ghz()
    flags = cpu_flags()
    eff = effective_flags(flags)
    return {"model": info.get("model name", "unknown"),
            "family_model_stepping": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping")),
            "flags": sorted(f for f in FEATURE_FLAGS if f in flags),
            "isa_cap": isa_cap(), "effective_flags": sorted(f for f in FEATURE_FLAGS if f in eff),
            "cores": available_cores(), "clock_ghz": ghz, "clock_source": clock_source}


def peak_per_cycle(precision: str, flags: set[str] | None = None) -> tuple[float | None, str]:
    """FLOP (int8: ops) per cycle per core for `precision` with `flags` (default: the effective ones), and the
    unit it comes from; None for bf16 without native support (emulated)."""
    f = effective_flags() if flags is None else flags
    avx512 = "avx512f" in f
    fp32 = ((FMA_UNITS * 16 * 2, f"AVX-512 FMA ({FMA_UNITS} units x 16 lanes x 2)") if avx512 else
            (FMA_UNITS * 8 * 2, f"AVX2 FMA ({FMA_UNITS} units x 8 lanes x 2)") if {"avx2", "fma"} <= f else
            (16, "AVX (8 lanes, add + multiply)"))
    if precision == "fp32":
        return fp32
    if precision == "bf16":
        if "amx_bf16" in f:
            return 1024, "AMX-BF16 (Intel: 1024 BF16 ops/cycle/core)"
        if "avx512_bf16" in f:
            return 128, f"AVX512_BF16 (VDPBF16PS: 64 FLOP per zmm instruction x {FMA_UNITS})"
        return None, "no native bf16 (emulated)"
    if precision == "int8":
        if "amx_int8" in f:
            return 2048, "AMX-INT8 (Intel: 2048 INT8 ops/cycle/core)"
        if "avx512_vnni" in f:
            return 256, f"AVX512_VNNI (VPDPBUSD: 128 ops per zmm instruction x {FMA_UNITS})"
        if "avx_vnni" in f:
            return 128, f"AVX-VNNI (VPDPBUSD ymm: 64 ops x {FMA_UNITS})"
        if avx512:
            return 128, "AVX-512 without VNNI (VPMADDUBSW + VPMADDWD)"
        return 64, "AVX2 without VNNI (VPMADDUBSW + VPMADDWD)"
    raise ValueError(f"precision {precision!r}: fp32, bf16 or int8")


def peak_gflops(precision: str, cores: int | None = None, ghz: float | None = None,
                flags: set[str] | None = None) -> dict:
    """{"gflops": peak GFLOP/s (None where unknown), "per_cycle_per_core", "unit", "cores", "clock_ghz",
    "clock_source"} for `precision` on `cores` (default: those this process may use) at `ghz` (default: clock_ghz())."""
    per_cycle, unit = peak_per_cycle(precision, flags)
    cores = cores or available_cores()
    source = "given"
    if ghz is None:
        ghz, source = clock_ghz()
    gflops = per_cycle * cores * ghz if per_cycle is not None and ghz else None
    return {"gflops": gflops, "per_cycle_per_core": per_cycle, "unit": unit, "cores": cores, "clock_ghz": ghz,
            "clock_source": source}
