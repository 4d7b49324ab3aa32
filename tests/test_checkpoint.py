"""Checkpoint loading in every released format, detection of variant/K/dilation, and one-line errors."""

from __future__ import annotations

import os

import pytest
import torch

from sfadacof.checkpoint import load_checkpoint, save_checkpoint
from sfadacof.errors import UserError
from sfadacof.models import VARIANTS, AdaCoFNet

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py


def seeded(variant: str, ks: int = 5, dilation: int = 1) -> AdaCoFNet:
    torch.manual_seed(1)
    return AdaCoFNet(variant, ks, dilation).eval()


FRAMES = (torch.rand(1, 3, 35, 40, generator=torch.Generator().manual_seed(2)),
          torch.rand(1, 3, 35, 40, generator=torch.Generator().manual_seed(3)))


def out(model: AdaCoFNet) -> torch.Tensor:
    with torch.no_grad():
        return model(*FRAMES)


@pytest.mark.parametrize("variant", VARIANTS)
def test_authors_format_round_trip_detects_variant(tmp_path, variant):
    model = seeded(variant)
    path = tmp_path / "model_epoch050.pth"
    torch.save({"epoch": 50, "state_dict": model.state_dict()}, path)  # exactly what the authors' code writes
    loaded = load_checkpoint(path)
    assert (loaded.variant, loaded.kernel_size, loaded.dilation, loaded.epoch) == (variant, 5, 1, 50)
    assert torch.equal(out(loaded.model), out(model))


def test_bare_state_dicts_and_prefixes(tmp_path):
    model = seeded("sf_adacof")
    sd = model.state_dict()
    forms = {
        "bare.pth": sd,
        "no_prefix.pth": {k[len("get_kernel."):]: v for k, v in sd.items()},
        "dataparallel.pth": {"module." + k: v for k, v in sd.items()},
    }
    for name, obj in forms.items():
        torch.save(obj, tmp_path / name)
        loaded = load_checkpoint(tmp_path / name)
        assert loaded.variant == "sf_adacof" and loaded.epoch is None
        assert torch.equal(out(loaded.model), out(model)), name


def test_config_txt_gives_kernel_size_and_dilation(tmp_path):
    model = seeded("adacof", 3, 2)
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    (tmp_path / "config.txt").write_text("gpu: 0\nkernel_size: 3\ndilation: 2\nlr: 0.001\n")
    loaded = load_checkpoint(tmp_path / "ckpt.pth")
    assert (loaded.variant, loaded.kernel_size, loaded.dilation) == ("adacof", 3, 2)
    assert torch.equal(out(loaded.model), out(model))
    # dilation leaves no trace in the weights: without config.txt it defaults to 1, an override sets it
    (tmp_path / "config.txt").unlink()
    assert load_checkpoint(tmp_path / "ckpt.pth").dilation == 1
    assert load_checkpoint(tmp_path / "ckpt.pth", dilation=2).dilation == 2


def test_kernel_size_detected_from_shapes(tmp_path):
    model = seeded("adacof", 11)
    torch.save({"epoch": 3, "state_dict": model.state_dict()}, tmp_path / "k11.pth")
    loaded = load_checkpoint(tmp_path / "k11.pth")
    assert loaded.kernel_size == 11 and loaded.model.kernel_pad == 5


def test_save_checkpoint_half_round_trip(tmp_path):
    model = seeded("sf_adacof")
    save_checkpoint(tmp_path / "w.pth", model, epoch=7, half=True)
    raw = torch.load(tmp_path / "w.pth", weights_only=True)
    assert set(raw) == {"epoch", "state_dict"} and raw["epoch"] == 7
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values())
    loaded = load_checkpoint(tmp_path / "w.pth")
    # fp16 weights: outputs close to the fp32 model, not identical
    assert (out(loaded.model) - out(model)).abs().max() < 5e-3
    assert not list(tmp_path.glob("*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "w.pth").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.pth: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pth")


def test_corrupt_file(tmp_path):
    p = tmp_path / "corrupt.pth"
    p.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UserError, match=r"corrupt\.pth: not a readable PyTorch checkpoint") as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value)


def test_wrong_keys_name_missing_and_unexpected(tmp_path):
    sd = seeded("sf_adacof").state_dict()
    sd.pop("get_kernel.moduleOcclusion.7.weight")
    sd["get_kernel.extra.weight"] = torch.zeros(1)
    p = tmp_path / "wrong.pth"
    torch.save({"epoch": 0, "state_dict": sd}, p)
    with pytest.raises(UserError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert "wrong.pth" in msg and "1 missing (get_kernel.moduleOcclusion.7.weight)" in msg
    assert "1 unexpected (get_kernel.extra.weight)" in msg and "\n" not in msg


def test_variant_override_that_does_not_fit(tmp_path):
    p = tmp_path / "sf.pth"
    torch.save({"epoch": 0, "state_dict": seeded("sf_adacof").state_dict()}, p)
    with pytest.raises(UserError, match=r"does not match variant adacof K=5: 70 unexpected .*wrong shape"):
        load_checkpoint(p, variant="adacof")


def test_foreign_state_dict(tmp_path):
    p = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(10)}, p)
    with pytest.raises(UserError, match=r"resnet\.pth: keys match no known variant"):
        load_checkpoint(p)


def test_a_training_runs_full_state_loads_as_a_checkpoint(tmp_path):
    """sfadacof.train's best.pth / last.pth (weights + Adamax's two moments per weight + scheduler, rng, args) is what
    users pass to every command: the size guard against decompression bombs must admit it, at the real model's size
    (its moments alone are twice the weights, beyond a bound of one layout)."""
    model = seeded("sf_adacof")
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates exp_avg and exp_inf for every weight, as training does
    path = tmp_path / "best.pth"
    save_checkpoint(path, model, epoch=3, extra={"optimizer": optimizer.state_dict(), "step": 7})
    loaded = load_checkpoint(path)
    assert loaded.epoch == 3
    assert torch.equal(out(loaded.model), out(model))
