"""Runs sfadacof_plugin_harness (plugins/tests/plugin_harness.cpp) on the built TensorRT plugin libraries: it drives
the plugin through its own methods as TensorRT would (creator, fields, shapes, formats, clone, serialisation
round trip, runtime re-creation; enqueue against the CPU kernel when a GPU is present) without libnvinfer, standing
in for libnvinfer's version functions and plugin registry itself.

Also: a harness built with one TensorRT major's headers driving the plugin built with the other's (the plugin must
log to stderr, never through the other major's ILoggerFinder, and register nothing); libsfadacof_trt_register
registering into a fake libnvinfer.so.N loaded RTLD_LOCAL (as `import tensorrt` loads the real one); CMake
refusing headers whose major differs from the installed Python tensorrt package.

Everything here needs TensorRT headers at configure time (plugins/README.md, "Two TensorRT majors"); CI has none,
so these tests skip there with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugins import _libs

PLUGIN = _libs.library_filename(_libs.PLUGIN_LIBRARY)
REGISTER = _libs.library_filename(_libs.REGISTER_LIBRARY)
HARNESS = "sfadacof_plugin_harness"
NOT_BUILT = (f"{PLUGIN} not built: TensorRT headers were not found at configure time "
             "(python -m plugins.build --tensorrt-include DIR)")


def _complete(d: Path) -> bool:
    return all((d / f).is_file() for f in (PLUGIN, REGISTER, HARNESS))


def _builds() -> dict[int, Path]:
    """TensorRT major -> a build directory with plugin, register library and harness: the one the loaders use,
    then <repo>/build/trt* (the README's two-major layout)."""
    dirs = []
    lib = _libs.find_library(_libs.PLUGIN_LIBRARY)
    if lib is not None:
        dirs.append(lib.parent)
    dirs += sorted(_libs.DEFAULT_BUILD_DIR.glob("trt*"))
    found: dict[int, Path] = {}
    for d in dirs:
        if _complete(d):
            found.setdefault(_libs.plugin_tensorrt_version(d / PLUGIN)[0], d)
    return found


def _default_build() -> Path:
    """The loaders' plugin build, else the newest major among build/trt*."""
    lib = _libs.find_library(_libs.PLUGIN_LIBRARY)
    if lib is not None:
        if not _complete(lib.parent):
            pytest.skip(f"{lib.parent} lacks {REGISTER} or {HARNESS} (rebuild: python -m plugins.build ...)")
        return lib.parent
    builds = _builds()
    if not builds:
        pytest.skip(NOT_BUILT)
    return builds[max(builds)]


def _run(harness_dir: Path, plugin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(harness_dir / HARNESS), *args, str(plugin_dir / PLUGIN)], capture_output=True,
                          text=True, timeout=300)
    print(proc.stdout, proc.stderr, sep="\n")
    return proc


def test_plugin_methods_through_harness():
    d = _default_build()
    proc = _run(d, d, "--register-lib", str(d / REGISTER))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ", 0 failures" in proc.stdout
    assert "logging expected through the ILoggerFinder" in proc.stdout
    # The register library registered the creator exactly once (the harness checks name/version/namespace).
    assert "register library: 1 registration(s), 1 registry lookup(s)" in proc.stdout
    assert "[sfadacof plugin]" not in proc.stderr  # every message went to the harness's ILogger
    # fp16 offsets: refused by default (no weakly typed build can pick them), accepted on a node that opts in
    for k in ("K=5 dilation=1", "K=3 dilation=2"):
        block = proc.stdout.split(k, 1)[1]
        assert block.index("fp16 offsets: refused without fp16_offsets=1") < block.index(
            "fp16 offsets: accepted with fp16_offsets=1"), k
    assert "f16,f16,f16,f16,f16,f16,f16,f16,f16,f16" not in proc.stdout  # printed only if accepted by default


def test_register_library_keeps_an_already_registered_creator():
    d = _default_build()
    proc = _run(d, d, "--register-lib", str(d / REGISTER), "--preregistered")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "register library: 0 registration(s), 1 registry lookup(s) (creator already registered)" in proc.stdout


def test_runtime_of_another_major_gets_no_logger_calls_and_no_registration():
    """Same build, but the emulated runtime reports another major (and then no version at all)."""
    d = _default_build()
    major = _libs.plugin_tensorrt_version(d / PLUGIN)[0]
    for runtime, described in ((major + 1, f"is {major + 1}.x"), (-1, "is of an unknown version")):
        proc = _run(d, d, "--runtime-major", str(runtime), "--register-lib", str(d / REGISTER))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert ", 0 failures" in proc.stdout
        assert "register library: 0 registration(s), 0 registry lookup(s)" in proc.stdout
        assert f"the TensorRT runtime in this process {described}: plugin messages go to stderr" in proc.stderr
        # The errors the harness provokes are printed to stderr instead of reaching its ILogger.
        assert "invalid kernel_size=4, dilation=1" in proc.stderr


@pytest.mark.parametrize("direction", ["older harness, newer plugin", "newer harness, older plugin"])
def test_cross_major_harness_does_not_crash(direction):
    builds = _builds()
    if len(builds) < 2:
        pytest.skip(f"needs plugin builds of two TensorRT majors (found {sorted(builds) or 'none'}); "
                    "plugins/README.md, 'Two TensorRT majors', has the commands")
    old, new = min(builds), max(builds)
    harness_major, plugin_major = (old, new) if direction.startswith("older") else (new, old)
    proc = _run(builds[harness_major], builds[plugin_major], "--register-lib", str(builds[plugin_major] / REGISTER))
    # Before the version check the plugin called the harness's ILoggerFinder through the other major's vtable:
    # SIGSEGV (returncode -11) at the first logged message.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ", 0 failures" in proc.stdout
    assert f"the TensorRT runtime in this process is {harness_major}.x: plugin messages go to stderr" in proc.stderr
    assert "invalid kernel_size=4, dilation=1" in proc.stderr
    assert "register library: 0 registration(s), 0 registry lookup(s)" in proc.stdout


_REGISTER_INTO_FAKE = textwrap.dedent("""
    import ctypes, os, sys
    fakes = [ctypes.CDLL(p, mode=os.RTLD_LOCAL) for p in sys.argv[2:]]
    ctypes.CDLL(sys.argv[1])  # what polygraphy --plugins does
    for f in fakes:
        f.fake_nvinfer_registrations.restype = ctypes.c_char_p
        print(f.fake_nvinfer_registrations().decode() or "-")
""")


def _register_into(register_lib: Path, *fakes: Path) -> subprocess.CompletedProcess:
    # A subprocess: the fake runtime must not stay loaded in the test process.
    proc = subprocess.run([sys.executable, "-c", _REGISTER_INTO_FAKE, str(register_lib), *map(str, fakes)],
                          capture_output=True, text=True, timeout=120)
    print(proc.stdout, proc.stderr, sep="\n")
    assert proc.returncode == 0, proc.stderr
    return proc


def _fake_runtime(d: Path) -> Path:
    major = _libs.plugin_tensorrt_version(d / PLUGIN)[0]
    fake = d / "fake_nvinfer" / f"libnvinfer.so.{major}"
    if not fake.is_file():
        pytest.skip(f"{fake} not built")
    return fake


def test_register_library_finds_a_runtime_loaded_rtld_local():
    """`import tensorrt` loads libnvinfer RTLD_LOCAL, where dlsym(RTLD_DEFAULT) cannot see it: the register
    library must find it among the loaded objects and register exactly one creator into it."""
    d = _default_build()
    proc = _register_into(d / REGISTER, _fake_runtime(d))
    assert proc.stdout.split() == ["AdaCoFSynthesis/1/sfadacof/sfadacof"]
    assert proc.stderr == ""


def test_register_library_without_a_runtime_of_its_major_registers_nothing():
    d = _default_build()
    proc = _register_into(d / REGISTER)  # plain Python: no TensorRT at all
    assert "not registered: no TensorRT runtime (libnvinfer) of a single version is loaded" in proc.stderr
    builds = _builds()
    if len(builds) < 2:
        pytest.skip("the other-major case needs plugin builds of two TensorRT majors")
    old, new = min(builds), max(builds)
    proc = _register_into(builds[new] / REGISTER, _fake_runtime(builds[old]))
    assert proc.stdout.split() == ["-"]
    assert "has another major version than this library's headers" in proc.stderr
    # Runtimes of two majors in one process: the version is ambiguous, nothing is registered in either.
    proc = _register_into(builds[new] / REGISTER, _fake_runtime(builds[old]), _fake_runtime(builds[new]))
    assert proc.stdout.split() == ["-", "-"]


def _cache_value(build_dir: Path, key: str) -> str | None:
    for line in (build_dir / "CMakeCache.txt").read_text(errors="replace").splitlines():
        if line.startswith(key + ":"):
            return line.split("=", 1)[1]
    return None


def test_cmake_refuses_headers_of_another_major_than_python_tensorrt(tmp_path):
    d = _default_build()
    include = _cache_value(d, "SFADACOF_NVINFER_INCLUDE")
    if not include or not (Path(include) / "NvInferVersion.h").is_file():
        pytest.skip(f"no TensorRT include directory recorded in {d / 'CMakeCache.txt'}")
    if shutil.which("cmake") is None:
        pytest.skip("cmake not on PATH")
    major, minor, _ = _libs.plugin_tensorrt_version(d / PLUGIN)
    nvcc = _cache_value(d, "CMAKE_CUDA_COMPILER")

    def configure(py_version: str, name: str) -> subprocess.CompletedProcess:
        fake = tmp_path / name / "tensorrt"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text(f"__version__ = {py_version!r}\n")
        env = dict(os.environ, PYTHONPATH=str(fake.parent))
        cmd = ["cmake", "-S", str(_libs.REPO_ROOT), "-B", str(tmp_path / name / "build"),
               f"-DTensorRT_INCLUDE_DIR={include}", f"-DPython3_EXECUTABLE={sys.executable}",
               "-DCMAKE_CUDA_ARCHITECTURES=90"] + ([f"-DCMAKE_CUDA_COMPILER={nvcc}"] if nvcc else [])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    bad = configure(f"{major + 1}.0.0", "mismatch")
    assert bad.returncode != 0
    assert (f"TensorRT {major}.{minor} headers ({include}) do not match the installed Python tensorrt "
            f"{major + 1}.0.0") in " ".join(bad.stderr.split())
    good = configure(f"{major}.9.1", "match")
    assert good.returncode == 0, good.stderr
    assert f"Python tensorrt {major}.9.1 matches the headers' major {major}" in good.stdout
