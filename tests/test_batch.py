"""runtime.batch on a real local Ray cluster: two pair folders and a short clip with --workers 2 give exactly what
runtime.infer gives (same backend: torch, deterministic on one thread per worker); a worker process killed with
SIGKILL mid-run loses nothing; a bad unit fails alone; a re-run resumes. Ray takes 10-30 s to start here, so the
cases share runs where they can, and one local cluster that this process starts (conftest.py's ray_cluster, shared
with test_batch_faults.py; the driver joins it with --ray-address); they are slow. runtime.infer's reference outputs are made in-process (its main(argv)). The driver's cut into units and the worker's side of a unit are also run
in-process, without Ray (fast).

Video frames are compared losslessly (--video-output frames against runtime.infer's PNG frames): H.264 through
PyAV here does not reproduce its own output (the same frames encoded twice by runtime.infer itself decode up to ~18
levels apart, seen while writing these tests), so an .mp4 is checked for what must hold exactly -- frame count,
every timestamp, the audio stream -- and its frames only against that encoder's own run-to-run spread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray", reason="Ray is part of the dev extra")

from tests.helpers import bikes_frames, crop, run_main, seeded_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _pairs(root: Path, n: int, offset: int) -> Path:
    frames = bikes_frames(n + 2, 40)
    for i in range(n):
        d = root / f"p{i:02d}"
        d.mkdir(parents=True)
        Image.fromarray(crop(frames[i], 96, 64, x=300 + 7 * offset)).save(d / "a.png")
        Image.fromarray(crop(frames[i + 2], 96, 64, x=300 + 7 * offset)).save(d / "b.png")
    return root


def _clip(path: Path, frames: int = 9) -> Path:
    """A short H.264 clip with an AAC audio track (real footage, cropped)."""
    import av

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        for i, f in enumerate(bikes_frames(frames, 40)):
            for p in v.encode(av.VideoFrame.from_ndarray(crop(f, 96, 64), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        samples = np.sin(np.linspace(0, 440 * 2 * np.pi * frames / 25, int(16000 * frames / 25))).astype(np.float32)
        for start in range(0, len(samples), 1024):
            fr = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
            fr.sample_rate = 16000
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def _run(*argv: str, timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


def _png(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p).convert("RGB"), dtype=np.int16)


def _video(p: Path) -> tuple[list[np.ndarray], list[float], int]:
    import av

    with av.open(str(p)) as c:
        vs = c.streams.video[0]
        frames, times = [], []
        for fr in c.decode(vs):
            frames.append(fr.to_ndarray(format="rgb24").astype(np.int16))
            times.append(float(fr.pts * vs.time_base))
        audio = len(c.streams.audio)
    return frames, times, audio


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    ckpt = seeded_checkpoint(d / "m.pth")
    a, b = _pairs(d / "setA", 6, 0), _pairs(d / "setB", 5, 3)
    clip = _clip(d / "clip.mp4")
    ref = d / "ref"
    for src in (a, b):
        code, err = run_main("runtime.infer", src, "-o", ref / src.name, "--backend", "torch", "--checkpoint", ckpt)
        assert code == 0, err
    for dst in ("clip.mp4", "clip"):  # the video, and its frames losslessly
        code, err = run_main("runtime.infer", clip, "-o", ref / dst, "--backend", "torch", "--checkpoint", ckpt,
                             "--factor", "2")
        assert code == 0, err
    return {"dir": d, "ckpt": ckpt, "a": a, "b": b, "clip": clip, "ref": ref}


@pytest.fixture
def cluster(ray_cluster):
    """The local Ray cluster this run's Ray tests share (conftest.py's ray_cluster: started by this process, its
    workers our descendants), for the cases that need no driver-owned cluster."""
    return ray_cluster


def _assert_same(out: Path, data, video: str) -> None:
    for src in (data["a"], data["b"]):
        names = sorted(p.name for p in (data["ref"] / src.name).iterdir())
        assert sorted(p.name for p in (out / src.name).iterdir()) == names
        for n in names:
            diff = np.abs(_png(out / src.name / n) - _png(data["ref"] / src.name / n)).max()
            assert diff <= 1, (src.name, n, diff)
    if video == "frames":
        names = sorted(p.name for p in (data["ref"] / "clip").iterdir())
        assert len(names) == 18 and sorted(p.name for p in (out / "clip").iterdir()) == names
        assert max(int(np.abs(_png(out / "clip" / n) - _png(data["ref"] / "clip" / n)).max()) for n in names) <= 1
    else:
        got, ref = _video(out / "clip.mp4"), _video(data["ref"] / "clip.mp4")
        assert len(got[0]) == len(ref[0]) == 18 and got[1] == ref[1] and got[2] == ref[2] == 1
        assert max(int(np.abs(g - r).mean()) for g, r in zip(got[0], ref[0])) <= 3  # lossy: mean per frame


@pytest.mark.slow
def test_batch_equals_infer_and_resumes(data, cluster, tmp_path):
    out = tmp_path / "out"
    argv = ["-m", "runtime.batch", str(data["a"]), str(data["b"]), str(data["clip"]), "-o", str(out),
            "--workers", "2", "--backend", "torch", "--checkpoint", str(data["ckpt"]), "--chunk-pairs", "2",
            "--chunk-frames", "3", "--video-output", "frames", "--ray-address", cluster]
    r = _run(*argv)
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_same(out, data, "frames")
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["failed"] == 0 and len(summary["units"]) == 3 + 3 + 3  # pairs 3+3, clip spans 3
    assert [v["video"] for v in summary["videos"]] == ["clip.mp4"]  # its assembly, counted apart
    # one count of units everywhere: the progress lines' total, the closing line (issue 27)
    assert "computing: finished 9 units" in r.stderr and "9/9 unit(s) done, 1/1 video(s) assembled" in r.stdout, \
        r.stdout + r.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left
    # resume: everything is complete, nothing is recomputed
    r = _run(*argv)
    assert r.returncode == 0 and "12 output(s) already complete" in r.stderr + r.stdout, r.stderr
    assert json.loads((out / "batch_summary.json").read_text())["units"] == []


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether process `pid` is `ancestor` or one of its descendants (parent links in /proc)."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


@pytest.mark.slow
def test_worker_killed_mid_run_loses_nothing(data, cluster, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "runtime.batch", str(data["a"]), str(data["b"]), str(data["clip"]),
                             "-o", str(out), "--workers", "2", "--backend", "torch", "--checkpoint",
                             str(data["ckpt"]), "--chunk-pairs", "1", "--chunk-frames", "2", "--ray-address",
                             cluster], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and proc.poll() is None:
        # a Ray worker shows its running task in its process title; only a worker of the cluster this module
        # started (a descendant of this process) is killed, never another run's
        ps = [int(x) for x in subprocess.run(["pgrep", "-f", "ray::run_unit"], capture_output=True,
                                             text=True).stdout.split()]
        ps = [p for p in ps if _descends_from(p, os.getpid())]
        if ps:
            killed = ps[0]
            os.kill(killed, signal.SIGKILL)
        else:
            time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=900)
    assert killed is not None, "never saw a Ray worker running a unit"
    assert proc.returncode == 0, stdout + stderr
    _assert_same(out, data, "mp4")


@pytest.mark.slow
def test_bad_unit_fails_alone(data, cluster, tmp_path):
    bad = tmp_path / "bad"
    _pairs(bad, 2, 1)
    (bad / "p01" / "b.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = _run("-m", "runtime.batch", str(data["a"]), str(bad), "-o", str(out), "--workers", "2", "--backend",
             "torch", "--checkpoint", str(data["ckpt"]), "--chunk-pairs", "1", "--ray-address", cluster)
    assert r.returncode == 1, r.stderr
    summary = json.loads((out / "batch_summary.json").read_text())
    failed = [u for u in summary["units"] if u["status"] != "done"]
    assert len(failed) == 1 and "b.png" in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert sorted(p.name for p in (out / "setA").iterdir()) == sorted(p.name for p in (data["ref"] / "setA").iterdir())
    assert (out / "bad" / "p00.png").is_file() and not (out / "bad" / "p01.png").exists()


# -- in-process, without Ray: the driver's plan and the worker's unit --------------------------------------------------

def test_plan_cuts_sources_into_units_and_resumes(tmp_path, ckpt, single_torch_thread):
    """runtime.batch.plan cuts a folder of 5 pairs (chunks of 2) into units of 2, 2, 1 pairs in order, and a 9-frame
    clip (spans of 3 input frames, --factor 4) into spans [0, 3) [3, 6) [6, 8) that make 3 frames per gap: 8 gaps x 3
    = 24 in all. run_unit, the worker's side, writes its pairs' frames (the PyTorch model's, within one level); a
    re-plan skips them and cuts only the rest."""
    import torch

    from runtime.backends.registry import BackendOptions
    from runtime.batch import plan, run_unit
    from sfadacof.checkpoint import load_checkpoint

    src, clip, out = _pairs(tmp_path / "set", 5, 0), _clip(tmp_path / "clip.mp4"), tmp_path / "out"
    job = plan([src, clip], out, chunk_pairs=2, chunk_frames=3, factor=4)
    assert [u.names for u in job.units if u.kind == "pairs"] == [("p00", "p01"), ("p02", "p03"), ("p04",)]
    spans = [(u.start, u.stop, u.frames) for u in job.units if u.kind == "video"]
    assert spans == [(0, 3, 9), (3, 6, 9), (6, 8, 6)] and sum(f for *_, f in spans) == 8 * 3
    assert job.failed == [] and job.skipped == []

    result = run_unit(job.units[0], "torch", BackendOptions(checkpoint=ckpt), 2, None, None)
    assert result["status"] == "done" and result["frames"] == 2, result
    model = load_checkpoint(ckpt).model.eval()
    for name in ("p00", "p01"):
        f0, f2 = (torch.from_numpy(_png(src / name / f)[None].transpose(0, 3, 1, 2).astype(np.float32) / 255)
                  for f in ("a.png", "b.png"))
        with torch.no_grad():
            want = (model(f0, f2)[0].permute(1, 2, 0).numpy().clip(0, 1) * 255).round()
        assert np.abs(_png(out / "set" / f"{name}.png") - want).max() <= 1, name

    again = plan([src, clip], out, chunk_pairs=2, chunk_frames=3, factor=4)
    assert sorted(Path(p).name for p in again.skipped) == ["p00.png", "p01.png"]
    assert [u.names for u in again.units if u.kind == "pairs"] == [("p02", "p03"), ("p04",)]


def test_a_bad_pair_fails_its_unit_alone_in_the_worker(tmp_path, ckpt, single_torch_thread):
    """run_unit on a chunk holding a pair whose PNG is not a PNG: a failed result naming the file, in one line (not
    an exception that Ray would take for a lost worker and retry); a chunk of good pairs runs."""
    from runtime.backends.registry import BackendOptions
    from runtime.batch import plan, run_unit

    bad = _pairs(tmp_path / "bad", 2, 1)
    (bad / "p01" / "b.png").write_bytes(b"not a png")
    job = plan([bad], tmp_path / "out", chunk_pairs=1, chunk_frames=3, factor=2)
    good, broken = (run_unit(u, "torch", BackendOptions(checkpoint=ckpt), 2, None, None) for u in job.units)
    assert good["status"] == "done" and (tmp_path / "out" / "bad" / "p00.png").is_file()
    assert broken["status"] == "failed" and "b.png" in broken["error"] and "\n" not in broken["error"], broken
    assert not (tmp_path / "out" / "bad" / "p01.png").exists()
