"""plugins.sass_report: the instruction count per output pixel of the kernel TensorRT runs, from its sm_90 SASS.

* The counting rules on a hand-written listing whose executed count is worked out by hand (independent of the
  code under test).
* The real kernel (the built library's sm_90 code, or adacof_kernels.cu compiled for sm_90 into build/sass, cached
  by source hash): issue 22's limits -- <= 4,000 instructions per pixel at K = 5 for fp32 maps and for fp16 maps
  (with fp16 or fp32 offsets), no spill in any kernel, the K = 11 kernels not fully unrolled (their tap loops run 11
  times), and the TensorRT plugin library carries no kernel but this one.
Skipped only where cuobjdump (with nvdisasm) or, to compile, nvcc is missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from plugins import _libs, sass_report

LISTING = """
        Function : _ZN8sfadacof16synthesis_kernelILi11ELb1EffEEvNS_16SynthesisTensorsIT1_T2_EENS_14SynthesisShapeEiii
        .headerflags    @"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                         /* 0x00000a00ff017b82 */
        /*0010*/                   S2R R0, SR_TID.X ;                             /* 0x0000000000007919 */
        /*0020*/                   IADD3 R2, R0, 0x1, RZ ;                        /* 0x0000000100027810 */
        /*0030*/                   FADD R3, R2, R2 ;                              /* 0x0000000202037221 */
        /*0040*/                   FFMA R4, R3, R3, R4 ;                          /* 0x0000000303047223 */
        /*0050*/                   ISETP.NE.AND P0, PT, R2, 0xb, PT ;             /* 0x0000000b0200780c */
        /*0060*/               @P0 BRA 0x40 ;                                     /* 0x0000000000000947 */
        /*0070*/                   IADD3 R2, R2, 0x1, RZ ;                        /* 0x0000000100027810 */
        /*0080*/               @P1 BRA 0x30 ;                                     /* 0x0000000000000947 */
        /*0090*/                   STG.E desc[UR4][R6.64], R4 ;                   /* 0x0000000406007986 */
        /*00a0*/                   EXIT ;                                         /* 0x000000000000794d */
        /*00b0*/                   BRA 0xb0;                                      /* 0xfffffffc00fc7947 */
        /*00c0*/                   NOP;                                           /* 0x0000000000007918 */
        /*00d0*/                   NOP;                                           /* 0x0000000000007918 */
"""


def test_counting_rules_on_a_known_listing():
    # Instructions 0x00-0x20 and 0x90-0xa0: once (5). Outer loop 0x30..0x80 (6 instructions), of which the inner
    # loop 0x40..0x60 (3) runs 11 x 11 times and the rest (0x30, 0x70, 0x80: 3) 11 times. The self-branch at 0xb0
    # and the NOPs are padding.
    funcs = sass_report.parse_sass(LISTING)
    (name, instructions), = funcs.items()
    kernel = sass_report.parse_kernel_name(name)
    assert (kernel.kernel_size, kernel.vector, kernel.maps, kernel.offsets) == (11, True, "fp32", "fp32")
    static, executed, loops = sass_report.count(instructions, lambda first, last, depth: 11)
    assert static == 11
    assert executed == 5 + 3 * 11 + 3 * 121
    assert sorted((s, e, n) for s, e, n, _ in loops) == [(0x30, 0x80, 6), (0x40, 0x60, 3)]
    kernels = sass_report.analyse(LISTING, 4)
    assert kernels[0].per_pixel == (5 + 3 * 11 + 3 * 121) / 4


def test_counting_refuses_a_loop_in_the_k5_kernel_and_crossed_loops():
    k5 = LISTING.replace("ILi11E", "ILi5E")
    with pytest.raises(sass_report.ReportError, match="straight-line"):
        sass_report.analyse(k5, 4)
    crossed = LISTING.replace("@P1 BRA 0x30", "@P1 BRA 0x50")
    with pytest.raises(sass_report.ReportError, match="overlap"):
        sass_report.analyse(crossed, 4)


def test_kernel_names_of_every_instantiation():
    for mangled, want in [
        ("_ZN8sfadacof16synthesis_kernelILi5ELb1E6__halfS2_EEvNS_16SynthesisTensorsIT1_T2_EE", (5, True, "fp16", "fp16")),
        ("_ZN8sfadacof16synthesis_kernelILi5ELb0E6__halffEEvNS_16SynthesisTensorsIT1_T2_EE", (5, False, "fp16", "fp32")),
        ("_ZN8sfadacof16synthesis_kernelILi0ELb0EffEEvNS_16SynthesisTensorsIT1_T2_EE", (0, False, "fp32", "fp32")),
    ]:
        k = sass_report.parse_kernel_name(mangled)
        assert (k.kernel_size, k.vector, k.maps, k.offsets) == want
    assert sass_report.parse_kernel_name("_ZN8sfadacof21naive_direction_kernelIffEEvPKT_") is None


def _tools_or_skip(compile_needed: bool) -> None:
    if sass_report.find_tool("cuobjdump") is None or sass_report.find_tool("nvdisasm") is None:
        pytest.skip("cuobjdump/nvdisasm not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm: the dev "
                    "extra has them)")
    if compile_needed and shutil.which("nvcc") is None:
        pytest.skip("nvcc not on PATH and no library with sm_90 code built: nothing to read SASS from")


@pytest.fixture(scope="module")
def report():
    library = sass_report.default_library()
    _tools_or_skip(compile_needed=library is None)
    kernels, source = sass_report.report(library, library is None, _libs.DEFAULT_BUILD_DIR / "sass")
    print(source)
    return kernels


@pytest.mark.slow  # `report`: compiles the kernels for sm_90 where no library is built (~100 s), disassembles them
def test_k5_kernel_within_4000_instructions_per_pixel(report):
    k5 = {(k.maps, k.offsets): k for k in report if k.kernel_size == 5 and k.vector}
    assert set(k5) == {("fp32", "fp32"), ("fp16", "fp16"), ("fp16", "fp32")}
    for key, k in k5.items():
        print(f"{k.label}: {k.per_pixel:.0f} per pixel, {k.registers} registers")
        assert not k.loops, f"{k.label} has loops: {k.loops}"
        # Both frames' 25 taps, 3 channels, 4 gathers each: at least 600 loads and 600 FMAs per pixel, so a count
        # far below the limit would mean the counting lost code.
        assert 1500 < k.per_pixel <= sass_report.LIMIT_PER_PIXEL, key


@pytest.mark.slow
def test_no_kernel_spills(report):
    for k in report:
        assert k.spill_bytes == 0 and k.local_instructions == 0, f"{k.label}: {k.spill_bytes} bytes, " \
            f"{k.local_instructions} LDL/STL"
        assert k.registers is not None and k.registers <= 255


@pytest.mark.slow
def test_k11_kernels_keep_their_tap_loops(report):
    k11 = [k for k in report if k.kernel_size == 11]
    assert len(k11) == 6
    for k in k11:
        # Two directions, each a k loop holding an l loop, 11 trips each.
        assert len(k.loops) == 4 and all(n == 11 for *_, n in k.loops), (k.label, k.loops)
        assert k.static < 2000, f"{k.label}: {k.static} instructions of code"
        # 242 taps x at least 12 loads + 12 FMAs per pixel: the loop bodies were multiplied by their trips.
        assert k.per_pixel > 242 * 24
    assert sass_report.problems(report) == []


def _plugin_libraries() -> list[Path]:
    build = _libs.DEFAULT_BUILD_DIR
    dirs = [build, *sorted(p for p in build.glob("trt*") if p.is_dir())]
    if os.environ.get("SFADACOF_PLUGIN_DIR"):
        dirs.append(Path(os.environ["SFADACOF_PLUGIN_DIR"]))
    names = (_libs.library_filename(_libs.PLUGIN_LIBRARY), _libs.library_filename(_libs.REGISTER_LIBRARY))
    return [d / n for d in dirs for n in names if (d / n).is_file()]


def test_plugin_library_carries_only_the_kernel_it_runs():
    libs = _plugin_libraries()
    if not libs:
        pytest.skip("no TensorRT plugin library built (TensorRT headers needed: plugins/README.md)")
    _tools_or_skip(compile_needed=False)
    cuobjdump = sass_report.find_tool("cuobjdump")
    for lib in libs:
        funcs = sass_report.parse_sass(sass_report._run([cuobjdump, "-sass", str(lib)]))
        assert funcs, f"{lib}: no device code"
        others = [f for f in funcs if sass_report.parse_kernel_name(f) is None]
        assert not others, f"{lib} carries kernels TensorRT never runs: {others}"
