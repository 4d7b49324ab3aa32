"""The CPU side of `python -m plugins.gpu_check` (the one-call GPU check of issue 13): its dry run, the report
schema it validates, the harness-output parsing on the real harness, the extraction of the authors' files, and --
where the git-ignored .authors/ copy exists -- that the authors' model class takes the project's checkpoint and
computes the same kernel maps as sfadacof on CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plugins import _libs, gpu_check

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_prints_plan_steps_and_validates_the_skeleton():
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--dry-run"], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "-m plugins.build --cuda-archs <device arch>" in out and "--no-tensorrt-python-check" in out
    assert "steps: build, harness, sanitizer, gpu_tests, kernel, end_to_end" in out
    assert "schema: skeleton valid" in out
    for key in ("harness_enqueue.passed", "kernel.gbs_1080p_fp16", "end_to_end.psnr_fp16_vs_fp32_db"):
        assert key in out


def test_schema_validation_catches_missing_keys_and_wrong_types():
    r = gpu_check.skeleton()
    assert gpu_check.validate(r, allow_null=False) == []
    assert r["harness_enqueue"]["passed"] is False and r["kernel"]["ms_1080p_fp16"] == 0.0
    del r["kernel"]["gbs_1080p_fp16"]
    assert gpu_check.validate(r) == ["missing key kernel.gbs_1080p_fp16"]
    r = gpu_check.skeleton()
    r["end_to_end"]["psnr_fp16_vs_fp32_db"] = "47"
    r["harness_enqueue"]["checks"] = True  # a bool is not a count
    problems = gpu_check.validate(r)
    assert "end_to_end.psnr_fp16_vs_fp32_db is str, expected float" in problems
    assert "harness_enqueue.checks is bool, expected int" in problems
    r = gpu_check.skeleton()
    r["kernel"]["ms_1080p_fp32"] = None  # a step that did not run leaves null: allowed, unless asked otherwise
    r["peak_bandwidth_gbs"] = 3352  # an int where a float is expected is fine
    assert gpu_check.validate(r) == []
    assert gpu_check.validate(r, allow_null=False) == ["kernel.ms_1080p_fp32 is null"]


def test_unknown_step_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--dry-run", "--steps", "bogus"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'bogus'" in proc.stderr


def test_without_a_gpu_it_says_so_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, "-m", "plugins.gpu_check", "--steps", "kernel"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "needs an NVIDIA GPU" in proc.stderr


def _harness_dir() -> Path | None:
    for d in [REPO / "build"] + sorted((REPO / "build").glob("trt*")):
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
    report: dict = {}
    status, details = gpu_check.step_harness(args, report)
    # The harness's own checks pass here, but enqueue is skipped without a device: the step must not pass.
    assert status == "failed" and details["rc"] == 0
    h = report["harness_enqueue"]
    assert h["passed"] is False and h["failures"] == 0 and h["checks"] > 50 and h["enqueue_runs"] == []


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
