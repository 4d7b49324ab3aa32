"""runtime.parity: polygraphy-loadable inputs and PyTorch reference files from real frames, polygraphy --onnxrt on
both forms (the plugin form through runtime.backends.polygraphy_ort), detection of a wrong graph, refusal of a checkpoint
the graph did not come from, and the ORT-vs-torch benchmark function."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from export.core import export_model
from plugins import _libs
from runtime.parity import benchmark_ort_vs_torch, load_pairs, main, polygraphy_trt_command
from sfadacof.checkpoint import file_sha256, save_checkpoint

from tests.helpers import large_motion_model, torch_forward
from tests.helpers import bikes_frames, crop
from tests.helpers import REPO_ROOT


def _save(path, rgb8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb8).save(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    f = bikes_frames(3, 40)
    pairs = d / "pairs"
    for i, name in enumerate(("im1.png", "im2.png", "im3.png")):  # a triplet (ground truth in the middle)
        _save(pairs / "a_triplet" / name, crop(f[i], 101, 70))
    _save(pairs / "b_pair" / "0.png", crop(f[0], 45, 37, x=200, y=50))  # a plain pair of another size
    _save(pairs / "b_pair" / "1.png", crop(f[2], 45, 37, x=200, y=50))
    seq = d / "seq"
    for i in range(3):
        _save(seq / f"f{i:03d}.png", crop(f[i], 64, 40))
    model = large_motion_model("rwtd", seed=9)
    ckpt = d / "rwtd.pth"
    save_checkpoint(ckpt, model, epoch=1)
    export_model(model, d / "p.onnx", exporter="torchscript", also={"onnx": d / "s.onnx"},
                 checkpoint_sha256=file_sha256(ckpt), checkpoint_name=ckpt.name)
    return {"dir": d, "pairs": pairs, "seq": seq, "model": model, "ckpt": ckpt, "plugin": d / "p.onnx",
            "onnx": d / "s.onnx"}


def _polygraphy_script() -> Path:
    p = Path(sys.executable).parent / "polygraphy"
    if not p.is_file():
        pytest.skip("polygraphy script not beside the interpreter")
    return p


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
@pytest.mark.parametrize("form", ["plugin", "onnx"])
def test_parity_passes_and_files_are_polygraphy_loadable(setup, form, tmp_path, capsys):
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    from tests.helpers import tree_digest

    out_dir = tmp_path / "out"
    inputs = (setup["pairs"], setup[form], setup["ckpt"])
    before = [tree_digest(p) for p in inputs]
    code, stdout, _ = _run([setup["pairs"], "--onnx", setup[form], "--checkpoint", setup["ckpt"], "-o", out_dir],
                           capsys)
    assert code == 0, stdout
    assert [tree_digest(p) for p in inputs] == before  # inputs are never modified (README)
    feeds = load_json(str(out_dir / "inputs.json"))
    assert [sorted(fd) for fd in feeds] == [["frame0", "frame2"]] * 2
    # inputs are the images as read independently here (8-bit / 255, NCHW), the triplet's outer frames
    im1 = np.asarray(Image.open(setup["pairs"] / "a_triplet" / "im1.png"), dtype=np.float32) / 255
    im3 = np.asarray(Image.open(setup["pairs"] / "a_triplet" / "im3.png"), dtype=np.float32) / 255
    assert np.array_equal(feeds[0]["frame0"][0], im1.transpose(2, 0, 1))
    assert np.array_equal(feeds[0]["frame2"][0], im3.transpose(2, 0, 1))
    assert feeds[1]["frame0"].shape == (1, 3, 37, 45)
    results = RunResults.load(str(out_dir / "reference.json"))
    assert list(results.keys()) == ["pytorch"]
    for fd, it in zip(feeds, results["pytorch"]):
        expect = torch_forward(setup["model"], fd["frame0"], fd["frame2"])
        assert np.allclose(it["frame1"], expect, atol=1e-6, rtol=0)
    report = json.loads((out_dir / "parity.json").read_text())
    assert report["passed"] and report["synthesis"] == form and report["polygraphy"]["exit_status"] == 0
    assert all(r["max_abs"] <= 1e-4 for r in report["pairs"])
    cmd = report["polygraphy"]["command"]
    assert ("runtime.backends.polygraphy_ort run" in cmd) == (form == "plugin")
    assert "--onnxrt" in cmd and "--atol 0.0001" in cmd and "--rtol 0.0" in cmd
    log = (out_dir / "polygraphy.log").read_text()
    assert log.count("PASSED | Output: 'frame1'") == 2 and "Pass Rate: 100.00%" in log
    trt = report["tensorrt_command"]
    assert trt.startswith("polygraphy run") and "--trt" in trt and "--load-outputs" in trt
    # the printed library path is where plugins/_libs.py finds it (or, unbuilt, where pip puts it): absolute,
    # so the command works pasted from any folder (issue 27: it said build/, which pip install never makes)
    lib = re.search(r"--plugins (\S+)", trt)
    assert (lib is not None) == (form == "plugin"), trt
    if lib is not None:
        path = Path(lib.group(1))
        assert path.is_absolute() and path.name == "libsfadacof_trt_register.so" and path.parent.is_dir(), path
        built = _libs.find_library(_libs.REGISTER_LIBRARY)
        assert path == (built.resolve() if built is not None else _libs.PACKAGE_DIR / path.name)
    assert "frame0:[1,3,37,45]" in trt and "frame0:[1,3,70,101]" in trt  # min and max shapes of the profile


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
def test_plain_polygraphy_cannot_load_the_custom_op(setup, tmp_path, capsys):
    """Why runtime.backends.polygraphy_ort exists: polygraphy's own --onnxrt has no way to register the op."""
    assert main([str(setup["pairs"]), "--onnx", str(setup["onnx"]), "--checkpoint", str(setup["ckpt"]), "-o",
                 str(tmp_path), "--no-polygraphy"]) == 0
    r = subprocess.run([str(_polygraphy_script()), "run", str(setup["plugin"]), "--onnxrt", "--load-inputs",
                        str(tmp_path / "inputs.json")], capture_output=True, text=True)
    assert r.returncode != 0 and "AdaCoFSynthesis" in r.stdout + r.stderr


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
def test_parity_detects_floor_instead_of_truncation(setup, tmp_path, capsys):
    """A standard-op graph whose offsets are floored (GridSample's rounding) instead of truncated must fail."""
    m = onnx.load(str(setup["onnx"]))
    producer = {o: n for n in m.graph.node for o in n.output}
    n_changed = 0
    for node in m.graph.node:
        if node.op_type == "Mul" and node.name.endswith("_trunc_node"):  # trunc(x) = Sign(x) * Floor(Abs(x))
            x = producer[node.input[0]].input[0]  # the Sign node's input: the offset itself
            node.op_type = "Floor"
            node.input[:] = [x]
            n_changed += 1
    assert n_changed == 4 * 25  # alpha and beta of 25 taps, two directions
    m.metadata_props.add(key="note", value="deliberately broken")
    broken = tmp_path / "floor.onnx"
    onnx.save(m, str(broken))
    code, _, err = _run([setup["pairs"], "--onnx", broken, "--checkpoint", setup["ckpt"], "-o", tmp_path / "o"], capsys)
    assert code == 1 and "parity FAILED" in err
    report = json.loads((tmp_path / "o" / "parity.json").read_text())
    assert not report["passed"] and report["polygraphy"]["exit_status"] != 0
    assert max(r["max_abs"] for r in report["pairs"]) > 1e-2
    assert "FAILED" in (tmp_path / "o" / "polygraphy.log").read_text()


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
def test_parity_refuses_a_checkpoint_the_graph_was_not_exported_from(setup, tmp_path, capsys):
    other = tmp_path / "other.pth"
    save_checkpoint(other, large_motion_model("rwtd", seed=10))
    with pytest.raises(SystemExit) as e:
        main([str(setup["pairs"]), "--onnx", str(setup["plugin"]), "--checkpoint", str(other), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "exported from checkpoint sha256" in err
    assert not (tmp_path / "inputs.json").exists()


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
def test_frame_sequence_folder_gives_consecutive_pairs(setup):
    pairs = load_pairs(setup["seq"])
    assert [p.name for p in pairs] == ["f000_f001", "f001_f002"]
    assert pairs[0].frame0.shape == (1, 3, 40, 64)
    assert np.array_equal(pairs[0].frame2, pairs[1].frame0)


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
def test_benchmark_function_measures_both_in_one_process(setup):
    b = benchmark_ort_vs_torch(setup["onnx"], setup["model"], width=96, height=64, iters=2, warmup=1, threads=1)
    assert len(b["torch_runs_s"]) == len(b["ort_runs_s"]) == 2 and b["threads"] == 1
    assert b["torch_s"] > 0 and b["ort_s"] > 0
    assert b["ort_over_torch"] == pytest.approx(b["ort_s"] / b["torch_s"])
    assert (b["width"], b["height"]) == (96, 64) and b["providers"] == ["CPUExecutionProvider"]


@pytest.mark.slow  # the module's export (setup) and polygraphy runs
def test_polygraphy_hook_module_runs_polygraphy(setup, tmp_path):
    """`python -m runtime.backends.polygraphy_ort` is polygraphy's CLI: a plain inference run on the plugin graph works."""
    r = subprocess.run([sys.executable, "-m", "runtime.backends.polygraphy_ort", "run", str(setup["plugin"]), "--onnxrt",
                        "--input-shapes", "frame0:[1,3,40,48]", "frame2:[1,3,40,48]"],
                       capture_output=True, text=True, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "frame1 [dtype=float32, shape=(1, 3, 40, 48)]" in r.stdout + r.stderr


def test_printed_tensorrt_command_names_the_library_that_exists(tmp_path, monkeypatch):
    """Where the library is (here: a folder named by SFADACOF_PLUGIN_DIR, as a pip install's plugins/ would be),
    the printed --plugins path is that file, absolute: the command works pasted from any folder (issue 27)."""
    lib = tmp_path / "libs" / "libsfadacof_trt_register.so"
    lib.parent.mkdir()
    lib.write_bytes(b"")
    monkeypatch.setenv("SFADACOF_PLUGIN_DIR", str(lib.parent))
    monkeypatch.chdir(tmp_path)
    pair = type("Pair", (), {"frame0": np.zeros((1, 3, 32, 48), np.float32)})()
    cmd = polygraphy_trt_command(Path("m.onnx"), Path("in.json"), Path("ref.json"), [pair], 1e-4, 0.0,
                                 custom_op=True)
    assert cmd[cmd.index("--plugins") + 1] == str(lib) and Path(cmd[cmd.index("--plugins") + 1]).is_file()
