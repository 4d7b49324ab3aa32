"""The Python API (runtime.Interpolator): every input type against the model called directly in torch, equality with
runtime.infer's PNG pixel for pixel, and the CLIs' one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from runtime import Interpolator
from runtime.infer import main
from sfadacof.errors import UserError
from tests.helpers import bikes_frames, crop, seeded_checkpoint, seeded_model

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return seeded_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pth")


@pytest.fixture(scope="module")
def interp(ckpt):
    with Interpolator(ckpt, backend="torch") as it:
        yield it


@pytest.fixture(scope="module")
def pair():
    f = bikes_frames()
    return crop(f[0], w=96, h=64), crop(f[2], w=96, h=64)


def model_mid(f0: np.ndarray, f2: np.ndarray) -> torch.Tensor:
    """Independent reference: the seeded model called directly on float [0, 1] NCHW, clamped (1, 3, H, W)."""
    t = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() for a in (f0, f2)]
    with torch.no_grad():
        return seeded_model()(*t).clamp(0, 1)


def reference_uint8(f0: np.ndarray, f2: np.ndarray) -> np.ndarray:
    y = model_mid(f0.astype(np.float32) / 255, f2.astype(np.float32) / 255)
    return torch.round(y * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_numpy_uint8_equals_the_cli_png(tmp_path, ckpt, interp, pair):
    f0, f2 = pair
    got = interp(f0, f2)
    assert got.dtype == np.uint8 and got.shape == f0.shape
    np.testing.assert_array_equal(got, reference_uint8(f0, f2))
    # the CLI on the same frames: its PNG decodes to exactly the API's array
    (tmp_path / "pairs" / "p").mkdir(parents=True)
    Image.fromarray(f0).save(tmp_path / "pairs" / "p" / "a.png")
    Image.fromarray(f2).save(tmp_path / "pairs" / "p" / "b.png")
    assert main([str(tmp_path / "pairs"), "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt),
                 "--backend", "torch"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "p.png")), got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_float_keeps_dtype_and_range(interp, pair, dtype):
    f0, f2 = (f.astype(dtype) / 255 for f in pair)
    got = interp(f0, f2)
    assert got.dtype == dtype and got.shape == f0.shape and got.min() >= 0 and got.max() <= 1
    ref = model_mid(f0.astype(np.float32), f2.astype(np.float32))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_pil_images(interp, pair):
    f0, f2 = pair
    got = interp(Image.fromarray(f0), Image.fromarray(f2).convert("RGBA"))  # any mode PIL converts to RGB
    assert isinstance(got, Image.Image) and got.mode == "RGB" and got.size == (96, 64)
    np.testing.assert_array_equal(np.asarray(got), reference_uint8(f0, f2))


def test_torch_tensors_nchw(interp, pair):
    f0, f2 = pair
    t0, t2 = (torch.from_numpy(f).permute(2, 0, 1)[None] for f in (f0, f2))
    got8 = interp(t0, t2)  # uint8 0..255 in, uint8 out
    assert got8.dtype == torch.uint8 and got8.shape == (1, 3, 64, 96)
    np.testing.assert_array_equal(got8[0].permute(1, 2, 0).numpy(), reference_uint8(f0, f2))
    gotf = interp(t0.float() / 255, t2.float() / 255)
    assert gotf.dtype == torch.float32 and gotf.shape == (1, 3, 64, 96)
    ref = model_mid(f0.astype(np.float32) / 255, f2.astype(np.float32) / 255)
    torch.testing.assert_close(gotf, ref, atol=1e-5, rtol=0)


def test_many_in_order(interp, pair):
    f0, f2 = pair
    out = interp.many([(f0, f2), (f2, f0)])
    np.testing.assert_array_equal(out[0], reference_uint8(f0, f2))
    np.testing.assert_array_equal(out[1], reference_uint8(f2, f0))


def test_frames_of_different_sizes_one_line(interp, pair):
    f0, _ = pair
    with pytest.raises(UserError) as e:
        interp(f0, f0[:48])
    assert str(e.value) == "frame2: size 96x48 differs from frame0 (96x64)"
    with pytest.raises(UserError, match=r"^frame2: size 96x48 differs from frame0 \(96x64\)$"):
        interp(Image.fromarray(f0), Image.fromarray(f0[:48]))
    t = torch.zeros(1, 3, 64, 96)
    with pytest.raises(UserError, match=r"^frame2: size 80x64 differs from frame0 \(96x64\)$"):
        interp(t, t[..., :80])
    with pytest.raises(UserError, match=r"^frame2: a torch tensor, frame0 a numpy array; pass two frames of one type$"):
        interp(f0, t)


def test_describe_says_which_backend_and_why(interp):
    d = interp.describe()
    assert d["backend"] == "torch" and d["chosen_by"] == "backend='torch' requested"


def test_bad_constructor_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"^unknown backend 'tensorrt'; choose one of auto, torch"):
        Interpolator(backend="tensorrt")
    with pytest.raises(UserError, match=r"missing\.pth: checkpoint not found$"):
        Interpolator(tmp_path / "missing.pth", backend="torch")
