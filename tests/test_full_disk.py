"""A full disk is a failed write: one line naming the OUTPUT, exit 1, nothing hidden left on the disk -- never a
'corrupt input' (exit 2) nor a traceback. The disk is a real tmpfs of a few KiB (mounting needs root; elsewhere
RLIMIT_FSIZE in the child stands in for it: the writes then fail with EFBIG instead of ENOSPC). runtime.batch's
full disk: tests/test_batch_faults.py. Where the tmpfs can be mounted the commands run in-process (`run`): the
frames and pairs cases then take well under a second; the video and export cases are slow (tests/README.md)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_main
from tests.test_interrupt import write_pairs, write_sequence

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def disk(tmp_path):
    """(folder on a 16 KiB disk, preexec_fn for the child or None)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode == 0:
        try:
            yield mnt, None
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    else:
        def limit():  # Python ignores SIGXFSZ, so an over-limit write fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))
        yield mnt, limit


def run(argv: list, preexec, cache: Path) -> tuple[int, list[str]]:
    """The command on the disk of the `disk` fixture: with a real tmpfs, its main(argv) in this process (run_main:
    what `python -m` runs, without 2-4 s of imports); with the RLIMIT_FSIZE stand-in, a child process under it."""
    if preexec is None:
        return run_main(*argv)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", SFADACOF_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=900, preexec_fn=preexec)
    return r.returncode, r.stderr.strip().splitlines()


def assert_failed_write(code: int, err: list[str], output: Path) -> None:
    assert code == 1, (code, err[-6:])
    assert not any("Traceback" in ln for ln in err), err[-20:]
    last = err[-1]
    assert last.startswith(f"error: {output}") and ("No space left" in last or "too large" in last), err[-6:]
    assert "corrupt" not in last and "input" not in last, last


def left_on(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_video_with_audio_onto_a_full_disk(tmp_path, ckpt, disk):
    """The audio packets are muxed while the input is demuxed: their failed write used to be reported as a corrupt
    INPUT video (exit 2)."""
    from tests.test_batch import _clip

    mnt, preexec = disk
    clip = _clip(tmp_path / "clip.mp4", frames=12)
    out = mnt / "out.mp4"
    code, err = run(["runtime.infer", clip, "-o", out, "--backend", "torch", "--checkpoint", ckpt, "--factor", "4",
                     "--crf", "0"], preexec, tmp_path / "c")
    assert_failed_write(code, err, out)
    assert left_on(mnt) == []


def test_frames_onto_a_full_disk(tmp_path, ckpt, disk):
    mnt, preexec = disk
    seq = write_sequence(tmp_path / "seq", 6)
    out = mnt / "frames"
    code, err = run(["runtime.infer", seq, "-o", out, "--backend", "torch", "--checkpoint", ckpt], preexec,
                    tmp_path / "c")
    assert_failed_write(code, err, out)
    assert left_on(mnt) == []


def test_pairs_onto_a_full_disk(tmp_path, ckpt, disk):
    mnt, preexec = disk
    pairs = write_pairs(tmp_path / "pairs", 4, 128)
    out = mnt / "out"
    code, err = run(["runtime.infer", pairs, "-o", out, "--backend", "torch", "--checkpoint", ckpt], preexec,
                    tmp_path / "c")
    assert_failed_write(code, err, out)
    assert all(not n.startswith(".") and "/." not in n for n in left_on(mnt)), left_on(mnt)


@pytest.mark.slow
def test_to_onnx_onto_a_full_disk(tmp_path, ckpt, disk):
    """export.to_onnx used to exit 2 (a user error) for a full disk. The TorchScript exporter (seconds, not the
    default's 20-50): both exporters' graphs are written by the same atomic_save_onnx."""
    mnt, preexec = disk
    out = mnt / "m.onnx"
    code, err = run(["export.to_onnx", ckpt, "-o", out, "--exporter", "torchscript"], preexec, tmp_path / "c")
    assert_failed_write(code, err, out)
    assert left_on(mnt) == []


def test_triton_repo_onto_a_full_disk(tmp_path, disk):
    """The model is copied into a staging folder: its failed write names the model folder, and the staging goes."""
    from tests.test_output_rules import std_onnx

    mnt, preexec = disk
    if preexec is not None:
        pytest.skip("needs a real full disk (its files are smaller than any per-file limit)")
    model = std_onnx(tmp_path / "m.std.onnx")
    filler = tmp_path / "filler"
    filler.write_bytes(b"\0" * (15 * 1024))
    subprocess.run(["cp", str(filler), str(mnt / "filler")], check=False)  # fills the disk's last page
    code, err = run(["runtime.triton_repo", "--onnx", model, "-o", mnt / "repo"], preexec, tmp_path / "c")
    (mnt / "filler").unlink()
    assert_failed_write(code, err, mnt / "repo")
    assert left_on(mnt) == []
