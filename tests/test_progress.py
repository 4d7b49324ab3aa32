"""Progress of long runs (issue 27, items 1 and 2): lines on a stderr that is not a terminal (a pipe, as a tool
capturing output sees it), at least once per interval even while one item runs longer than that, from the ONNX
exporter too; and one definition of each figure: the progress lines' s/<unit> is the summary's s/<unit>."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfadacof.progress import Progress, heartbeat, per_unit, progress
from tests.helpers import bikes_frames, crop, write_bikes_pair, write_video
from tests.test_infer import assert_keys_in_glossary

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, every: str = "0.05") -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "SFADACOF_CACHE": str(tmp_path / "cache"),
            "SFADACOF_PROGRESS_SECONDS": every, "OMP_NUM_THREADS": "1"}


def _run(tmp_path: Path, *args: str, every: str = "0.05") -> subprocess.CompletedProcess:
    # pipes, not a terminal: what a CI log or a capturing tool gets
    return subprocess.run([sys.executable, *args], cwd=REPO, env=_env(tmp_path, every), capture_output=True,
                          text=True, timeout=600)


def test_lines_while_one_item_outlasts_the_interval():
    out = io.StringIO()
    with Progress(3, "interpolating", unit="pair", every=0.1, stream=out) as bar:
        bar.update()
        time.sleep(0.45)  # the second item: longer than the interval, no update meanwhile
        bar.update()
        bar.update()
    lines = out.getvalue().splitlines()
    during = [ln for ln in lines if ln.startswith("interpolating: 1/3 pairs, ")]
    assert len(during) >= 2, lines  # the heartbeat thread kept printing while the item ran
    assert re.fullmatch(r"interpolating: 1/3 pairs, \d+\.\d{3} s/pair, ETA \d+ s, \d+ s elapsed", during[0]), during
    assert re.fullmatch(r"interpolating: finished 3 pairs in \d+ s, \d+\.\d{3} s/pair", lines[-1]), lines
    # the closing figure is wall time / items, and bar.elapsed stays the figure printed
    assert lines[-1].endswith(per_unit(bar.elapsed, 3, "pair"))
    assert 0.45 <= bar.elapsed < 5


def test_progress_iterates_everything_and_counts_after_each_item():
    out = io.StringIO()
    seen = list(progress(range(4), 4, "x", unit="item", every=60, stream=out))
    assert seen == [0, 1, 2, 3]
    assert out.getvalue().splitlines()[-1].startswith("x: finished 4 items in ")


def test_heartbeat_names_the_phase_while_blocked():
    out = io.StringIO()
    with heartbeat("exporting ONNX", every=0.1, stream=out) as phase:
        phase("tracing")
        time.sleep(0.35)
    lines = out.getvalue().splitlines()
    assert lines[0] == "exporting ONNX: tracing, 0 s elapsed"
    assert sum(ln.startswith("exporting ONNX: tracing, ") and ln.endswith("elapsed") for ln in lines) >= 3, lines
    assert re.fullmatch(r"exporting ONNX: done in \d+ s", lines[-1])
    out = io.StringIO()  # after a failure its error is the last line: nothing printed after it
    with pytest.raises(RuntimeError), heartbeat("x", every=60, stream=out):
        raise RuntimeError
    assert out.getvalue().splitlines() == []


def test_no_line_after_a_failed_loop():
    """Bad input on the first item: its one error line is all stderr holds (nothing printed yet, nothing after)."""
    out = io.StringIO()
    with pytest.raises(ValueError), Progress(3, "interpolating", unit="pair", every=60, stream=out):
        raise ValueError
    assert out.getvalue() == ""


@pytest.mark.slow  # a real process (its stderr a pipe), as the next two
def test_video_progress_on_a_pipe_and_one_figure(tmp_path, ckpt):
    """runtime.infer on a video with stderr a pipe: progress lines in output frames, and the summary's s/output frame
    is the closing progress line's (issue 27 item 2: 25.86s/frame against 52.497 s per interpolated frame)."""
    frames = [crop(f, w=96, h=64) for f in bikes_frames(count=5, start=40)]
    clip = write_video(tmp_path / "clip.mp4", frames)
    r = _run(tmp_path, "-m", "runtime.infer", str(clip), "-o", str(tmp_path / "out.mp4"), "--backend", "torch",
             "--checkpoint", str(ckpt), "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert any(re.fullmatch(r"interpolating: \d+/10 output frames, \d+\.\d{3} s/output frame, ETA .*", ln)
               for ln in err), r.stderr
    closing = [ln for ln in err if ln.startswith("interpolating: finished 10 output frames in ")]
    assert len(closing) == 1, r.stderr
    figure = re.search(r"(\d+\.\d{3} s/output frame)", closing[0]).group(1)
    assert figure in r.stdout, (figure, r.stdout)
    assert re.search(r"the model \d+\.\d{3} s/interpolated frame", r.stdout), r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert f"{report['seconds_per_output_frame']:.3f} s/output frame" == figure  # the report's figure, same name
    assert_keys_in_glossary(report)


@pytest.mark.slow  # and the default exporter's first export
def test_pairs_progress_and_first_export_on_a_pipe(tmp_path, ckpt):
    """The default backend exports ONNX on first use (into this test's own cache): the exporter's lines come from
    the heartbeat; then the pairs' progress, whose s/pair the summary repeats."""
    for i in range(2):
        write_bikes_pair(tmp_path / "pairs" / f"p{i}")
    r = _run(tmp_path, "-m", "runtime.infer", str(tmp_path / "pairs"), "-o", str(tmp_path / "out"), "--backend",
             "ort", "--checkpoint", str(ckpt), every="0.5")
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    took = r"(\d+ s|\d+:\d\d min|\d+:\d\d:\d\d)"  # sfadacof.progress's durations: 59 s, 2:37 min, 1:02:03
    assert any(re.fullmatch(rf"exporting ONNX \(\w+ synthesis\): tracing with the \w+ exporter, {took} elapsed", ln)
               for ln in err), r.stderr
    assert any(re.fullmatch(rf"exporting ONNX \(\w+ synthesis\): done in {took}", ln) for ln in err), r.stderr
    closing = [ln for ln in err if ln.startswith("interpolating: finished 2 pairs in ")]
    assert len(closing) == 1, r.stderr
    figure = re.search(r"(\d+\.\d{3} s/pair)", closing[0]).group(1)
    assert figure in r.stdout, (figure, r.stdout)


@pytest.mark.slow  # a real process (its stderr a pipe)
def test_export_to_onnx_on_a_pipe(tmp_path, ckpt):
    """export.to_onnx's heartbeat (the same for both exporters: sfadacof.progress.heartbeat around the trace) with the
    TorchScript exporter, seconds instead of the default's 20-50 s; the default exporter's lines on a pipe are those
    of the first export in the test above."""
    r = _run(tmp_path, "-m", "export.to_onnx", str(ckpt), "-o", str(tmp_path / "m.onnx"), "--exporter", "torchscript",
             every="0.2")
    assert r.returncode == 0, r.stderr
    err = r.stderr.splitlines()
    assert any(re.fullmatch(r"exporting ONNX \(plugin synthesis\): tracing with the \w+ exporter, 0 s elapsed", ln)
               for ln in err), r.stderr
    assert sum("elapsed" in ln and ln.startswith("exporting ONNX") for ln in err) >= 2, r.stderr
    assert any(ln.startswith("exporting ONNX (plugin synthesis): done in ") for ln in err), r.stderr
