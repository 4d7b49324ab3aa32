"""python -m sfadacof.evaluate: the two baselines and the model scored on a real clip against an independent numpy
computation (own decode, own rounding, own PSNR), the gap, the JSON report, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sfadacof.checkpoint import save_checkpoint
from sfadacof.evaluate import main, run
from sfadacof.models import AdaCoFNet
from sfadacof.train import init_near_average
from tests.helpers import CARPHONE, carphone, np_psnr



def test_baselines_match_an_independent_formula(tmp_path):
    ref = carphone(10)
    out = tmp_path / "r.json"
    rep = run(["--baselines-only", "--gap", "2", "--json", str(out), f"{CARPHONE}@0:10"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(rep))
    clip = rep["clips"][0]
    assert clip["triplets"] == 6  # t = 0..5 at gap 2 in 10 frames
    exp_avg, exp_rep = [], []
    for t in range(6):
        f0, f1, f2 = ref[t].astype(np.float64), ref[t + 2], ref[t + 4].astype(np.float64)
        avg = np.floor((f0 + f2) / 2 + 0.5)  # round half up
        exp_avg.append(np_psnr(avg, f1))
        exp_rep.append(np_psnr(f0, f1))
    got = rep["per_triplet"][clip["clip"]]["psnr"]
    np.testing.assert_allclose(got["average"], exp_avg, rtol=0, atol=1e-5)  # frames go through float32 x/255
    np.testing.assert_allclose(got["repeat"], exp_rep, rtol=0, atol=1e-5)  # frames go through float32 x/255
    assert clip["psnr"]["average"] == pytest.approx(np.mean(exp_avg), abs=1e-5)
    # Real motion: averaging beats repeating the previous frame (by 0.7 dB on these frames).
    assert clip["psnr"]["average"] > clip["psnr"]["repeat"] + 0.5
    assert 0.5 < clip["ssim"]["repeat"] < clip["ssim"]["average"] < 1.0
    assert rep["overall"]["triplets"] == 6


def test_model_scores_and_overall(tmp_path, capsys):
    torch.manual_seed(0)
    model = AdaCoFNet("sf_adacof")
    init_near_average(model)
    ckpt = tmp_path / "m.pth"
    save_checkpoint(ckpt, model, epoch=1)
    rep = run(["--checkpoint", str(ckpt), "--crop", "96x64", "--threads", "1", f"{CARPHONE}@0:4",
               f"{CARPHONE}@4:7"])
    table = capsys.readouterr().out
    assert "overall (all triplets)" in table and "model-avg dB" in table
    ref = carphone(7)
    model.eval()
    exp = []
    for t in (0, 1, 4):
        crop = ref[t:t + 3, 40:104, 40:136]  # centre 64x96 of 144x176
        x = torch.from_numpy(crop.astype(np.float32) / 255).permute(0, 3, 1, 2)
        with torch.no_grad():
            y = model(x[0:1], x[2:3])[0].clamp(0, 1).permute(1, 2, 0).numpy()
        exp.append(np_psnr(np.rint(y.astype(np.float64) * 255), crop[1]))
    got = [x for c in rep["clips"] for x in rep["per_triplet"][c["clip"]]["psnr"]["model"]]
    np.testing.assert_allclose(got, exp, atol=1e-3)  # float32 rounding at x.5 boundaries may flip a few pixels
    assert [c["triplets"] for c in rep["clips"]] == [2, 1]
    assert rep["overall"]["psnr"]["model"] == pytest.approx(np.mean(exp), abs=1e-3)
    assert rep["overall"]["mean_of_clips"]["psnr"]["model"] == pytest.approx((exp[0] + exp[1]) / 4 + exp[2] / 2,
                                                                              abs=1e-3)
    assert rep["checkpoint"]["variant"] == "sf_adacof"


def test_errors_are_one_line_and_name_the_file(tmp_path, capsys):
    """sfadacof.evaluate's main in-process (exit status and stderr as the command gives them)."""
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(SystemExit) as e:
        main(["--baselines-only", str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.strip() and err.strip().count("\n") == 0 and "clip.mp4" in err
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "none.pth"), CARPHONE])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["--baselines-only", "--gap", "0", CARPHONE])
