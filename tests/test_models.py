"""Model family vs the spec: parameter counts, state_dict layouts of the released checkpoints, and the forward
pass against an independent functional transcription of the authors' forward."""

from __future__ import annotations

import json

import pytest
import torch

from sfadacof.models import AdaCoFNet
from tests.helpers import count_parameters, large_motion_model
from tests.reference_forward import reference_forward

# spec checkpoint file -> (variant, K); dilation from the file (None in the K=11 one means the default, 1)
RELEASED = {
    "sf_adacof_repo_SF_AdaCoF": ("sf_adacof", 5),
    "sf_adacof_repo_AdaCoF": ("adacof", 5),
    "adacof_pytorch_ks5": ("adacof", 5),
    "adacof_pytorch_ks11": ("adacof", 11),
    "sf_adacof_repo_SF_AdaCoF_RWTD": ("rwtd", 5),
    "sf_adacof_repo_SF_AdaCoF_RWTDCP": ("rwtdcp", 5),
    "sf_adacof_repo_SF_AdaCoF_noShare": ("noshare", 5),
    "sf_adacof_repo_SF_AdaCoF_CP": ("cp", 5),
}


def test_every_released_checkpoint_is_listed(spec_dir):
    assert {p.stem for p in (spec_dir / "checkpoints").glob("*.json")} == set(RELEASED)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_layout_and_parameter_count_match_released_checkpoint(spec_dir, name):
    spec = json.loads((spec_dir / "checkpoints" / f"{name}.json").read_text())
    variant, ks = RELEASED[name]
    assert spec["kernel_size"] == ks
    model = AdaCoFNet(variant, ks, spec.get("dilation") or 1)
    assert count_parameters(model) == spec["num_parameters"]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(spec["state_dict"]), set(ours) ^ set(spec["state_dict"])
    assert ours == spec["state_dict"]
    # and a state_dict of exactly that layout loads strictly
    fake = {k: torch.zeros(shape) for k, shape in spec["state_dict"].items()}
    model.load_state_dict(fake, strict=True)


def test_paper_parameter_counts():
    # the spec's table, restated: the final model is the 8.5M-parameter one
    assert count_parameters(AdaCoFNet("sf_adacof")) == 8_585_590
    assert count_parameters(AdaCoFNet("adacof")) == 21_843_427


@pytest.mark.parametrize("variant,ks,dilation,size", [
    ("sf_adacof", 5, 1, (45, 70)),
    ("adacof", 5, 1, (33, 64)),
    ("rwtd", 5, 1, (40, 37)),
    ("rwtdcp", 3, 2, (64, 50)),
    ("noshare", 5, 1, (37, 41)),
    ("cp", 5, 1, (32, 35)),
    ("adacof", 11, 1, (35, 33)),
])
def test_forward_matches_independent_transcription(variant, ks, dilation, size):
    model = large_motion_model(variant, kernel_size=ks, dilation=dilation)
    g = torch.Generator().manual_seed(7)
    f0 = torch.rand(2, 3, *size, generator=g)
    f2 = torch.rand(2, 3, *size, generator=g)
    with torch.no_grad():
        ours = model(f0, f2)
        ref = reference_forward(model.state_dict(), f0, f2, dilation)
        maps = model.estimate(f0[:, :, :32, :32].contiguous(), f2[:, :, :32, :32].contiguous())
    assert ours.shape == f0.shape
    # same float32 arithmetic in a different order of module calls: equal to rounding
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    # the biases really produce offsets of several pixels both ways
    assert maps.alpha1.max() > 2 and maps.alpha1.min() < -2


def test_regularisers_follow_spec():
    model = large_motion_model("sf_adacof").train()
    f0, f2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    frame1, g_spatial, g_occ = model.forward_with_regularisers(f0, f2)
    m = model.estimate(f0, f2)

    def c(t):  # C(T) written out again from the spec
        dx = t[..., :, 1:] - t[..., :, :-1]
        dy = t[..., 1:, :] - t[..., :-1, :]
        return (dx ** 2 + 1e-6).sqrt().mean() + (dy ** 2 + 1e-6).sqrt().mean()

    expect = sum(c((w * x).mean(1, keepdim=True)) for w, x in
                 ((m.weight1, m.alpha1), (m.weight1, m.beta1), (m.weight2, m.alpha2), (m.weight2, m.beta2)))
    torch.testing.assert_close(g_spatial, expect)
    torch.testing.assert_close(g_occ, c(m.occlusion))
    torch.testing.assert_close(frame1, model(f0, f2))


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError):
        AdaCoFNet("sf_adacof", 4, 1)  # (K-1)*d odd: no symmetric pad
    with pytest.raises(ValueError):
        AdaCoFNet("nonexistent")
