"""SIGTERM and SIGHUP end a run as Ctrl-C does (one line, exit 128 + N, no temp file or staging folder left), at
the moments tests/test_interrupt.py covers for SIGINT; a SIGKILLed run's leftovers are removed by the next run and
never taken for outputs. Real `python -m ...` processes, real signals (runtime.batch's driver: test_batch_faults)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import assert_ended_by, reaped, signal_and_wait
from tests.test_interrupt import cpu_seconds, env_with, hidden_or_temp, write_pairs, write_sequence

REPO = Path(__file__).resolve().parent.parent
# Every case but the in-process clean_stale ones starts a real `python -m` process (2-4 s of imports): slow
# (tests/README.md, "The fast lane").
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGHUP, id="SIGHUP")]


@pytest.fixture
def cache(ckpt_exports):
    """The run's export cache (conftest.py), holding the plugin-form graph of `ckpt` (for the ort backend)."""
    return Path(os.environ["SFADACOF_CACHE"])


def start(argv: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_until(p: subprocess.Popen, ready, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while not ready(p):
        if p.poll() is not None:
            pytest.fail(f"finished before the signal point (exit {p.returncode}): {p.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            p.kill()
            pytest.fail("signal point never reached")
        time.sleep(0.02)


def signal_when(argv: list, ready, env: dict, sig: int, extra_delay: float = 0.0) -> tuple[int, list[str]]:
    """Start `python -m argv`, send `sig` once ready(process); return (exit status, stderr lines)."""
    with reaped(start(argv, env)) as p:
        wait_until(p, ready)
        time.sleep(extra_delay)
        return signal_and_wait(p, sig)


@pytest.mark.slow
@pytest.mark.parametrize("target, sig", [("out.mp4", signal.SIGTERM), ("frames", signal.SIGHUP)],
                         ids=["out.mp4-SIGTERM", "frames-SIGHUP"])
def test_signal_mid_video_encode(tmp_path, ckpt, sig, target):
    """Mid-encode: the hidden temp video (or the frames' staging folder) exists when the signal arrives; afterwards
    the output's folder is empty (both used to stay: the process died at once). Each target with one of the two
    signals (one handler, sfadacof.interrupts, raises the same Terminated for both; the held-block and exit-window
    tests of test_interrupt.py take every signal), and Ctrl-C with both targets in test_interrupt.py: every signal
    and every target mid-encode, without the two other pairs that repeated the same path."""
    src, out = write_sequence(tmp_path / "seq", 24), tmp_path / "o" / target
    out.parent.mkdir()
    code, err = signal_when(["runtime.infer", src, "-o", out, "--checkpoint", ckpt, "--backend", "torch",
                             "--factor", "8"], lambda p: any(out.parent.glob(".*")), env_with(tmp_path / "c"), sig,
                            extra_delay=0.5)
    assert_ended_by(sig, code, err)
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_first_export(tmp_path, ckpt, sig):
    """The ort backend exports the checkpoint into an empty cache: the signal arrives mid-export; the cache holds no
    half-written graph and no temp file."""
    pairs, out, cache_root = write_pairs(tmp_path / "pairs", 1, 64), tmp_path / "out", tmp_path / "cache"
    code, err = signal_when(["runtime.infer", pairs, "-o", out, "--checkpoint", ckpt, "--backend", "ort"],
                            lambda p: (cache_root / "onnx").is_dir(), env_with(cache_root), sig, extra_delay=0.5)
    assert_ended_by(sig, code, err)
    assert not list((cache_root / "onnx").iterdir())
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.slow
def test_sigterm_during_to_onnx(tmp_path, ckpt):
    """export.to_onnx mid-trace: 2.3 s of CPU time is past the imports and checkpoint (~1.3 s on one thread),
    inside the default TorchScript exporter's trace (until ~3.3 s)."""
    out = tmp_path / "m.onnx"
    code, err = signal_when(["export.to_onnx", ckpt, "-o", out], lambda p: cpu_seconds(p.pid) > 2.3,
                            env_with(tmp_path / "cache"), signal.SIGTERM)
    assert_ended_by(signal.SIGTERM, code, err)
    assert list(tmp_path.glob("*.onnx")) == [] and hidden_or_temp(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_mid_pairs_in_the_custom_op(tmp_path, ckpt, cache, sig):
    """ort runs the custom node's Python callback from C++: the signal is held until the call returns (as SIGINT
    is), never raised inside it (that aborts: SIGABRT)."""
    pairs, out = write_pairs(tmp_path / "pairs", 40, 128), tmp_path / "out"
    code, err = signal_when(["runtime.infer", pairs, "-o", out, "--checkpoint", ckpt, "--backend", "ort"],
                            lambda p: out.is_dir() and any(out.glob("*.png")), env_with(cache), sig)
    assert_ended_by(sig, code, err)
    assert hidden_or_temp(out) == []


@pytest.mark.slow
def test_sighup_ignored_by_nohup_stays_ignored(tmp_path, ckpt):
    """A run started under nohup (SIGHUP ignored) keeps running through a hang-up and completes."""
    src, out = write_sequence(tmp_path / "seq", 4), tmp_path / "frames"
    p = subprocess.Popen([sys.executable, "-m", "runtime.infer", str(src), "-o", str(out), "--checkpoint", str(ckpt),
                          "--backend", "torch"], cwd=REPO, env=env_with(tmp_path / "c"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    with reaped(p):
        wait_until(p, lambda p: cpu_seconds(p.pid) > 1.5)
        code, err = signal_and_wait(p, signal.SIGHUP, timeout=300)
    assert code == 0, err[-20:]
    assert len(list(out.glob("frame_*.png"))) == 8


# -- SIGKILL: the next run cleans up ---------------------------------------------------------------------------------

def dead_pid() -> int:
    """The pid of a process this test started and reaped (gone now)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.slow
@pytest.mark.parametrize("target", ["out.mp4", "frames"])
def test_next_run_cleans_what_a_sigkilled_run_left(tmp_path, ckpt, target):
    """SIGKILL mid-encode leaves the hidden temp video / staging folder; the next run into the same place removes
    it, writes the output, and leaves nothing hidden."""
    src, out = write_sequence(tmp_path / "seq", 24), tmp_path / "o" / target
    out.parent.mkdir()
    env = env_with(tmp_path / "c")
    argv = ["runtime.infer", src, "-o", out, "--checkpoint", ckpt, "--backend", "torch"]
    with reaped(start(argv + ["--factor", "8"], env)) as p:
        wait_until(p, lambda p: any(out.parent.glob(".*")))
        time.sleep(0.5)
        signal_and_wait(p, signal.SIGKILL)
    left = [q.name for q in out.parent.iterdir()]
    assert left and all(n.startswith(".") for n in left), left  # what SIGKILL leaves (no handler can run)
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [q.name for q in out.parent.iterdir()] == [target]


def test_clean_stale_spares_live_writers(tmp_path):
    """Only a dead process's files of the temp pattern go: a live process's temp file, a file of another pattern
    and a pid-named file of the user's stay."""
    from sfadacof.outputs import clean_stale

    dead, live = dead_pid(), os.getpid()
    (tmp_path / f".out.mp4.sfa{dead}-abcd1234.mp4").write_bytes(b"x")
    (tmp_path / f".frames.sfa{dead}-abcd_234.partial").mkdir()
    (tmp_path / f".frames.sfa{dead}-abcd_234.partial" / "frame_000000.png").write_bytes(b"x")
    keep = [f".out.mp4.sfa{live}-abcd1234.mp4", f".notes.{dead}.tmp", f"out.sfa{dead}-abcd1234.mp4", "p.png"]
    for n in keep:
        (tmp_path / n).write_bytes(b"y")
    removed = clean_stale(tmp_path)
    assert sorted(q.name for q in removed) == sorted([f".out.mp4.sfa{dead}-abcd1234.mp4",
                                                      f".frames.sfa{dead}-abcd_234.partial"])
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(keep)


def test_clean_stale_pid_reused(tmp_path):
    """A pid reused by a later process: the file is older than that process, so it is a dead writer's."""
    from sfadacof.outputs import clean_stale

    f = tmp_path / f".out.mp4.sfa{os.getpid()}-abcd1234.mp4"
    f.write_bytes(b"x")
    old = time.time() - 10 * 24 * 3600  # written long before this process started
    os.utime(f, (old, old))
    assert clean_stale(tmp_path) == [f] and not f.exists()
