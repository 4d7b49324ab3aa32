"""No command deletes or replaces a file it did not create, nor writes into an input tree (sfadacof.outputs'
check_outputs, on every path a command writes -- named and derived). Real files; each refusal must come before any
work: one line naming the path, exit 2, every file left byte for byte.

Each command is run once as a real `python -m ...` process (`run`: its stderr holds that one line and nothing else,
the interpreter's exit status; `slow`, 2-4 s of imports each); the other cases call the same command's main(argv) in
this process (`run_main`, tests/helpers.py), which is what `python -m` runs after its imports.

The runtime.batch cases here are all refused before the Ray cluster starts, so they are fast; the ones that need a
cluster are in tests/test_batch_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import bikes_frames, crop, run_main, write_bikes_pair

REPO = Path(__file__).resolve().parent.parent


def run(*argv, cache: Path, timeout: int = 600) -> tuple[int, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", SFADACOF_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stderr.strip().splitlines()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_refused(code: int, err: list[str], *needles: str) -> None:
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err[-6:])
    for n in needles:
        assert n in err[0], err[0]


def write_pairs(root: Path, names=("p",), size: int = 64) -> Path:
    for n in names:
        write_bikes_pair(root / n, size, names=("a.png", "b.png"))
    return root


def write_sequence(root: Path, n: int, size: int = 64, start: int = 40) -> Path:
    root.mkdir(parents=True)
    for i, f in enumerate(bikes_frames(count=n, start=start)):
        Image.fromarray(crop(f, w=size, h=size)).save(root / f"{i:04d}.png")
    return root


def write_clip(path: Path, n: int = 4) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        for f in bikes_frames(n, 40):
            for p in v.encode(av.VideoFrame.from_ndarray(crop(f, 64, 64), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return path


def user_png(path: Path, value: int = 7) -> Path:
    """A PNG the user made (no sfadacof mark)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def std_onnx(path: Path) -> Path:
    """A graph with the served contract (frame0, frame2 -> frame1, float32 NCHW, free batch/size): the mean."""
    import onnx
    from onnx import TensorProto, helper

    dims = ["N", 3, "H", "W"]
    g = helper.make_graph(
        [helper.make_node("Add", ["frame0", "frame2"], ["s"]),
         helper.make_node("Mul", ["s", "half"], ["frame1"])], "mean",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in ("frame0", "frame2")],
        [helper.make_tensor_value_info("frame1", TensorProto.FLOAT, dims)],
        [helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# -- runtime.batch -----------------------------------------------------------------------------------------------------

def test_batch_frames_output_keeps_the_users_folder(tmp_path):
    """--video-output frames into OUT/<clip stem>/ that holds the user's files: refused, nothing deleted (it used to
    be emptied and filled with frames, exit 0)."""
    clip = write_clip(tmp_path / "in" / "clip.mp4")
    out = tmp_path / "out"
    user_png(out / "clip" / "holiday.png")
    (out / "clip" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, err = run_main("runtime.batch", clip, "-o", out, "--video-output", "frames", "--workers", "1",
                         "--backend", "torch")
    assert_refused(code, err, str(out / "clip"), "did not write")
    assert snapshot(tmp_path) == before


def test_batch_output_parent_of_source_refused(tmp_path):
    """SRC -o <parent of SRC>: OUT/<basename of SRC>/ is SRC itself -- refused instead of writing into the input."""
    src = write_pairs(tmp_path / "vimeo" / "00001", names=("0001", "0002"))
    before = snapshot(tmp_path)
    code, err = run_main("runtime.batch", src, "-o", tmp_path / "vimeo", "--workers", "1", "--backend", "torch")
    assert_refused(code, err, "input")
    assert snapshot(tmp_path) == before


def test_batch_video_output_is_the_input(tmp_path):
    """clip.mp4 -o <its own folder>: OUT/clip.mp4 is the input; it used to be taken for a complete output."""
    clip = write_clip(tmp_path / "clip.mp4")
    before = snapshot(tmp_path)
    code, err = run_main("runtime.batch", clip, "-o", tmp_path, "--workers", "1", "--backend", "torch")
    assert_refused(code, err, "input")
    assert snapshot(tmp_path) == before


def test_batch_pairs_output_holding_a_users_file(tmp_path):
    """OUT/<source>/<pair>.png that the user put there is neither replaced nor taken for a finished output."""
    src = write_pairs(tmp_path / "set", names=("p0", "p1"))
    user_png(tmp_path / "out" / "set" / "p1.png")
    before = snapshot(tmp_path)
    code, err = run_main("runtime.batch", src, "-o", tmp_path / "out", "--workers", "1", "--backend", "torch")
    assert_refused(code, err, str(tmp_path / "out" / "set" / "p1.png"), "did not write")
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # a real process: see the module doc
def test_batch_bad_memory_budget_env_refused_before_the_cluster(tmp_path, cache):
    src = write_pairs(tmp_path / "set")
    env_code = subprocess.run(
        [sys.executable, "-m", "runtime.batch", str(src), "-o", str(tmp_path / "out"), "--workers", "1",
         "--backend", "torch"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO), SFADACOF_CACHE=str(cache), SFADACOF_MEMORY_BUDGET_GB="abc"))
    err = env_code.stderr.strip().splitlines()
    assert_refused(env_code.returncode, err, "SFADACOF_MEMORY_BUDGET_GB")
    assert not (tmp_path / "out").exists()


# -- runtime.triton_repo -----------------------------------------------------------------------------------------------

@pytest.mark.slow  # a real process: see the module doc
def test_triton_model_inside_the_repository_it_writes(tmp_path, cache):
    """--onnx REPO/sfadacof/my.std.onnx -o REPO: the folder it would replace holds the input -- refused (the model
    used to be deleted)."""
    model = std_onnx(tmp_path / "repo" / "sfadacof" / "my.std.onnx")
    before = snapshot(tmp_path)
    code, err = run("runtime.triton_repo", "--onnx", model, "-o", tmp_path / "repo", cache=cache)
    assert_refused(code, err, "holds the input")
    assert snapshot(tmp_path) == before


def test_triton_model_folder_with_foreign_files(tmp_path):
    """REPO/sfadacof/ holding another version (2/) and a user's file: refused, kept; README.md of the user's: kept."""
    model = std_onnx(tmp_path / "m.std.onnx")
    repo = tmp_path / "repo"
    (repo / "sfadacof" / "2").mkdir(parents=True)
    (repo / "sfadacof" / "2" / "model.onnx").write_bytes(b"the user's model")
    before = snapshot(tmp_path)
    code, err = run_main("runtime.triton_repo", "--onnx", model, "-o", repo)
    assert_refused(code, err, str(repo / "sfadacof"))
    assert snapshot(tmp_path) == before

    repo2 = tmp_path / "repo2"
    repo2.mkdir()
    (repo2 / "README.md").write_text("# my serving notes\n")
    before = snapshot(tmp_path)
    code, err = run_main("runtime.triton_repo", "--onnx", model, "-o", repo2)
    assert_refused(code, err, str(repo2 / "README.md"))
    assert snapshot(tmp_path) == before


def test_triton_rerun_replaces_its_own_output(tmp_path):
    """What the rule still allows: a second run over the repository the first wrote replaces it (no staging left)."""
    model = std_onnx(tmp_path / "m.std.onnx")
    repo = tmp_path / "repo"
    for instances in ("1", "3"):
        code, err = run_main("runtime.triton_repo", "--onnx", model, "-o", repo, "--instances", instances)
        assert code == 0, err
    assert "count: 3" in (repo / "sfadacof" / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "client.py", "sfadacof"]
    assert (repo / "sfadacof" / "1" / "model.onnx").read_bytes() == model.read_bytes()


# -- runtime.infer / runtime.accuracy ----------------------------------------------------------------------------------

@pytest.mark.slow  # a real process: see the module doc
def test_report_colliding_with_a_pair_frame(tmp_path, ckpt, cache):
    """--report OUT/p.png where pair p's frame goes: refused before any work (the frame used to be replaced by the
    JSON, exit 0). The same for runtime.accuracy -o/--report."""
    pairs = write_pairs(tmp_path / "pairs", names=("p",))
    out = tmp_path / "out"
    code, err = run("runtime.infer", pairs, "-o", out, "--report", out / "p.png", "--backend", "torch",
                    "--checkpoint", ckpt, cache=cache)
    assert_refused(code, err, str(out / "p.png"), "--report")
    assert not out.exists()
    code, err = run("runtime.accuracy", pairs, "-o", out, "--report", out / "p.png", "--backend", "torch",
                    "--checkpoint", ckpt, cache=cache)
    assert_refused(code, err, str(out / "p.png"), "--report")
    assert not out.exists()


def test_report_inside_a_frames_output(tmp_path, ckpt):
    seq = write_sequence(tmp_path / "seq", 3)
    code, err = run_main("runtime.infer", seq, "-o", tmp_path / "frames", "--report", tmp_path / "frames" / "r.json",
                         "--backend", "torch", "--checkpoint", ckpt)
    assert_refused(code, err, "r.json")
    assert not (tmp_path / "frames").exists()


def test_pairs_output_replaces_only_its_own_pngs(tmp_path, ckpt):
    """OUT/p.png of the user's: refused, kept. A second run over the first run's frames: allowed (they are ours)."""
    pairs = write_pairs(tmp_path / "pairs", names=("p", "q"))
    out = tmp_path / "out"
    user_png(out / "q.png")
    before = snapshot(tmp_path)
    code, err = run_main("runtime.infer", pairs, "-o", out, "--backend", "torch", "--checkpoint", ckpt)
    assert_refused(code, err, str(out / "q.png"), "did not write")
    assert snapshot(tmp_path) == before
    (out / "q.png").unlink()
    for _ in range(2):
        code, err = run_main("runtime.infer", pairs, "-o", out, "--backend", "torch", "--checkpoint", ckpt)
        assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["p.png", "q.png"]


@pytest.mark.parametrize("held", ["other clip", "user file"])
def test_frames_output_into_a_folder_holding_files(tmp_path, ckpt, held):
    """A video written as PNG frames into a folder that already holds another clip's frames (of another size) or the
    user's files: refused, the folder unchanged (it used to end holding a mix of both clips' frames, exit 0)."""
    out = tmp_path / "frames"
    if held == "other clip":
        other = write_sequence(tmp_path / "other", 5, size=96)
        code, err = run_main("runtime.infer", other, "-o", out, "--backend", "torch", "--checkpoint", ckpt)
        assert code == 0, err
        assert len(list(out.glob("frame_*.png"))) == 10
    else:
        user_png(out / "frame_000000.png")
    seq = write_sequence(tmp_path / "seq", 3, size=64)
    before = snapshot(out)
    code, err = run_main("runtime.infer", seq, "-o", out, "--backend", "torch", "--checkpoint", ckpt)
    assert_refused(code, err, str(out), "new or empty folder")
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_frames_output_into_an_empty_folder(tmp_path, ckpt):
    seq = write_sequence(tmp_path / "seq", 3)
    (tmp_path / "frames").mkdir()
    code, err = run_main("runtime.infer", seq, "-o", tmp_path / "frames", "--backend", "torch", "--checkpoint", ckpt)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_{i:06d}.png" for i in range(6)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# -- other writers -----------------------------------------------------------------------------------------------------

@pytest.mark.slow  # a real process: see the module doc
def test_parity_output_inside_the_input_tree(tmp_path, cache):
    pairs = write_pairs(tmp_path / "pairs")
    model = std_onnx(tmp_path / "m.onnx")
    before = snapshot(tmp_path)
    code, err = run("runtime.parity", pairs, "--onnx", model, "-o", pairs / "p" / "parity", cache=cache)
    assert_refused(code, err, "input")
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # a real process: see the module doc
def test_to_onnx_output_is_the_checkpoint(tmp_path, ckpt, cache):
    import shutil

    c = tmp_path / "m.pth"
    shutil.copyfile(ckpt, c)
    before = snapshot(tmp_path)
    code, err = run("export.to_onnx", c, "-o", c, cache=cache)
    assert_refused(code, err, "input")
    assert snapshot(tmp_path) == before


def test_parity_keeps_a_users_file_in_its_output_folder(tmp_path):
    """runtime.parity writes inputs.json, reference.json, polygraphy.log and parity.json into -o: a user's file of
    one of those names (in a folder no parity run wrote) is refused, not replaced."""
    pairs = write_pairs(tmp_path / "pairs")
    model = std_onnx(tmp_path / "m.onnx")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "reference.json").write_text('{"mine": 1}\n')
    before = snapshot(tmp_path)
    code, err = run_main("runtime.parity", pairs, "--onnx", model, "-o", tmp_path / "out")
    assert_refused(code, err, str(tmp_path / "out" / "reference.json"), "did not write")
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # a real process: see the module doc
def test_build_engine_outputs_checked_before_tensorrt(tmp_path, cache):
    """runtime.build_engine: an engine path whose sidecar (ENGINE.json) is the input graph is refused before
    TensorRT is looked for (so on this machine too, which has none)."""
    model = std_onnx(tmp_path / "m.onnx")
    (tmp_path / "e.json").write_bytes(model.read_bytes())
    before = snapshot(tmp_path)
    code, err = run("runtime.build_engine", tmp_path / "e.json", "-o", tmp_path / "e", cache=cache)
    assert_refused(code, err, "input")
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # a real process: see the module doc
def test_train_keeps_a_users_checkpoint_in_its_output_folder(tmp_path, ckpt, cache):
    """sfadacof.train writes last.pth, best.pth and log.jsonl into --out: a user's best.pth there (a checkpoint, but
    not a training run's) is refused, not replaced."""
    import shutil

    seq = write_sequence(tmp_path / "seq", 4)
    (tmp_path / "out").mkdir()
    shutil.copyfile(ckpt, tmp_path / "out" / "best.pth")
    before = snapshot(tmp_path)
    code, err = run("sfadacof.train", "--data", seq, "--val", seq, "--out", tmp_path / "out", "--crop", "32",
                    "--max-steps", "1", "--no-resume", cache=cache)
    assert_refused(code, err, str(tmp_path / "out" / "best.pth"), "did not write")
    assert snapshot(tmp_path) == before


def test_batch_failed_lines_escape_control_characters(tmp_path):
    """A source whose name holds a newline (a 0-byte clip: it fails while planning, so no cluster starts): its
    `FAILED` and `failed:` lines stay one line each, the newline written as \\n (sfadacof.errors.one_line)."""
    bad = tmp_path / "bad\nclip.mp4"
    bad.write_bytes(b"")
    code, err = run_main("runtime.batch", bad, "-o", tmp_path / "out", "--workers", "1", "--backend", "torch")
    assert code == 1, err
    assert [line for line in err if "clip.mp4" in line] == [
        line for line in err if line.startswith(("bad\\nclip.mp4: FAILED: ", "failed: bad\\nclip.mp4: "))], err
    assert len([line for line in err if "clip.mp4" in line]) == 2, err
    assert not any(line.startswith("clip.mp4") for line in err), err


@pytest.mark.parametrize("name", ["summary.json", "curve.tsv", "log.jsonl", "sf_adacof_gpu.pth.part0"])
def test_gpu_train_keeps_a_users_file_in_its_output_folder(tmp_path, name):
    """sfadacof.gpu_train writes the parts, log.jsonl, curve.tsv and summary.json into --out: a user's file of that
    name is refused in one line before the footage is decoded (it used to be replaced after the training)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text('{"mine": 1}\n')
    if name.endswith(".part0"):  # a summary of an earlier run that does not list this part
        (out / "summary.json").write_text('{"split_sha256": "0", "files": {"x": {"parts": ["x.part0"]}}}\n')
    before = snapshot(tmp_path)
    code, err = run_main("sfadacof.gpu_train", "--out", out, "--work", tmp_path / "work", "--max-steps", "1",
                         "--device", "cpu")
    assert_refused(code, err, str(out / name), "did not write")
    assert snapshot(tmp_path) == before


def test_gpu_train_recognises_its_own_files():
    """What gpu_train writes is recognised as its own (in-process, on the files as run() writes them), so a re-run
    into the same --out replaces them; a part the summary does not list is not."""
    import json
    import tempfile

    from sfadacof.gpu_train import BEST_NAME, CURVE_HEADER, out_files, written_by_gpu_train

    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        (out / "log.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")
        (out / "curve.tsv").write_text(CURVE_HEADER + "200\t30.0\t29.0\t5\n")
        (out / f"{BEST_NAME}.part0").write_bytes(b"PK")
        (out / f"{BEST_NAME}.part1").write_bytes(b"..")
        (out / "summary.json").write_text(json.dumps(
            {"split_sha256": "ab", "files": {BEST_NAME: {"parts": [f"{BEST_NAME}.part0"]}}}))
        assert out_files(out) == ["log.jsonl", "curve.tsv", "summary.json", f"{BEST_NAME}.part0",
                                  f"{BEST_NAME}.part1"]
        ours = {n: written_by_gpu_train(out / n) for n in out_files(out)}
        assert ours == {"log.jsonl": True, "curve.tsv": True, "summary.json": True, f"{BEST_NAME}.part0": True,
                        f"{BEST_NAME}.part1": False}


@pytest.mark.parametrize("name, real", [pytest.param("manifest.json", True, marks=pytest.mark.slow),
                                         ("bikes.mp4", False)])
def test_gpu_train_prepare_keeps_a_users_file(tmp_path, cache, name, real):
    """--prepare DIR writes the split's clips and manifest.json: a user's file of that name is refused in one line
    before any copy or decode; a byte-exact copy of the clip (an earlier --prepare's) is not refused. The command
    once as a real process (slow: see the module doc), the other case through its main in this process."""
    dest = tmp_path / "prep"
    dest.mkdir()
    (dest / name).write_text("mine\n")
    before = snapshot(tmp_path)
    if real:
        code, err = run("sfadacof.gpu_train", "--prepare", dest, cache=cache, timeout=120)
    else:
        code, err = run_main("sfadacof.gpu_train", "--prepare", dest)
    assert_refused(code, err, str(dest / name), "did not write")
    assert snapshot(tmp_path) == before


@pytest.mark.slow  # copies and decodes the footage twice (~4 s of CPU)
def test_gpu_train_prepare_reruns_over_its_own_files(tmp_path):
    """A second --prepare into the same folder replaces its own copies and manifest (recognised: same bytes as the
    footage's clip, a manifest with frame digests), exit 0, the same files."""
    dest = tmp_path / "prep"
    code, err = run_main("sfadacof.gpu_train", "--prepare", dest)
    assert code == 0, err
    first = snapshot(dest)
    code, err = run_main("sfadacof.gpu_train", "--prepare", dest)
    assert code == 0, err
    assert snapshot(dest) == first and "manifest.json" in first
