"""Configure and build the native libraries of plugins/ with CMake into <repo>/build.

    python -m plugins.build [--cuda-archs "90"] [--tensorrt-root DIR | --tensorrt-include DIR]
                            [--no-tensorrt-python-check] [--no-cuda] [--build-dir DIR] [--jobs N] [--clean]

Prints what was built and what was skipped (and why). The Python loaders (plugins.cpu_op, plugins.cuda_op)
find the libraries in <repo>/build without further configuration.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import _libs


def build_parser() -> argparse.ArgumentParser:
    from sfadacof.cli_args import ArgumentParser

    ap = ArgumentParser(prog="python -m plugins.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cuda-archs", help='CMAKE_CUDA_ARCHITECTURES, e.g. "90" (default: 75;80;86;89;90, plus '
                    '100;120 when nvcc supports them)')
    ap.add_argument("--tensorrt-root", help="TensorRT install root (include/NvInfer*.h below it)")
    ap.add_argument("--tensorrt-include", help="directory holding NvInferRuntime.h")
    ap.add_argument("--no-tensorrt-python-check", action="store_true",
                    help="accept TensorRT headers of another major than this interpreter's tensorrt package "
                         "(building the plugin for another machine's runtime)")
    ap.add_argument("--no-cuda", action="store_true", help="build the CPU kernel only")
    ap.add_argument("--build-dir", type=Path, default=_libs.DEFAULT_BUILD_DIR, help="CMake build directory")
    ap.add_argument("--build-type", default="Release", help="CMAKE_BUILD_TYPE (Release, Debug, RelWithDebInfo)")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                    help="parallel compile jobs (default: the CPU count, %(default)s here)")
    ap.add_argument("--clean", action="store_true", help="delete the build directory's CMake cache first")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    cmake = shutil.which("cmake")
    if cmake is None:
        print("plugins.build: cmake not found on PATH (needs CMake >= 3.18)", file=sys.stderr)
        return 2
    build_dir: Path = args.build_dir.resolve()
    if args.clean:
        (build_dir / "CMakeCache.txt").unlink(missing_ok=True)
        shutil.rmtree(build_dir / "CMakeFiles", ignore_errors=True)

    configure = [cmake, "-S", str(_libs.REPO_ROOT), "-B", str(build_dir), f"-DCMAKE_BUILD_TYPE={args.build_type}"]
    if args.cuda_archs:
        configure.append(f"-DCMAKE_CUDA_ARCHITECTURES={args.cuda_archs}")
    if args.no_cuda:
        configure.append("-DSFADACOF_WITH_CUDA=OFF")
    if args.tensorrt_root:
        configure.append(f"-DTensorRT_ROOT={Path(args.tensorrt_root).resolve()}")
    if args.tensorrt_include:
        configure.append(f"-DTensorRT_INCLUDE_DIR={Path(args.tensorrt_include).resolve()}")
    # Python package discovery in CMake uses this interpreter (and its tensorrt for the headers' major check).
    configure.append(f"-DPython3_EXECUTABLE={sys.executable}")
    configure.append(f"-DSFADACOF_CHECK_TENSORRT_PYTHON={'OFF' if args.no_tensorrt_python_check else 'ON'}")

    for cmd in (configure, [cmake, "--build", str(build_dir), "--parallel", str(max(1, args.jobs))]):
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"plugins.build: command failed with exit status {rc}", file=sys.stderr)
            return rc

    summary = build_dir / "sfadacof_build_summary.txt"
    print("\n== plugins.build summary ==")
    if summary.is_file():
        print(summary.read_text().rstrip())
    for stem in (_libs.CPU_LIBRARY, _libs.CUDA_LIBRARY, _libs.PLUGIN_LIBRARY, _libs.REGISTER_LIBRARY):
        lib = build_dir / _libs.library_filename(stem)
        print(f"{'present' if lib.is_file() else 'absent '}: {lib}")
    if build_dir != _libs.DEFAULT_BUILD_DIR.resolve():
        print(f"(not the default build directory: set SFADACOF_PLUGIN_DIR={build_dir} for the Python loaders)")
    return 0


def built_cuda_archs(library: Path) -> list[str] | None:
    """CMAKE_CUDA_ARCHITECTURES of the build directory holding `library` (None if unknown)."""
    cache = library.parent / "CMakeCache.txt"
    if not cache.is_file():
        return None
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith("CMAKE_CUDA_ARCHITECTURES:"):
            return [a.split("-")[0] for a in line.split("=", 1)[1].split(";") if a]
    return None


if __name__ == "__main__":
    sys.exit(main())
