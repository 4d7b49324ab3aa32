"""sfadacof.gpu_train, the one-call GPU training command, run tiny on the CPU: prepare copies the footage with a
manifest, the run writes a strictly loadable fp16 checkpoint in parts under the device tool's 16 MiB, its log's
validation numbers agree with frame averaging recomputed here in numpy, and it stops by itself on time.

The split is a small one of the same form as sfadacof/weights/split.json, on carphone (176x144), so that a run takes
seconds; the real split only adds clips and scales."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from sfadacof.checkpoint import load_checkpoint
from sfadacof.gpu_train import BEST_NAME, LAST_NAME, PART_BYTES, _decode_opencv, main, run
from tests.helpers import CARPHONE, _decode, np_psnr

VAL_START, VAL_END = 100, 106
SPLIT = {
    "train": {"gaps": [1, 2], "segments": [
        {"clip": "carphone_pristine.mp4", "start": 0, "end": 12, "scales": [1.0, 0.1]}]},  # x0.1 is under the crop
    "validation": {"gaps": [1, 2], "segments": [
        {"clip": "carphone_pristine.mp4", "start": VAL_START, "end": VAL_END}]},
    "test": {"gaps": [1], "segments": [{"clip": "carphone_pristine.mp4", "start": 60, "end": 70}]},
}
# Validation on the centre 64x64 of each frame (rows 40..103, columns 56..119 of 176x144) keeps the run to seconds.
TINY = ["--crop", "32", "--batch", "2", "--motion-candidates", "2", "--synthetic", "0.5", "--threads", "1",
        "--val-crop", "64x64"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_train")
    split = root / "split.json"
    split.write_text(json.dumps(SPLIT))
    footage = root / "footage"
    main(["--prepare", str(footage), "--split", str(split)])
    return root, split, footage


def test_prepare_copies_the_clips_with_their_hashes(prepared):
    _, _, footage = prepared
    manifest = json.loads((footage / "manifest.json").read_text())
    with open(CARPHONE, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    assert manifest["files"] == {"carphone_pristine.mp4": want}
    assert (footage / "carphone_pristine.mp4").read_bytes() == open(CARPHONE, "rb").read()
    frames = np.stack(_decode(CARPHONE, VAL_START, VAL_END - VAL_START))
    assert manifest["frames"][f"carphone_pristine.mp4@{VAL_START}:{VAL_END}"]["shape"] == list(frames.shape)


@pytest.mark.slow  # trains (a few steps at 32 px) and validates: ~3 s of CPU
def test_tiny_run_writes_a_loadable_checkpoint_and_an_honest_log(prepared, tmp_path):
    _, split, footage = prepared
    out = tmp_path / "out"
    summary = run(["--out", str(out), "--footage", str(footage), "--split", str(split), "--work",
                   str(tmp_path / "work"), "--steps-per-epoch", "2", "--max-steps", "2", "--minutes", "10"] + TINY)
    assert summary["steps"] == 2 and summary["stopped_by"] == "steps"
    assert list(summary["training_sources"]) == ["carphone_pristine[0:12]@1x"]  # x0.1 (18x14) left out
    assert set(summary["decode"].values()) == {"pyav, matches the prepared frames"}

    # Every file that comes back from the device is under its 16 MiB limit; the fp16 checkpoint needs two parts.
    for name in (BEST_NAME, LAST_NAME):
        parts = summary["files"][name]["parts"]
        assert len(parts) == 2 and all((out / p).stat().st_size <= PART_BYTES for p in parts)
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    dest = tmp_path / "joined.pth"
    main(["--join", str(out / BEST_NAME), str(dest)])
    raw = torch.load(dest, weights_only=True)
    assert set(raw) == {"epoch", "state_dict"}
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values())
    ck = load_checkpoint(dest)  # strict: every key and shape of the SF-AdaCoF model
    assert (ck.variant, ck.kernel_size) == ("sf_adacof", 5)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == summary["files"][BEST_NAME]["sha256"]

    # Validation: every triplet of frames 100..105 at gaps 1 and 2, centre 64x64. Averaging recomputed in numpy.
    f = np.stack(_decode(CARPHONE, VAL_START, VAL_END - VAL_START))[:, 40:104, 56:120].astype(np.float64)
    ref_avg = np.mean([np_psnr((f[t] + f[t + 2 * g]) / 2, f[t + g]) for g in (1, 2) for t in range(6 - 2 * g)])
    vals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r for r in vals if "val_psnr" in r]
    assert [r["step"] for r in vals] == [2]
    for r in vals:
        assert r["val_n"] == 6
        assert r["val_avg_psnr"] == pytest.approx(ref_avg, abs=1e-4)
        assert 20 < r["val_psnr"] < 50
    curve = (out / "curve.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["step", "val_psnr", "val_avg_psnr", "val_n"]
    assert [float(x.split("\t")[1]) for x in curve[1:]] == pytest.approx([r["val_psnr"] for r in vals], abs=1e-4)
    best = max(vals, key=lambda r: r["val_psnr"])
    assert summary["best"]["step"] == best["step"]
    # The shipped best file holds the weights of that step: its validation PSNR, recomputed here, matches.
    model = ck.model.eval()
    ps = []
    with torch.no_grad():
        for g in (1, 2):
            for t in range(6 - 2 * g):
                x0 = torch.from_numpy(f[t] / 255).permute(2, 0, 1)[None].float()
                x2 = torch.from_numpy(f[t + 2 * g] / 255).permute(2, 0, 1)[None].float()
                pred = model(x0, x2)[0].clamp(0, 1).permute(1, 2, 0).double().numpy() * 255
                ps.append(np_psnr(pred, f[t + g]))
    assert np.mean(ps) == pytest.approx(best["val_psnr"], abs=0.05)  # fp16 weights


@pytest.mark.slow  # trains until its time is up
def test_run_stops_by_itself_on_time_and_validates_at_the_stop(prepared, tmp_path):
    _, split, footage = prepared
    out = tmp_path / "out"
    summary = run(["--out", str(out), "--footage", str(footage), "--split", str(split), "--work",
                   str(tmp_path / "work"), "--steps-per-epoch", "1000", "--minutes", "0.0005"] + TINY)
    assert summary["stopped_by"] == "time" and 1 <= summary["steps"] <= 3
    vals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in vals if "val_psnr" in r] == [summary["steps"]]
    assert summary["best"]["step"] == summary["steps"]


def test_opencv_decode_equals_pyav():
    import cv2  # noqa: F401 -- in the dev extra: a missing OpenCV fails here, it does not skip
    ref = np.stack(_decode(CARPHONE, 3, 5))
    np.testing.assert_array_equal(_decode_opencv(CARPHONE, 3, 8), ref)


def test_bad_footage_folder_is_one_line(tmp_path, capsys, prepared):
    _, split, _ = prepared
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "o"), "--footage", str(tmp_path), "--split", str(split)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "carphone_pristine.mp4" in err
