"""runtime.batch under faults, on real Ray clusters and real processes: a bad source (a 0-byte .mp4) fails alone
while the good ones are processed; a full disk (a real tmpfs) is a failed write naming the output, exit 1 -- not a
lost worker; SIGTERM / SIGHUP to the driver end as Ctrl-C does (one line, exit 128 + N, no staging left); a SIGKILLed
driver takes its local cluster with it (runtime.ray_watchdog).

Ray takes 10-30 s to start on a 2-core machine: the cases that need no cluster of the driver's own share one that
this process starts (conftest.py's ray_cluster, shared with test_batch.py; the driver joins it with --ray-address); the signal cases need the driver's own local cluster and start one each.
All of those are slow; the planning and the worker's side of a fault are also run in-process, without Ray (fast)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is part of the batch extra")
psutil = pytest.importorskip("psutil", reason="psutil is part of the batch extra")

from tests.helpers import (assert_ended_by, reaped, seeded_checkpoint, signal_and_wait,  # noqa: E402
                           write_bikes_pair)

REPO = Path(__file__).resolve().parents[1]


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def pairs(root: Path, n: int, size: int = 64) -> Path:
    for i in range(n):
        write_bikes_pair(root / f"p{i:02d}", size, names=("a.png", "b.png"))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    return {"ckpt": seeded_checkpoint(d / "m.pth"), "root": d}


@pytest.fixture
def cluster(ray_cluster):
    """The local Ray cluster this run's Ray tests share (conftest.py's ray_cluster: started by this process, its
    workers our descendants), for the cases that need no driver-owned cluster."""
    return ray_cluster


def batch(*argv, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.batch", *map(str, argv)], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_zero_byte_video_fails_alone(tmp_path, data, cluster):
    """The README's promise: a bad unit fails alone. The pairs folder is processed in full; the 0-byte clip is one
    failed entry naming it; exit 1 (the run used to be refused as a whole, exit 2, nothing processed)."""
    good = pairs(tmp_path / "good", 3)
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    out = tmp_path / "out"
    r = batch(good, bad, "-o", out, "--ray-address", cluster, "--backend", "torch", "--checkpoint", data["ckpt"])
    assert r.returncode == 1, r.stderr[-3000:]
    assert sorted(p.name for p in (out / "good").iterdir()) == ["p00.png", "p01.png", "p02.png"]
    summary = json.loads((out / "batch_summary.json").read_text())
    failed = [u for u in summary["units"] if u["status"] != "done"]
    assert len(failed) == 1 and failed[0]["unit"] == "empty.mp4" and str(bad) in failed[0]["error"], failed
    assert "Traceback" not in r.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A real 160 KiB tmpfs (root only): writes on it fail with ENOSPC once it is full."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()[:100]})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_full_disk_is_a_failed_write_not_a_lost_worker(tmp_path, data, cluster, small_disk):
    """16 pairs of 128x128 (~40 KB each as PNG) onto 160 KiB: the units that cannot write fail with the output
    named and 'No space left on device'; none is a 'worker lost'; exit 1, one line per failure, no traceback."""
    src = pairs(tmp_path / "set", 16, size=128)
    out = small_disk / "out"
    r = batch(src, "-o", out, "--ray-address", cluster, "--backend", "torch", "--checkpoint", data["ckpt"],
              "--chunk-pairs", "2")
    assert r.returncode == 1, r.stderr[-3000:]
    assert "worker lost" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if "No space left on device" in ln]
    assert any(str(out / "set") in ln for ln in lines) and all(str(out) in ln for ln in lines), r.stderr[-3000:]
    # what was written is complete and no temp file stayed on the disk
    from PIL import Image

    for p in (out / "set").glob("*.png"):
        Image.open(p).load()
    assert not [p for p in out.rglob(".*")]


def descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_driver(tmp_path: Path, data) -> tuple[subprocess.Popen, Path]:
    src = pairs(tmp_path / "set", 24, size=128)
    clip_out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "runtime.batch", str(src), "-o", str(clip_out), "--workers", "2",
                          "--backend", "torch", "--checkpoint", str(data["ckpt"]), "--chunk-pairs", "1"],
                         cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not (clip_out / "set").is_dir() or not any((clip_out / "set").glob("*.png")):
        if p.poll() is not None:
            pytest.fail(f"driver ended before any unit was done: {p.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > 300:
            p.kill()
            pytest.fail("no unit done in 300 s")
        time.sleep(0.1)
    return p, clip_out


def reap(procs: list, timeout: float = 30.0) -> list:
    """Wait up to `timeout` s for `procs` to end; return those still running (then killed: ours to clean)."""
    def running(q) -> bool:
        try:  # a zombie has ended (its parent has not collected it yet)
            return q.is_running() and q.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    t0 = time.monotonic()
    alive = procs
    while alive and time.monotonic() - t0 < timeout:
        alive = [q for q in alive if running(q)]
        time.sleep(0.2)
    for q in alive:
        try:
            q.kill()
        except psutil.Error:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_to_the_driver_ends_like_ctrl_c(tmp_path, data, sig):
    p, out = start_driver(tmp_path, data)
    cluster = descendants(p.pid)
    try:
        code, lines = signal_and_wait(p, sig)
    finally:
        left = reap(cluster)  # waited for, and killed if still running: never left behind
    assert_ended_by(sig, code, lines)
    assert not [q for q in out.rglob(".*")]  # no staging, no temp file
    assert left == [], [q.pid for q in left]


@pytest.mark.slow
def test_sigkill_of_the_driver_takes_its_cluster_down(tmp_path, data):
    """No handler runs in a SIGKILLed driver: its local cluster (gcs_server, raylet, agents, workers) must still end
    within 30 s (the agents and workers used to run on for good)."""
    p, out = start_driver(tmp_path, data)
    with reaped(p):
        time.sleep(1.0)  # past the watchdog's first look at the process tree
        cluster = descendants(p.pid)
        assert any("raylet" in " ".join(q.cmdline()) for q in cluster)
        signal_and_wait(p, signal.SIGKILL)
    left = reap(cluster)
    assert left == [], [q.pid for q in left]


@pytest.mark.slow
def test_a_users_file_named_like_a_clip_output_fails_alone(tmp_path, data, cluster):
    """OUT/clip.mp4 that this project did not encode (a user's valid mp4, no sfadacof mark) is neither taken for a
    finished output nor replaced: that unit fails in one line naming the file, the pairs folder is processed, exit 1.
    Our own encode (marked) is then resumed over: a third run skips it, byte for byte."""
    from sfadacof.outputs import video_is_ours
    from tests.helpers import bikes_frames, crop, write_video

    good = pairs(tmp_path / "good", 2)
    frames = [crop(f, 64, 64) for f in bikes_frames(4, 40)]
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    clip = write_video(tmp_path / "in" / "clip.mp4", frames)
    out = tmp_path / "out"
    users = write_video(out / "clip.mp4", frames[::-1])
    before = users.read_bytes()
    argv = [good, clip, "-o", out, "--ray-address", cluster, "--backend", "torch", "--checkpoint", data["ckpt"]]
    r = batch(*argv)
    assert r.returncode == 1, r.stderr[-3000:]
    assert users.read_bytes() == before and not video_is_ours(users)
    assert sorted(p.name for p in (out / "good").iterdir()) == ["p00.png", "p01.png"]
    lines = [line for line in r.stderr.splitlines() if line.startswith("failed: ")]
    assert len(lines) == 1 and lines[0].startswith(f"failed: clip.mp4: {users}: "), r.stderr[-3000:]
    assert "Traceback" not in r.stderr

    users.unlink()  # moved away: now the clip is encoded, marked as ours
    r = batch(*argv)
    assert r.returncode == 0 and video_is_ours(out / "clip.mp4"), r.stderr[-3000:]
    ours = (out / "clip.mp4").read_bytes()
    r = batch(*argv)
    assert r.returncode == 0 and "3 output(s) already complete" in r.stderr, r.stderr[-3000:]
    assert (out / "clip.mp4").read_bytes() == ours
    assert json.loads((out / "batch_summary.json").read_text())["units"] == []


# -- in-process, without Ray: the driver's plan and the worker's unit --------------------------------------------------

def test_planning_a_zero_byte_video_fails_it_alone(tmp_path):
    """runtime.batch.plan: the 0-byte clip is one failed entry naming it; the pairs folder beside it is cut into its
    units all the same (3 pairs in chunks of 2: 2 + 1)."""
    from runtime.batch import plan

    good = pairs(tmp_path / "good", 3)
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    job = plan([good, bad], tmp_path / "out", chunk_pairs=2, chunk_frames=4, factor=2)
    assert [u.names for u in job.units] == [("p00", "p01"), ("p02",)]
    assert len(job.failed) == 1 and job.failed[0]["unit"] == "empty.mp4" and str(bad) in job.failed[0]["error"]


def test_a_unit_onto_a_full_disk_is_a_failed_write(tmp_path, ckpt, small_disk, single_torch_thread):
    """run_unit, the worker's side: a chunk of 2 pairs onto a full disk returns a failed result that names the output
    and says 'No space left on device' (a result, not an exception: Ray would take it for a lost worker), and leaves
    no temp file behind."""
    from runtime.backends.registry import BackendOptions
    from runtime.batch import plan, run_unit

    src = pairs(tmp_path / "set", 2)
    with open(small_disk / "filler", "wb", buffering=0) as f:  # fill the disk to its last block
        try:
            while True:
                f.write(bytes(4096))
        except OSError:
            pass
    out = small_disk / "out"
    (unit,) = plan([src], out, chunk_pairs=2, chunk_frames=4, factor=2).units
    result = run_unit(unit, "torch", BackendOptions(checkpoint=ckpt), 2, None, None)
    assert result["status"] == "failed", result
    assert result["error"].startswith("cannot write: ") and str(out / "set") in result["error"], result
    assert "No space left on device" in result["error"], result
    assert not [p for p in out.rglob("*") if p.is_file()]  # neither a PNG cut short nor a temp file


def test_the_watchdog_ends_what_a_sigkilled_driver_started(tmp_path):
    """runtime.ray_watchdog without Ray: a driver process starts the watchdog, then a child of its own (a `sleep`
    standing in for Ray's agents, which outlive a SIGKILLed driver), and is SIGKILLed; the watchdog, seeing the
    driver's pipe close, kills the child it recorded -- gone within seconds, not after its 60 s."""
    code = ("import subprocess, sys, time\n"
            "from runtime.ray_watchdog import watch_local_cluster\n"
            "watch_local_cluster()\n"
            "c = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL)\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(60)\n")
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    with reaped(driver):
        child = psutil.Process(int(driver.stdout.readline()))
        try:
            time.sleep(1.5)  # past the watchdog's first looks at the driver's descendants (every 0.5 s)
            signal_and_wait(driver, signal.SIGKILL)
            gone, _ = psutil.wait_procs([child], timeout=10)
            assert gone == [child], "the driver's child outlived it"
        finally:
            if child.is_running():
                child.kill()  # ours (a `sleep` this test started): never left behind
