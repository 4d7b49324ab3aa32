"""Shared test configuration: GPU/TensorRT markers skip with a reason where the hardware or library is absent."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
# The model contract (docs/MODEL.md) and the released checkpoints' layouts (docs/checkpoints/*.json, test data) are
# the project's own files; SFADACOF_SPEC_DIR points at another copy if needed.
SPEC_DIR = Path(os.environ.get("SFADACOF_SPEC_DIR", REPO_ROOT / "docs"))


def shared_root(tmp_path_factory) -> Path:
    """The run's temp folder that every pytest-xdist worker sees: each worker's basetemp is `<run's>/popen-gwN`, so
    its parent (without xdist: the basetemp itself). What the whole run shares lives here, made once under
    `run_once`."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def run_once(tmp_path_factory, name: str):
    """A file lock over the run's shared folder: the first worker to take it builds `name`, the others wait and then
    find it built (they never build it again, nor read it half-written)."""
    from filelock import FileLock

    with FileLock(str(shared_root(tmp_path_factory) / f"{name}.lock")):
        yield


@pytest.fixture(scope="session", autouse=True)
def hermetic_cache(tmp_path_factory):
    """Every test run exports into its own cache folder (SFADACOF_CACHE, inherited by the subprocesses the tests
    start), never the user's ~/.cache/sfadacof or a folder SFADACOF_CACHE already names: a stale or altered entry
    there cannot leak into a result, and nothing the tests export is left behind. One folder for the whole run, shared
    by the xdist workers (export.cache writes entries atomically; the session fixtures below export under a lock, so
    one export each per run). Session-scoped and autouse, so it is set up before any other fixture (the first read of
    the cache is in a fixture or a test, never at import)."""
    root = shared_root(tmp_path_factory) / "sfadacof-cache"
    root.mkdir(exist_ok=True)
    saved = os.environ.get("SFADACOF_CACHE")
    os.environ["SFADACOF_CACHE"] = str(root)
    yield root
    if saved is None:
        os.environ.pop("SFADACOF_CACHE", None)
    else:
        os.environ["SFADACOF_CACHE"] = saved


_saved_xdg: list[str | None] = []  # the controller's XDG_CACHE_HOME before the run (None: unset), put back after it


def _user_cache_away(config) -> None:
    """The run's XDG_CACHE_HOME (the user-cache root that libraries follow, ~/.cache by default) is a folder of the
    run's temp dir: ONNX Runtime (1.2x+) keeps a telemetry database and a device id in
    $XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime/ (else ~/.cache/...) on every session it creates; other
    libraries that follow XDG do the same -- tests never write ~/.cache. Set by the controller in pytest_configure,
    before any test, any xdist worker (which inherits it) or any command a test starts; put back at the end."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # a worker: inherited from the controller
    factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmp_path_factory, made in its own configure
    if factory is not None:
        root = factory.getbasetemp() / "xdg-cache"
        root.mkdir(exist_ok=True)
    else:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="sfadacof-tests-xdg-cache-"))
    _saved_xdg.append(os.environ.get("XDG_CACHE_HOME"))
    os.environ["XDG_CACHE_HOME"] = str(root)


def pytest_unconfigure(config):
    if _saved_xdg:
        saved = _saved_xdg.pop()
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


@pytest.hookimpl(trylast=True)  # after pytest's tmpdir plugin has made tmp_path_factory
def pytest_configure(config):
    """The user's cache out of reach (_user_cache_away). Under pytest-xdist, each worker gets its share of the cores
    (2 workers on 2 cores: one thread each), for torch here and, through OMP_NUM_THREADS, for the commands the tests
    start: two workers of two spinning OpenMP threads each on two cores run several times slower than one thread
    each."""
    _user_cache_away(config)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


def _gpu_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
    return None


def _tensorrt_reason() -> str | None:
    """TensorRT tests need TensorRT, pycuda and a GPU that pycuda sees (torch need not have CUDA)."""
    from runtime.tensorrt_env import tensorrt_available

    return tensorrt_available()


# Fixtures that export with the default (dynamo) exporter, 20-50 s each on 2 cores: a test that uses one is slow.
SLOW_FIXTURES = {"ckpt_exports", "exported", "shipped_exports"}

# Tests measured over ~2.5 s of CPU in the fast lane (`-m "not slow"` under `-n 2`, per-test CPU time of the worker
# and its children, 2-core Xeon, 2026-12-05) in files whose authors had not marked them yet: slow here, so that the
# fast lane keeps its 90 s. A new slow test is marked where it is written (tests/README.md, "The fast lane"); an
# entry here whose test is renamed or marked at home is simply unused.
MEASURED_SLOW = {
    "test_openvino_backend.py": {"test_bf16_offsets_are_computed_in_fp32",
                                 "test_auto_picks_openvino_on_this_machine_and_says_why",
                                 "test_kernel_and_gather_synthesis_equal_the_export_lowering_with_large_offsets",
                                 "test_compiled_models_are_cached_per_shape", "test_bf16_accuracy_and_fp32_offsets",
                                 "test_fp32_matches_pytorch_on_real_frames",
                                 "test_fp32_batch_equals_onnx_runtime_on_the_same_graph",
                                 "test_bf16_refuses_a_model_whose_offset_heads_would_run_in_bf16"},
    "test_cpu_info.py": {"test_avx2_cap_takes_in_openvino_and_cpu_info_follows"},
    "test_cpu_choice.py": {"test_changed_key_measures_again", "test_corrupt_or_foreign_entry_measures_again",
                           "test_choice_is_the_rule_on_the_recorded_figures"},
    "test_train.py": {"test_resume_after_kill_continues_the_same_loss_curve",
                      "test_a_few_steps_reduce_the_loss_on_a_real_crop"},
    "test_tensorrt_contract.py": {"test_concurrent_runs_build_once"},
    "test_parity.py": {"test_parity_passes_and_files_are_polygraphy_loadable",
                       "test_parity_detects_floor_instead_of_truncation",
                       "test_plain_polygraphy_cannot_load_the_custom_op"},
    "test_reliability.py": {"test_corrupt_export_cache_rebuilt"},
    "test_ort_backend.py": {"test_onnx_for_checkpoint_exports_once_then_reuses",
                            "test_also_caches_the_other_form_from_the_same_trace"},
}


# Under `-n N --dist loadgroup` (README's test command), the tests of one xdist_group run on one worker, one after
# another: the tests of a module that defines a module-scoped fixture (an export, a model, a Ray cluster: seconds to
# build) are one group, so that the fixture is built once per run rather than once per worker; runtime.batch's two
# files are one group, so that two local Ray clusters (each sized for all the cores, started by the tests and by the
# commands they run) never run at once. Every other test goes to whichever worker is free. xdist sends the groups
# first (the largest first), then the single tests, which even out the workers' ends.
SHARED_GROUPS = {"test_batch.py": "ray", "test_batch_faults.py": "ray"}


def _xdist_group(item) -> str | None:
    name = item.path.name
    if name in SHARED_GROUPS:
        return SHARED_GROUPS[name]
    info = getattr(item, "_fixtureinfo", None)
    module = getattr(getattr(item, "module", None), "__name__", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        if any(d.scope in ("module", "package") and getattr(d.func, "__module__", None) == module for d in defs):
            return name
    return None


def _group_suffix(config, item) -> None:
    """What pytest-xdist 3.8 does for --dist loadgroup, done where it no longer works: it appends `@group` to the
    nodeid the worker reports (the scheduler groups by that suffix) by setting `item._nodeid`, which pytest 9 no
    longer reads (its nodeid comes from `item._id`, a NodeId); without the suffix every test of a group was sent
    wherever, and two workers started two Ray clusters at once. Set on `_id` here, where it is read."""
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest < 9: xdist's own suffix works
        return
    marks = [m.args[0] if m.args else m.kwargs.get("name", "default") for m in item.iter_markers("xdist_group")]
    if getattr(config.option, "loadgroup", False) and marks and "@" not in item.nodeid.rsplit("]", 1)[-1]:
        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(set(map(str, marks))))}")


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or \
                getattr(item, "originalname", item.name) in MEASURED_SLOW.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
        group = _xdist_group(item)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
        _group_suffix(config, item)
    gpu_reason = _gpu_reason()
    trt_reason = None
    for item in items:
        if "tensorrt" in item.keywords:
            trt_reason = trt_reason or _tensorrt_reason() or ""
            if trt_reason:
                item.add_marker(pytest.mark.skip(reason=trt_reason))
        elif "gpu" in item.keywords and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    if not (SPEC_DIR / "MODEL.md").is_file():
        pytest.fail(f"the model contract is missing: {SPEC_DIR}/MODEL.md (set SFADACOF_SPEC_DIR)")
    return SPEC_DIR


@pytest.fixture
def single_torch_thread():
    """One intra-op thread (test modules opt in with pytestmark): on a shared 2-core CI box two spinning threads per
    process oversubscribe the CPU and run ~20x slower (measured 1.1-4 s vs 0.065 s for a 64x64 forward at load 3.4)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def cpu_op(tmp_path_factory):
    """plugins.cpu_op with the C++ CPU kernel loaded (its ABI checked): the library found, or built here into a
    temporary folder (a few seconds) -- never a skip: a missing, unloadable or mismatched library fails the test."""
    import shutil

    from plugins import _libs
    from plugins import cpu_op as mod
    from tests.helpers import ensure_built

    if _libs.find_library(_libs.CPU_LIBRARY) is None and shutil.which("cmake") is None:
        pytest.fail("libsfadacof_cpu is not built and cmake is not on PATH: run `python -m plugins.build`")
    scratch = shared_root(tmp_path_factory) / "sfadacof-build"
    with run_once(tmp_path_factory, "sfadacof-build"):  # one build per run, whichever worker asks first
        if (scratch / _libs.library_filename(_libs.CPU_LIBRARY)).is_file():
            os.environ["SFADACOF_PLUGIN_DIR"] = str(scratch.resolve())  # another worker built it
        scratch.mkdir(exist_ok=True)
        ensure_built([_libs.CPU_LIBRARY], scratch)
    mod.library_path()  # loads it, checks the ABI version
    return mod


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A seeded random checkpoint (tests.helpers.seeded_model), one per run, shared by the xdist workers (read only:
    its exports are shared)."""
    from tests.helpers import seeded_checkpoint

    path = shared_root(tmp_path_factory) / "ckpt" / "m.pth"
    with run_once(tmp_path_factory, "ckpt"):
        if not path.is_file():
            path.parent.mkdir(exist_ok=True)
            seeded_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def ckpt_exports(ckpt, hermetic_cache, tmp_path_factory):
    """`ckpt` exported by the default exporter (the one users get), in both forms, once per session into the session
    cache (export.cache.onnx_for_checkpoint, keyed by checkpoint and options): every runtime command of the session
    that runs `--checkpoint ckpt` on ORT or OpenVINO finds it there instead of exporting again (20-50 s each).
    {"default": the runtime's form (plugin where the C++ kernel is built), "onnx": the standard-op form}, both from
    one trace (`also`). Read only."""
    from export.cache import onnx_for_checkpoint

    with run_once(tmp_path_factory, "ckpt_exports"):  # the second worker finds both in the shared cache
        return {"default": onnx_for_checkpoint(ckpt, also=("onnx",)),
                "onnx": onnx_for_checkpoint(ckpt, synthesis="onnx")}


@pytest.fixture(scope="session")
def shipped_exports(hermetic_cache, tmp_path_factory):
    """The shipped weights exported by the default exporter, both forms from one trace, once per run into the run's
    cache: the commands of the session that run the shipped weights on ORT or OpenVINO without --onnx find them there
    (test_large_frames' memory figures must not count an export). {"plugin": ..., "onnx": ...}. Read only."""
    from export.cache import onnx_for_checkpoint

    with run_once(tmp_path_factory, "shipped_exports"):
        return {"plugin": onnx_for_checkpoint(None, synthesis="plugin", also=("onnx",)),
                "onnx": onnx_for_checkpoint(None, synthesis="onnx")}


# One local Ray cluster for every test that asks for `ray_cluster` (test_batch.py, test_batch_faults.py: one xdist
# group, so one worker, one test after another): started by the first such test, stopped after the last one in
# collection order (pytest_runtest_teardown below), or at the session's end. Each module used to start its own, and
# Ray's start costs ~7 s here (3.5 s of it CPU: the rest is waiting) and its stop ~1.4 s.
_ray: list = []  # [(the local_ray_cluster context, its address)] while one is up


@pytest.fixture
def ray_cluster() -> str:
    """The shared local Ray cluster's address, for `runtime.batch --ray-address` (started by this process: its
    workers are this process's descendants, never another run's)."""
    if not _ray:
        from tests.helpers import local_ray_cluster

        context = local_ray_cluster()
        _ray.append((context, context.__enter__()))
    return _ray[0][1]


def _stop_ray_cluster() -> None:
    if _ray:
        _ray.pop()[0].__exit__(None, None, None)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if not _ray:
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else []
    if not any("ray_cluster" in getattr(i, "fixturenames", ()) for i in later):
        _stop_ray_cluster()


def pytest_sessionfinish(session):
    _stop_ray_cluster()
