"""`pip install .` / `pip install -e .` build the native libraries of plugins/ with the top-level CMakeLists.txt.

The build is setuptools' own build_ext step running CMake (configure + build) and copying the libraries into the
`plugins` package: into the wheel for `pip install .`, into plugins/ of the source tree for `pip install -e .`;
plugins._libs finds them there. What CMake builds depends on the toolchains it finds (see CMakeLists.txt): the C++
CPU kernel always, the CUDA kernels with nvcc, the TensorRT plugin with TensorRT headers; a skipped part is printed
with its reason (pip shows it with -v) and recorded in plugins/sfadacof_build_summary.txt.

When no C++ compiler (or no CMake) is usable, the install still succeeds without native libraries: the runtime then
exports the standard-op graph (export.cache says so once), which needs no custom op.

Environment:
  SFADACOF_CUDA_ARCHS="90"     CMAKE_CUDA_ARCHITECTURES (default: those of the GPUs nvidia-smi lists; with none
                               visible the CUDA parts are skipped, saying so)
  SFADACOF_WITH_CUDA=0         build the CPU kernel only
  SFADACOF_NATIVE=0            build nothing native (pure-Python install)
  TensorRT_ROOT / TensorRT_INCLUDE_DIR   where the TensorRT headers are (read by CMakeLists.txt)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# Every library CMakeLists.txt may build (plugins/_libs.py's stems) and its summary of what it skipped.
STEMS = ("sfadacof_cpu", "sfadacof_cuda", "sfadacof_trt_plugin", "sfadacof_trt_register")
SUMMARY = "sfadacof_build_summary.txt"


def _library_filename(stem: str) -> str:
    if sys.platform.startswith("win"):
        return f"{stem}.dll"
    return f"lib{stem}.dylib" if sys.platform == "darwin" else f"lib{stem}.so"


def _say(msg: str) -> None:
    # stderr: pip relays a build's output with -v, and on failure; the summary file keeps it for later.
    print(f"sfadacof native build: {msg}", file=sys.stderr, flush=True)


def _visible_gpu_archs() -> str:
    """CMAKE_CUDA_ARCHITECTURES of this machine's GPUs ("89;90"), or "" when nvidia-smi sees none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    caps = sorted({line.strip().replace(".", "") for line in out.splitlines() if line.strip().replace(".", "").isdigit()})
    return ";".join(caps)


class CMakeLibraries(build_ext):
    """Runs CMake instead of compiling extension sources; never fails the install for lack of a toolchain."""

    def run(self) -> None:  # noqa: D102
        dest = HERE / "plugins" if self.inplace else Path(self.build_lib) / "plugins"
        self._outputs: list[str] = []
        if os.environ.get("SFADACOF_NATIVE", "1").lower() in ("0", "off", "no", "false"):
            _say("skipped (SFADACOF_NATIVE=0): the runtime will use the standard-op graph")
            return
        try:
            self._build(dest)
        except _Skip as e:
            _say(f"NOT built ({e}); the install goes on: the runtime will use the standard-op graph "
                 "(build later with `python -m plugins.build`)")

    def _build(self, dest: Path) -> None:
        cmake = shutil.which("cmake")
        if cmake is None:
            raise _Skip("cmake not found on PATH")
        build_dir = Path(self.build_temp).resolve() / "cmake"
        configure = [cmake, "-S", str(HERE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DPython3_EXECUTABLE={sys.executable}"]
        archs = os.environ.get("SFADACOF_CUDA_ARCHS") or _visible_gpu_archs()
        why_no_cuda = ""
        if os.environ.get("SFADACOF_WITH_CUDA", "1").lower() in ("0", "off", "no", "false"):
            configure.append("-DSFADACOF_WITH_CUDA=OFF")
        elif archs:
            configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={archs}")
        else:
            # nvcc compiles the kernels for 7 architectures in ~6+ minutes on 2 cores: not for a machine that cannot
            # run them. Compile checks and other machines' builds: SFADACOF_CUDA_ARCHS or python -m plugins.build.
            why_no_cuda = ("CUDA kernels and TensorRT plugin: no GPU visible (nvidia-smi); set SFADACOF_CUDA_ARCHS=90 "
                           "(say) to build them for another machine")
            configure.append("-DSFADACOF_WITH_CUDA=OFF")
        jobs = str(max(1, os.cpu_count() or 1))
        for cmd in (configure, [cmake, "--build", str(build_dir), "--parallel", jobs]):
            _say("+ " + " ".join(cmd))
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                tail = proc.stdout.strip().splitlines()[-15:]
                print("\n".join(tail), file=sys.stderr)
                raise _Skip(f"`{' '.join(cmd[:2])} ...` failed with exit status {proc.returncode}")
        dest.mkdir(parents=True, exist_ok=True)
        summary = build_dir / SUMMARY
        lines = summary.read_text().splitlines() if summary.is_file() else []
        if why_no_cuda:
            lines = [ln for ln in lines if "SFADACOF_WITH_CUDA=OFF" not in ln] + [f"skipped: {why_no_cuda}"]
        summary.write_text("".join(ln + "\n" for ln in lines))
        for line in lines:
            _say(line)
        for name in [_library_filename(s) for s in STEMS] + [SUMMARY]:
            src = build_dir / name
            if src.is_file():
                shutil.copyfile(src, dest / name)
                self._outputs.append(str(dest / name))
        if not (dest / _library_filename(STEMS[0])).is_file():
            raise _Skip("CMake ran but produced no CPU kernel library")

    def get_outputs(self) -> list[str]:  # noqa: D102
        return list(getattr(self, "_outputs", []))

    def get_source_files(self) -> list[str]:  # noqa: D102
        return []


class _Skip(Exception):
    pass


# No sources: the one "extension" stands for the CMake build (it also makes the wheel platform-specific).
setup(ext_modules=[Extension("plugins._native", sources=[])], cmdclass={"build_ext": CMakeLibraries})
