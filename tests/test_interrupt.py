"""Ctrl-C and op errors end cleanly: a real SIGINT sent to a real `python -m ...` process at several moments of a run
(backend creation / export, mid-pairs with the ONNX Runtime custom op and with torch, mid-video to a file and to a
folder) must end with exit 130, "interrupted" on stderr, and no partial or temp file in the output folder (or the
export cache). A malformed custom-op node must give one line, not SIGABRT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from PIL import Image

from tests.helpers import assert_ended_by, bikes_frames, crop, reaped, signal_and_wait, write_bikes_pair

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(ckpt_exports):
    """The session's export cache (conftest.py), holding both forms of `ckpt` (the openvino backend's is "onnx")."""
    return Path(os.environ["SFADACOF_CACHE"]), ckpt_exports["default"]


def write_pairs(root: Path, n: int, size: int) -> Path:
    for i in range(n):
        write_bikes_pair(root / f"p{i:03d}", size, names=("a.png", "b.png"))
    return root


def write_sequence(root: Path, n: int, size: int = 64) -> Path:
    root.mkdir(parents=True)
    frames = bikes_frames(count=n, start=40)
    for i, f in enumerate(frames):
        Image.fromarray(crop(f, w=size, h=size)).save(root / f"{i:04d}.png")
    return root


def env_with(cache_root: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    if cache_root is not None:
        env["SFADACOF_CACHE"] = str(cache_root)
    return env


def interrupt_when(argv: list[str], ready, env: dict, timeout: float = 120.0, extra_delay: float = 0.0):
    """Start `python -m argv`, send SIGINT once ready(process) is true; return (exit status, stderr lines)."""
    p = subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    with reaped(p):
        while not ready(p):
            if p.poll() is not None:
                pytest.fail(f"finished before the interrupt point (exit {p.returncode}): {p.stderr.read()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("interrupt point never reached")
            time.sleep(0.02)
        time.sleep(extra_delay)
        return signal_and_wait(p, signal.SIGINT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hidden_or_temp(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".partial")]


def assert_interrupted(code: int, err: list[str]) -> None:
    assert_ended_by(signal.SIGINT, code, err)


def assert_complete_pngs(folder: Path) -> int:
    """Every PNG in `folder` decodes in full (none cut short); returns how many there are."""
    pngs = sorted(folder.glob("*.png")) if folder.exists() else []
    for p in pngs:
        with Image.open(p) as im:
            im.load()
    return len(pngs)


@pytest.mark.slow
def test_sigint_during_export(tmp_path, ckpt):
    """Backend creation: the ort backend exports the checkpoint into an empty cache; Ctrl-C while it traces."""
    pairs, out, cache_root = write_pairs(tmp_path / "pairs", 1, 64), tmp_path / "out", tmp_path / "cache"
    code, err = interrupt_when(["runtime.infer", pairs, "-o", out, "--checkpoint", ckpt, "--backend", "ort"],
                               lambda p: (cache_root / "onnx").is_dir(), env_with(cache_root), extra_delay=0.5)
    assert_interrupted(code, err)
    assert not list((cache_root / "onnx").iterdir())  # no half-written export, no temp file
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.slow
def test_sigint_during_to_onnx(tmp_path, ckpt):
    """Mid-trace: 2.3 s of CPU time is past the imports and the checkpoint (~1.3 s on one thread) and inside the
    trace of the default TorchScript exporter (until ~3.3 s; the whole command ~4.3 s)."""
    out = tmp_path / "m.onnx"
    code, err = interrupt_when(["export.to_onnx", ckpt, "-o", out], lambda p: cpu_seconds(p.pid) > 2.3,
                               env_with(tmp_path / "cache"))
    assert_interrupted(code, err)
    assert list(tmp_path.glob("*.onnx")) == [] and hidden_or_temp(tmp_path) == []


@pytest.mark.slow  # a real process (as every case here but the in-process ones at the end)
@pytest.mark.parametrize("backend", ["ort", "torch", "openvino"])
def test_sigint_mid_pairs(tmp_path, ckpt, backend, request):
    """Mid-run: with ort the graph's custom node calls back into Python from C++; a KeyboardInterrupt raised
    there used to abort the process (SIGABRT); openvino (the CPU default) likewise calls back into Python from its
    C++ infer for the synthesis's kernel node. Frames are 128x128 so most of the time is inside those C++ calls.
    torch needs no export, so it asks for no cache fixture."""
    root = None if backend == "torch" else request.getfixturevalue("cache")[0]
    pairs, out = write_pairs(tmp_path / "pairs", 40, 128), tmp_path / "out"
    code, err = interrupt_when(["runtime.infer", pairs, "-o", out, "--checkpoint", ckpt, "--backend", backend],
                               lambda p: out.is_dir() and any(out.glob("*.png")), env_with(root))
    assert_interrupted(code, err)
    assert hidden_or_temp(out) == []
    assert 1 <= assert_complete_pngs(out) < 40


@pytest.mark.slow
@pytest.mark.parametrize("target", ["out.mp4", "frames"])
def test_sigint_mid_video(tmp_path, ckpt, cache, target):
    """Mid-video: the hidden temp video (or the staging folder of a frames output) is removed, nothing partial is
    left under the output name."""
    src, out = write_sequence(tmp_path / "seq", 24), tmp_path / "o" / target
    out.parent.mkdir()
    code, err = interrupt_when(["runtime.infer", src, "-o", out, "--checkpoint", ckpt, "--backend", "ort",
                                "--factor", "8"],
                               lambda p: any(out.parent.glob(".*")), env_with(cache[0]), extra_delay=0.5)
    assert_interrupted(code, err)
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("also_metadata", [False, True])
def test_malformed_custom_node_one_line(tmp_path, ckpt, cache, also_metadata):
    """kernel_size 7 on K = 5 maps: refused from the metadata before the session runs; with the metadata edited
    too, the op's own shape check fails inside the callback and is re-raised after run -- one line, exit 2."""
    m = onnx.load(str(cache[1]))
    node = next(n for n in m.graph.node if n.op_type == "AdaCoFSynthesis")
    next(a for a in node.attribute if a.name == "kernel_size").i = 7
    if also_metadata:
        next(p for p in m.metadata_props if p.key == "kernel_size").value = "7"
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    pairs, out = write_pairs(tmp_path / "pairs", 1, 64), tmp_path / "out"
    # the ORT custom op is what runs a plugin-form graph (the CPU default, OpenVINO, refuses that form up front)
    r = subprocess.run([sys.executable, "-m", "runtime.infer", str(pairs), "-o", str(out), "--onnx", str(bad),
                        "--backend", "ort"], cwd=REPO, env=env_with(cache[0]), capture_output=True, text=True,
                       timeout=300)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1, (r.returncode, err[-5:])
    assert str(bad) in err[0] and ("kernel_size" in err[0] or "weight1" in err[0]), err[0]
    assert not out.exists() or assert_complete_pngs(out) == 0


# -- the pieces every CLI's Ctrl-C handling is made of (sfadacof.interrupts, sfadacof.errors), each in a fresh
# interpreter that imports only them (~0.1 s): a real signal sent inside a pytest-xdist worker could end the worker
# instead of failing the test (two full -n 2 runs lost a worker here, and xdist's load-group scheduler then hung)

HELD_BLOCK = """
import os, signal, sys, time
from sfadacof.errors import cli_main
from sfadacof.interrupts import deferred_sigint

sig = signal.Signals[sys.argv[1]]
# as a process started from a shell begins
signal.signal(signal.SIGINT, signal.default_int_handler)
for s in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_DFL)

@cli_main
def main():
    with deferred_sigint():
        held = signal.getsignal(sig)
        print("held" if callable(held) and held is not signal.default_int_handler else f"not held: {held!r}",
              flush=True)
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # Python runs a handler between bytecodes: an unheld signal raises here
        print("block ended", flush=True)
    print("after the block", flush=True)  # never reached: the held signal is raised as the block ends

main()
"""


def _child(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("sig, line, status", [("SIGINT", "interrupted", 130),
                                               ("SIGTERM", "interrupted (SIGTERM)", 143),
                                               ("SIGHUP", "interrupted (SIGHUP)", 129)])
def test_signal_in_a_held_block_ends_the_cli_after_it(sig, line, status):
    """What the ORT custom-op callback runs under (sfadacof.interrupts.deferred_sigint): a real signal sent to the
    process inside the block is held until the block ends (the block runs to its end), then ends the command as the
    README says: its one line on stderr, exit 128 + N (cli_main)."""
    r = _child(HELD_BLOCK, sig)
    assert (r.returncode, r.stdout.splitlines()) == (status, ["held", "block ended"]), (r.returncode, r.stdout,
                                                                                         r.stderr[-500:])
    assert r.stderr.splitlines() == [line]


NOHUP = """
import os, signal, time
from sfadacof.interrupts import install_termination_handlers

signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a process
signal.signal(signal.SIGTERM, signal.SIG_DFL)
install_termination_handlers()
print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, callable(signal.getsignal(signal.SIGTERM)), flush=True)
os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing is raised
time.sleep(0.05)
print("still running", flush=True)
"""


def test_nohup_ignored_sighup_stays_ignored_in_a_cli():
    """A SIGHUP the process was told to ignore (nohup) stays ignored when a CLI installs its handlers; SIGTERM gets
    the CLI's own handler."""
    r = _child(NOHUP)
    assert (r.returncode, r.stdout.splitlines(), r.stderr) == (0, ["True True", "still running"], "")


EXIT_WINDOW = """
import atexit, os, signal, sys, time
from sfadacof.errors import cli_main

point, sig = sys.argv[1], signal.Signals[sys.argv[2]]
# as a process started from a shell begins
signal.signal(signal.SIGINT, signal.default_int_handler)
for s in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_DFL)


def send(kill=os.kill, pid=os.getpid(), sig=sig, sleep=time.sleep):  # bound now: usable in the last teardown
    kill(pid, sig)
    sleep(0.05)  # Python runs a signal's handler between bytecodes: here


class AtTeardown:
    def __del__(self, send=send):
        send()


@cli_main
def main():
    if point == "atexit":
        atexit.register(send)  # as a library the command imports (torch, Ray) registers its own exit step
    print("done", flush=True)
    return 0


if point == "teardown":
    last = AtTeardown()  # dropped when the interpreter clears __main__, after its last Python-level exit step
status = main()
if point == "return":
    send()  # what `sys.exit(main())` in a command's `__main__` runs after main has returned
sys.exit(status)
"""


@pytest.mark.parametrize("point, sig, status, line", [
    ("return", "SIGINT", 130, "interrupted"),
    ("return", "SIGTERM", 143, "interrupted (SIGTERM)"),
    ("atexit", "SIGINT", 130, "interrupted"),
    ("atexit", "SIGHUP", 129, "interrupted (SIGHUP)"),
    ("teardown", "SIGINT", 0, None),
    ("teardown", "SIGTERM", 0, None)])
def test_a_signal_after_the_command_finished_ends_it_in_one_line(point, sig, status, line):
    """A signal that arrives after a command's main has returned ("done" printed, its outputs complete): while the
    interpreter still runs Python (`sys.exit(main())`, the exit steps libraries register) it ends the command with
    its one line and exit 128 + N; once the interpreter is past its last Python-level exit step (tearing its modules
    down, where no Python handler can run any more) it is ignored, and the finished command's status stands. Never
    killed by the signal (exit -N), never a traceback. The signal is sent from inside the process at each point."""
    r = _child(EXIT_WINDOW, point, sig)
    assert (r.returncode, r.stdout.splitlines()) == (status, ["done"]), (r.returncode, r.stdout, r.stderr[-800:])
    assert r.stderr.splitlines() == ([line] if line else []), r.stderr[-800:]
