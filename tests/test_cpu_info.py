"""runtime/cpu_info.py: the ISA cap (ONEDNN_MAX_CPU_ISA) is read as oneDNN reads it and the flags, bf16 and peaks
follow it -- checked against OpenVINO's real compiled execution graph under the cap -- and the peaks equal the
hand-worked vector-unit arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import cpu_info

REPO = Path(__file__).resolve().parents[1]
SPR = {"fma", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni",
       "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "sse4_2"}  # a Sapphire Rapids' flags


def test_cap_names_and_precedence():
    assert cpu_info.isa_cap({}) is None
    assert cpu_info.isa_cap({"ONEDNN_MAX_CPU_ISA": "avx2"}) == "AVX2"
    assert cpu_info.isa_cap({"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"}) == "AVX512_CORE_BF16"
    # oneDNN reads ONEDNN_ first; a value it does not know caps nothing
    assert cpu_info.isa_cap({"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX512_CORE"}) == "AVX2"
    assert cpu_info.isa_cap({"ONEDNN_MAX_CPU_ISA": "avx9000"}) is None


@pytest.mark.parametrize("cap, kept, gone", [
    ("AVX2", {"fma", "avx2", "sse4_2"}, {"avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}),
    ("AVX512_CORE_VNNI", {"avx512f", "avx512_vnni"}, {"avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16"}),
    ("AVX512_CORE_BF16", {"avx512_vnni", "avx512_bf16"}, {"amx_bf16", "amx_int8", "avx512_fp16"}),
    ("AVX512_CORE_AMX", SPR, set()),
    (None, SPR, set()),
])
def test_effective_flags_under_a_cap(cap, kept, gone):
    eff = cpu_info.effective_flags(SPR, cap=cap or "ALL")
    assert kept <= eff and not (gone & eff)


ZEN3 = {"fma", "avx2", "sse4_2"}  # an AVX2-only EPYC: no AVX-512, no VNNI
ALDER = {"fma", "avx2", "avx_vnni", "sse4_2"}  # a client core with AVX-VNNI, no AVX-512
CASCADE = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_vnni"}
SKYLAKE = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}  # AVX-512 without VNNI


@pytest.mark.parametrize("flags, cap, numerics", [
    (SPR, None, "bf16+vnni"), (SPR, "AVX512_CORE_BF16", "bf16+vnni"), (SPR, "AVX512_CORE_VNNI", "fp32+vnni"),
    (SPR, "AVX2_VNNI", "fp32+vnni"), (SPR, "AVX2", "fp32+novnni"),
    (ZEN3, None, "fp32+novnni"), (ALDER, None, "fp32+vnni"), (CASCADE, None, "fp32+vnni"),
    (SKYLAKE, None, "fp32+novnni"), (set(), None, "fp32+novnni"),
])
def test_int8_numerics_class(flags, cap, numerics):
    """The class of INT8 arithmetic follows the two things that change an INT8 model's frames: bf16 or fp32 float
    parts (native bf16 or not) and exact or saturating int8 sums (VNNI/AMX or VPMADDUBSW)."""
    assert cpu_info.int8_numerics(cpu_info.effective_flags(flags, cap=cap or "ALL")) == numerics


def test_numerics_caps_reach_each_lower_class_by_a_cap_that_gives_it():
    """calib.shipped_int8 validates every class a CPU reaches: a Xeon with AMX reaches all three (as it is,
    AVX512_CORE_VNNI, AVX2), an AVX2-only CPU only its own; each cap named gives its class."""
    assert cpu_info.numerics_caps(SPR) == {"bf16+vnni": None, "fp32+vnni": "AVX512_CORE_VNNI", "fp32+novnni": "AVX2"}
    assert cpu_info.numerics_caps(CASCADE) == {"fp32+vnni": None, "fp32+novnni": "AVX2"}
    assert cpu_info.numerics_caps(ALDER) == {"fp32+vnni": None, "fp32+novnni": "AVX2"}
    assert cpu_info.numerics_caps(ZEN3) == {"fp32+novnni": None}
    for flags in (SPR, CASCADE, ALDER, ZEN3):
        for cls, cap in cpu_info.numerics_caps(flags).items():
            assert cpu_info.int8_numerics(cpu_info.effective_flags(flags, cap=cap or "ALL")) == cls
    assert set(cpu_info.INT8_NUMERICS) == {"bf16+vnni", "fp32+vnni", "fp32+novnni"}


def test_peaks_are_the_vector_unit_arithmetic():
    """Per core per cycle: fp32 2 FMA units x lanes x 2; bf16/int8 Intel's AMX figures, else the dot-product
    instructions' rates; at 2 cores and 2.6 GHz (GFLOP/s = per cycle x cores x GHz)."""
    cases = [("fp32", SPR, 2 * 16 * 2), ("bf16", SPR, 1024), ("int8", SPR, 2048),
             ("fp32", cpu_info.effective_flags(SPR, cap="AVX2"), 2 * 8 * 2),
             ("bf16", cpu_info.effective_flags(SPR, cap="AVX2"), None),
             ("int8", cpu_info.effective_flags(SPR, cap="AVX2"), 64),
             ("bf16", cpu_info.effective_flags(SPR, cap="AVX512_CORE_BF16"), 2 * 64),
             ("int8", cpu_info.effective_flags(SPR, cap="AVX512_CORE_BF16"), 2 * 128),
             ("int8", cpu_info.effective_flags(SPR, cap="AVX2_VNNI"), 2 * 64)]
    for precision, flags, per_cycle in cases:
        p = cpu_info.peak_gflops(precision, cores=2, ghz=2.6, flags=flags)
        assert p["per_cycle_per_core"] == per_cycle, (precision, sorted(flags))
        assert p["gflops"] == (None if per_cycle is None else pytest.approx(per_cycle * 2 * 2.6))


def _probe(env_cap: str | None, onnx: Path) -> dict:
    """In a fresh process (oneDNN reads the cap once, at load): cpu_info's view and the kernels OpenVINO's compiled
    fp32 model executes its convolutions with."""
    code = f"""
import json, numpy as np
from runtime import cpu_info
from runtime.backends.openvino_backend import OpenVINOBackend, native_bf16
b = OpenVINOBackend({str(onnx)!r}, precision="fp32")
b.infer(np.zeros((1, 3, 32, 32), np.float32), np.zeros((1, 3, 32, 32), np.float32))
prims = sorted({{n.get_rt_info()["primitiveType"].astype(str) for n in b._compiled[(1, 3, 32, 32)][0]
                 .get_runtime_model().get_ordered_ops() if n.get_rt_info()["layerType"].astype(str) == "Convolution"}})
from runtime.backends import cpu_choice
from runtime.backends.registry import BackendOptions
cands, _, notes = cpu_choice.candidates(BackendOptions(onnx={str(onnx)!r}), native_bf16())
print(json.dumps({{"cands": [c.name for c in cands], "notes": notes, "cap": cpu_info.isa_cap(), "flags": sorted(cpu_info.effective_flags()), "bf16": native_bf16(),
                  "fp32_peak": cpu_info.peak_per_cycle("fp32")[0], "prims": prims}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in cpu_info.CAP_VARIABLES}
    env["PYTHONPATH"] = str(REPO)
    if env_cap:
        env["ONEDNN_MAX_CPU_ISA"] = env_cap
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def onnx(ckpt_exports):
    return ckpt_exports["onnx"]  # the session's seeded checkpoint, standard-op form (conftest.py, read only)


@pytest.mark.skipif("avx512f" not in cpu_info.cpu_flags(), reason="the AVX2 cap is visible only on an AVX-512 CPU")
def test_avx2_cap_takes_in_openvino_and_cpu_info_follows(onnx):
    """ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 CPU: OpenVINO's convolutions run AVX2 kernels (the compiled graph's
    primitive names), and cpu_info reports the cap, no AVX-512 flags, no native bf16, the AVX2 fp32 peak."""
    pytest.importorskip("openvino")
    free, capped = _probe(None, onnx), _probe("AVX2", onnx)
    assert free["cap"] is None and any("avx512" in p for p in free["prims"]), free
    assert capped["cap"] == "AVX2" and capped["prims"] and all("avx2" in p for p in capped["prims"]), capped
    assert not any(f.startswith(("avx512", "amx")) for f in capped["flags"]) and "avx2" in capped["flags"]
    assert capped["bf16"] is False and capped["fp32_peak"] == 32 and free["fp32_peak"] == 64
    # --backend auto under the cap: bf16 (emulated there: its compile even fails) is no candidate, and says why
    assert capped["cands"] == ["fp32"] and any("the ISA cap AVX2 hides" in n for n in capped["notes"]), capped
    if {"avx512_bf16", "amx_bf16"} & cpu_info.cpu_flags():
        assert free["bf16"] is True and free["cands"] == ["fp32", "bf16"]
