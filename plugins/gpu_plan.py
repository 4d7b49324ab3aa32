"""What the device run of plugins.gpu_check needs and does, shared with its rehearsal (plugins.gpu_rehearse): the
build it carries (made here: compiling the kernel file takes minutes per architecture), how a carried build is
judged current, and the steps and their "not run" status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from . import _libs

REPO = _libs.REPO_ROOT
DEFAULT_BUILD = REPO / "build" / "gpu-device"  # what the device needs, carried (build_for_device)
CMAKE_BUILD = REPO / "build" / "gpu-check"  # the CMake folder it is built in, here
# the sanitizer last: its time is the least predictable, and the headline keys do not depend on it
STEPS = ("build", "harness", "gpu_tests", "kernel", "end_to_end", "sanitizer")
NOT_RUN = "not run: no GPU"  # a step that needs a GPU, on a machine without one: never "passed"

DEVICE_ARCH = "90"  # H100 / H200, the lent machines
MANIFEST = "gpu_check_build.json"
HARNESS = "sfadacof_plugin_harness"
# What the build's products depend on: a change to any of them makes a carried build stale.
SOURCE_GLOBS = ("CMakeLists.txt", "plugins/*.cu", "plugins/*.cpp", "plugins/*.h", "plugins/tests/*.cpp",
                "plugins/tests/*.h")


def needed_files() -> list[str]:
    return [_libs.library_filename(s) for s in (_libs.CPU_LIBRARY, _libs.CUDA_LIBRARY, _libs.PLUGIN_LIBRARY,
                                                 _libs.REGISTER_LIBRARY)] + [HARNESS]


def sources_sha256(root: Path = REPO) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted({f for g in SOURCE_GLOBS for f in root.glob(g) if f.is_file()}):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def build_problem(build_dir: Path, arch: str) -> str | None:
    """Why `build_dir` cannot serve a device of `arch` (None: it can): its libraries and harness, built for the arch
    from this checkout's sources (MANIFEST, written by build_for_device)."""
    missing = [n for n in needed_files() if not (build_dir / n).is_file()]
    if missing:
        return f"{build_dir}: {', '.join(missing)} absent"
    if not os.access(build_dir / HARNESS, os.X_OK):
        return f"{build_dir / HARNESS}: not executable"
    try:
        manifest = json.loads((build_dir / MANIFEST).read_text())
        archs, sha = [str(a) for a in manifest["cuda_archs"]], manifest["sources_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{build_dir / MANIFEST}: unreadable ({type(e).__name__})"
    if arch not in archs:
        return f"{build_dir}: built for sm_{', sm_'.join(archs)}, not sm_{arch}"
    if sha != sources_sha256():
        return f"{build_dir}: built from other sources than this checkout's plugins/ and CMakeLists.txt"
    return None


def build_for_device(build_dir: Path, arch: str, trt_include: Path, jobs: int, cmake_dir: Path = CMAKE_BUILD) -> int:
    """Build the CPU, CUDA and plugin libraries and the harness for `arch` in `cmake_dir`, then put what the device
    needs and its MANIFEST into `build_dir` (the folder that is carried: no objects, no CMake cache)."""
    from . import build

    rc = build.main(["--cuda-archs", arch, "--build-dir", str(cmake_dir), "--tensorrt-include", str(trt_include),
                     "--no-tensorrt-python-check", "--jobs", str(jobs)])
    if rc != 0:
        return rc
    missing = [n for n in needed_files() if not (cmake_dir / n).is_file()]
    if missing:
        print(f"gpu_check: the build made no {', '.join(missing)} (see {cmake_dir}/sfadacof_build_summary.txt)",
              file=sys.stderr)
        return 1
    from sfadacof.outputs import atomic_path, atomic_write_text

    build_dir.mkdir(parents=True, exist_ok=True)
    for name in needed_files():
        with atomic_path(build_dir / name) as tmp:
            shutil.copyfile(cmake_dir / name, tmp)
        os.chmod(build_dir / name, (cmake_dir / name).stat().st_mode & 0o777)  # the harness stays executable
    archs = build.built_cuda_archs(cmake_dir / _libs.library_filename(_libs.CUDA_LIBRARY)) or [arch]
    atomic_write_text(build_dir / MANIFEST, json.dumps({"cuda_archs": archs, "sources_sha256": sources_sha256(),
                                                        "files": needed_files()}, indent=1) + "\n")
    return 0




def run_group(cmd: list[str], timeout: float, cwd: Path, env: dict) -> tuple[int, str]:
    """(exit status, stdout + stderr) of `cmd` in a new process group; on timeout (124) or any exception (Ctrl-C,
    SIGTERM turned into one) the whole group is killed: subprocess.run would kill the direct child only, then wait
    for a grandchild that still holds the pipe."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                         cwd=cwd, env=env, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        out, _ = p.communicate()
        return 124, (out or "") + f"\n(timed out after {timeout:.0f} s; its process group was killed)"
    except BaseException:
        _kill_group(p)
        p.wait()
        raise
    return p.returncode, out


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
