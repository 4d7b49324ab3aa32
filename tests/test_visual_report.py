"""--visual DIR (runtime.visual): the strips and heat maps hold what they claim, index.html carries the JSON report's
figures, the folder obeys the output rule, and the page renders in a real browser (Debian's chromium, headless).

Expected sizes and colours are computed here from the documented rule (runtime/README.md, "Visual report"): panels
of frames under 160 px wide are enlarged by the integer factor reaching 160, frames over 320 px shrink to 320;
margins 8, title band 24, label band 20, gaps 6, scale bar 92. Colours: matplotlib's published inferno table
(lib/matplotlib/_cm_listed.py, its entries 0, 32, ..., 224, 255 below, x 255 rounded) on a log scale of 4 decades
below the frame's max |Δ|; cyan for pixels set apart.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.accuracy import compare
from runtime.accuracy import main as accuracy_main
from runtime.infer import main as infer_main
from sfadacof.images import hwc_to_nchw, to_uint8
from tests.helpers import bikes_frames, crop, save_frames, tree_digest
from tests.test_infer import assert_keys_in_glossary

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py

INFERNO_TABLE = {0: (0, 0, 4), 32: (33, 12, 74), 64: (87, 16, 110), 96: (138, 34, 106), 128: (188, 55, 84),
                 160: (228, 90, 49), 192: (249, 142, 9), 224: (249, 203, 53), 255: (252, 255, 164)}
INFERNO_0, INFERNO_TOP = INFERNO_TABLE[0], INFERNO_TABLE[255]
CYAN = (0, 255, 255)
MARGIN, TITLE, LABEL, GAP, BAR = 8, 24, 20, 6, 92


def expected_panel(w: int, h: int) -> tuple[int, int]:
    if w > 320:
        return 320, round(h * 320 / w)
    k = math.ceil(160 / w) if w < 160 else 1
    return w * k, h * k


def expected_strip(w: int, h: int, panels: int) -> tuple[int, int]:
    pw, ph = expected_panel(w, h)
    return 2 * MARGIN + panels * pw + (panels - 1) * GAP + BAR, 2 * MARGIN + TITLE + LABEL + ph


def inferno(value: float, top: float) -> np.ndarray:
    """The expected colour of |Δ| = value on a bar whose top is `top`: position 1 + log10(value / top) / 4 on the
    table's index scale (0..255), linear between the listed entries."""
    t = min(max(1 + math.log10(value / top) / 4, 0.0), 1.0) * 255 if value > 0 else 0.0
    idx = sorted(INFERNO_TABLE)
    return np.array([np.interp(t, idx, [INFERNO_TABLE[i][c] for i in idx]) for c in range(3)])


def exit_code(main, argv: list[str]) -> int:
    """A command's exit status in-process (a UserError ends in SystemExit(2))."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def _report_from(folder: Path, frames, raw, ref, near, gt=None) -> dict:
    """A visual report of one entry made through the module's API (what the commands call per pair)."""
    from runtime.visual import VisualReport

    stats = compare(raw, ref, near)
    stats["passed"] = True
    vr = VisualReport(folder, command="test")
    vr.add("p", frames[0], frames[1], to_uint8(raw[0].transpose(1, 2, 0)), raw, ref, near, stats,
           ground_truth=gt, row={})
    vr.commit({"backend": {"backend": "x"}, "pairs": [{"name": "p", "check": stats}],
               "check": {"thresholds": {"precision": "fp32", "max_abs": 1e-3, "min_psnr": None}, "pairs": 1,
                         "failed": 0, "worst_max_abs": stats["max_abs"],
                         "worst_psnr_vs_torch": stats["psnr_vs_torch"], "passed": True}})
    return stats


def test_heat_map_colours_scale_and_set_apart_pixels(tmp_path):
    """Known differences, in 8-bit levels: columns 0-15 top/10, 16-31 top/100 (in channel 2; channel 0 only half:
    the map takes the largest channel), 32-63 top = 0.004 x 255, rows 56-63 of the left half none at all, one pixel
    set apart with 0.05. The bar's top is 0.004 x 255 (not the set-apart 0.05); each region has inferno's colour at
    its place on the log scale, the set-apart pixel is cyan -- in the full-resolution map and in the strip's (3x
    enlarged) heat panel, whose scale bar runs from the top colour to black."""
    f0, f1, f2 = (crop(f, w=64, h=64).astype(np.float32) / 255 for f in bikes_frames())
    ref = hwc_to_nchw(f1).astype(np.float64)
    raw = ref.copy()
    top = 0.004
    raw[0, 2, :, :16] += top / 10
    raw[0, 0, :, :16] += top / 20
    raw[0, 2, :, 16:32] += top / 100
    raw[0, 0, :, 16:32] += top / 200
    raw[0, :, :, 32:] += top
    raw[0, :, 56:, :32] = ref[0, :, 56:, :32]
    raw[0, :, 5, 40] += 0.05
    near = np.zeros((1, 1, 64, 64), bool)
    near[0, 0, 5, 40] = True
    stats = _report_from(tmp_path / "v", (f0, f2), raw, ref, near)
    assert stats["max_abs"] == pytest.approx(top, rel=1e-9)
    heat = rgb(tmp_path / "v" / "heat" / "0001_p.png")
    assert heat.shape == (64, 64, 3)
    regions = [((slice(0, 56), slice(0, 16)), top / 10), ((slice(0, 56), slice(16, 32)), top / 100),
               ((slice(56, 64), slice(0, 32)), 0.0), ((slice(0, 5), slice(32, 64)), top)]
    for (rows, cols), value in regions:
        assert (np.abs(heat[rows, cols] - inferno(value, top)) <= 1).all(), (rows, cols, heat[rows, cols][0])
    assert tuple(heat[5, 40]) == CYAN
    strip = rgb(tmp_path / "v" / "strips" / "0001_p.png")
    assert strip.shape[1::-1] == expected_strip(64, 64, 4)  # frame 0 | result | frame 2 | heat map
    pw, ph = expected_panel(64, 64)
    x0, y0 = MARGIN + 3 * (pw + GAP), MARGIN + TITLE + LABEL  # the heat panel, every pixel 3x3
    panel = strip[y0:y0 + ph, x0:x0 + pw]
    for (rows, cols), value in regions:
        big = panel[rows.start * 3:rows.stop * 3, cols.start * 3:cols.stop * 3]
        assert (np.abs(big - inferno(value, top)) <= 1).all(), (rows, cols)
    assert (panel[15:18, 120:123] == CYAN).all()  # pixel (5, 40)
    bar = strip[y0:y0 + ph, x0 + pw + GAP + 4]
    assert tuple(bar[0]) == INFERNO_TOP and tuple(bar[-1]) == INFERNO_0
    html = (tmp_path / "v" / "index.html").read_text()
    assert "1.02 levels" in html  # 0.004 x 255: the bar's top as the page states it


def test_downscaled_heat_map_keeps_a_single_hot_pixel(tmp_path):
    """Frames wider than 320 px shrink in the strip; the heat panel shows each block's max, so one hot pixel of a
    640x96 frame still shows in the top colour (an average would dilute it 4x), at its block, and nowhere else."""
    f = bikes_frames(count=1)[0][:96, :640].astype(np.float32) / 255
    ref = hwc_to_nchw(f).astype(np.float64)
    raw = ref.copy()
    raw[0, 1, 50, 333] += 0.01
    _report_from(tmp_path / "v", (f, f), raw, ref, None)
    strip = rgb(tmp_path / "v" / "strips" / "0001_p.png")
    assert strip.shape[1::-1] == expected_strip(640, 96, 4)
    pw, ph = expected_panel(640, 96)
    assert (pw, ph) == (320, 48)
    x0, y0 = MARGIN + 3 * (pw + GAP), MARGIN + TITLE + LABEL
    panel = strip[y0:y0 + ph, x0:x0 + pw]
    hot = np.argwhere((panel == INFERNO_TOP).all(axis=2))
    assert hot.tolist() == [[50 // 2, 333 // 2]]
    assert (rgb(tmp_path / "v" / "heat" / "0001_p.png")[50, 333] == INFERNO_TOP).all()


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory, ckpt):
    """runtime.infer --check --visual on a 32x32 pair and a 48x32 triplet (torch backend, seeded checkpoint; the
    smallest frames the model takes, enlarged 5x and 4x in the strips)."""
    tmp = tmp_path_factory.mktemp("visual")
    f0, f1, f2 = bikes_frames()
    pairs = tmp / "pairs"
    save_frames(pairs / "a", [crop(f0, w=32, h=32), crop(f2, w=32, h=32)], ["im1.png", "im3.png"])
    save_frames(pairs / "b", [crop(f, w=48, h=32) for f in (f0, f1, f2)], ["im1.png", "im2.png", "im3.png"])
    before = tree_digest(pairs)
    argv = [str(pairs), "-o", str(tmp / "out"), "--checkpoint", str(ckpt), "--backend", "torch", "--check",
            "--visual", str(tmp / "vis"), "--report", str(tmp / "r.json")]
    assert infer_main(argv) == 0
    assert tree_digest(pairs) == before
    return tmp, argv


def test_infer_check_writes_the_visual_report(cli_report):
    tmp, argv = cli_report
    vis = tmp / "vis"
    r = json.loads((tmp / "r.json").read_text())
    assert sorted(p.relative_to(vis).as_posix() for p in vis.rglob("*") if p.is_file()) == [
        "heat/0001_a.png", "heat/0002_b.png", "index.html", "strips/0001_a.png", "strips/0002_b.png"]
    assert r["visual"]["strips"] == ["strips/0001_a.png", "strips/0002_b.png"]
    assert_keys_in_glossary(r)
    assert [n for n in os.listdir(tmp) if n.startswith(".")] == []  # no staging folder left
    # sizes from the frame sizes: the pair has 4 panels, the triplet 5 (ground truth)
    assert Image.open(vis / "strips" / "0001_a.png").size == expected_strip(32, 32, 4) == (766, 220)
    assert Image.open(vis / "strips" / "0002_b.png").size == expected_strip(48, 32, 5) == (1092, 188)
    assert Image.open(vis / "heat" / "0001_a.png").size == (32, 32)
    assert Image.open(vis / "heat" / "0002_b.png").size == (48, 32)
    # the backend IS the reference here: |Δ| = 0 everywhere, the map inferno's 0 but for the pixels the check sets
    # apart at the op's discontinuities (cyan; the triplet has one)
    for name, row in zip(("0001_a", "0002_b"), r["pairs"]):
        heat = rgb(vis / "heat" / f"{name}.png")
        cyan = (heat == CYAN).all(axis=2)
        assert cyan.sum() == row["check"]["near_discontinuity_pixels"]
        assert (heat[~cyan] == INFERNO_0).all()
        assert Image.open(vis / "strips" / f"{name}.png").text.get("Software") == "sfadacof"
    html = (vis / "index.html").read_text()
    assert '<meta name="generator" content="sfadacof">' in html
    assert f'<p class="cmd">runtime.infer {" ".join(argv)}</p>' in html  # the command as given
    # the page's figures are the JSON report's, exactly
    values = dict(re.findall(r'data-key="(worst_psnr_vs_torch|worst_max_abs|psnr_mean)" data-value="([^"]+)"',
                             html))
    assert values == {"worst_psnr_vs_torch": "inf", "worst_max_abs": repr(r["check"]["worst_max_abs"]),
                      "psnr_mean": repr(r["summary"]["psnr_mean"])}
    assert re.findall(r'data-key="psnr" data-value="([^"]+)"', html) == [repr(r["pairs"][1]["psnr"])]
    assert re.findall(r'data-key="psnr_vs_torch" data-value="([^"]+)"', html) == ["inf", "inf"]
    assert f"{r['pairs'][1]['psnr']:.2f}" in html and 'id="verdict">PASSED<' in html
    # every image link is relative and exists
    links = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert sorted(links) == sorted(["strips/0001_a.png", "strips/0002_b.png", "heat/0001_a.png", "heat/0002_b.png"])
    assert all((vis / link).is_file() for link in links)
    assert "<svg" in html and "PSNR (dB)" in html and "45 dB" in html  # the plot, with the rule line


def test_visual_output_rule(cli_report, tmp_path, capsys):
    """DIR is an output: an earlier report of ours is replaced; a user's file in it, an unmarked index.html, DIR
    inside the input tree, and --visual without --check are refused in one line (exit 2), before any work."""
    tmp, argv = cli_report
    pairs = Path(argv[0])
    i = argv.index("--visual")

    def run(vis: Path, *extra: str, drop_check: bool = False) -> tuple[int, str]:
        a = [*argv[:i + 1], str(vis), *argv[i + 2:], *extra]
        a[a.index("-o") + 1] = str(tmp_path / "o")
        a[a.index("--report") + 1] = str(tmp_path / "r.json")
        if drop_check:
            a.remove("--check")
        code = exit_code(infer_main, a)
        return code, capsys.readouterr().err.strip()

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    code, err = run(user)
    assert code == 2 and len(err.splitlines()) == 1 and "--visual" in err and "notes.txt" in err
    assert (user / "notes.txt").read_text() == "keep me"
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "index.html").write_text("<html>a user's page</html>")
    code, err = run(fake)
    assert code == 2 and "index.html" in err and (fake / "index.html").read_text() == "<html>a user's page</html>"
    code, err = run(pairs / "vis")
    assert code == 2 and "inside the input folder" in err and not (pairs / "vis").exists()
    code, err = run(tmp_path / "v2", drop_check=True)
    assert code == 2 and "--check" in err and not (tmp_path / "v2").exists()
    code = exit_code(accuracy_main, [str(pairs), "--backend", "torch", "--visual", str(pairs / "a" / "v")])
    assert code == 2 and "inside the input folder" in capsys.readouterr().err
    # an earlier report of ours (a copy of the module's) is replaced as a whole
    ours = tmp_path / "ours"
    shutil.copytree(tmp / "vis", ours)
    (ours / "strips" / "0009_gone.png").write_bytes((ours / "strips" / "0001_a.png").read_bytes())
    code, err = run(ours)
    assert code == 0, err
    assert not (ours / "strips" / "0009_gone.png").exists() and (ours / "strips" / "0002_b.png").is_file()


def test_index_html_renders_in_headless_chromium(cli_report, tmp_path):
    """The page as a user opens it (file://): a real screenshot, not blank, with the strips' heat panels drawn
    (inferno's black, 160x160 + 192x128 pixels of it) and the verdict in its green."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian package `chromium`; .ci/run installs it)")
    tmp, _ = cli_report
    shot = tmp_path / "shot.png"
    env = {**os.environ, "HOME": str(tmp_path)}  # its caches and config in tmp, never the user's
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1280,2400",
                           (tmp / "vis" / "index.html").as_uri()],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    px = rgb(shot).reshape(-1, 3)
    assert px.std() > 20  # not a blank page
    count = lambda c: int(np.all(px == c, axis=1).sum())  # noqa: E731
    assert count(INFERNO_0) >= 160 * 160 + 192 * 128 - 4 * 4  # both heat panels (one cyan 4x4 pixel)
    assert count(CYAN) >= 4 * 4  # the triplet's pixel set apart, enlarged 4x
    assert count((10, 122, 47)) > 100  # the PASSED verdict's colour


def test_video_strips_are_the_first_and_the_worst(tmp_path):
    """On a video only the first interpolated frame and the `keep` worst (lowest PSNR vs PyTorch) get a strip; the
    plot and the table still hold every frame. 12 frames, constant differences chosen so that 5, 9 and 11 are the
    three worst: those and frame 1 remain, and no file of a dropped strip is left in the folder."""
    from runtime.visual import VisualReport

    f = bikes_frames(count=1)[0][:64, :64].astype(np.float32) / 255
    ref = hwc_to_nchw(f).astype(np.float64)
    diffs = {5: 0.02, 9: 0.03, 11: 0.025, 2: 0.01}  # the rest: 0.001; frame 1: 0.0001 (the best)
    vr = VisualReport(tmp_path / "v", command="test", unit="frame", keep=3)
    rows = []
    for n in range(1, 13):
        raw = ref + diffs.get(n, 0.0001 if n == 1 else 0.001)
        stats = compare(raw, ref)
        stats["passed"] = True
        rows.append(stats)
        vr.add(f"interpolated frame {n}", f, f, to_uint8(f), raw, ref, None, stats)
    vr.commit({"backend": {"backend": "x"}, "checked_frames": rows, "frames_in": 13, "fps_in": 25.0,
               "frames_out": 26, "fps_out": 50.0,
               "check": {"thresholds": {"precision": "fp16", "max_abs": None, "min_psnr": 45.0}, "pairs": 12,
                         "failed": 0, "worst_max_abs": 0.03, "worst_psnr_vs_torch": rows[8]["psnr_vs_torch"],
                         "passed": True}})
    assert sorted(p.name for p in (tmp_path / "v" / "strips").iterdir()) == [
        f"{n:04d}_interpolated_frame_{n}.png" for n in (1, 5, 9, 11)]
    assert sorted(p.name for p in (tmp_path / "v" / "heat").iterdir()) == [
        f"{n:04d}_interpolated_frame_{n}.png" for n in (1, 5, 9, 11)]
    html = (tmp_path / "v" / "index.html").read_text()
    assert len(re.findall(r"<circle [^>]*><title>#\d+ interpolated frame \d+: vs PyTorch", html)) == 12
    assert "the first and the 3 worst of the 12 interpolated frames" in html
    assert "bound 45 dB (fp16)" in html  # the rule line of a reduced-precision check


@pytest.fixture(scope="module")
def video_report(tmp_path_factory, ckpt):
    from tests.helpers import write_video

    tmp = tmp_path_factory.mktemp("visual_video")
    write_video(tmp / "v.mp4", [crop(f, w=32, h=32) for f in bikes_frames(count=3, start=40)])
    argv = [str(tmp / "v.mp4"), "-o", str(tmp / "out.mp4"), "--checkpoint", str(ckpt), "--backend", "torch",
            "--check", "--visual", str(tmp / "vis"), "--report", str(tmp / "r.json")]
    assert infer_main(argv) == 0
    return tmp


def test_infer_check_on_a_video(video_report):
    """--check on a video judges every interpolated frame (3 input frames, --factor 2: 2 of them) and --visual plots
    PSNR per interpolated frame, with a strip for each (fewer than the first + 8 worst)."""
    tmp = video_report
    r = json.loads((tmp / "r.json").read_text())
    assert r["interpolated"] == 2 and r["check"]["pairs"] == 2 and len(r["checked_frames"]) == 2
    assert r["check"]["passed"] and r["checked_frames"][0]["max_abs"] == 0.0  # torch against itself
    assert_keys_in_glossary(r)
    vis = tmp / "vis"
    strips = sorted((vis / "strips").iterdir())
    assert [p.name for p in strips] == [f"{n:04d}_interpolated_frame_{n}.png" for n in (1, 2)]
    assert all(Image.open(p).size == expected_strip(32, 32, 4) for p in strips)
    html = (vis / "index.html").read_text()
    assert "PSNR per interpolated frame" in html
    assert len(re.findall(r"<circle [^>]*><title>#\d+ interpolated frame \d+: vs PyTorch inf dB", html)) == 2
    assert re.findall(r'data-key="psnr_vs_torch" data-value="([^"]+)"', html) == ["inf"] * 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_visual_report_leaves_nothing(tmp_path, ckpt, sig):
    """Ctrl-C (or SIGTERM) after the first strip is drawn: exit 128+N, one line, and neither DIR nor its hidden
    staging folder is left (a real process; the strips are staged beside DIR until the end)."""
    import sys
    import time

    from tests.test_interrupt import REPO, env_with, write_pairs

    pairs, work = write_pairs(tmp_path / "pairs", 6, 64), tmp_path / "w"
    work.mkdir()
    vis = work / "vis"
    argv = ["runtime.infer", pairs, "-o", work / "out", "--checkpoint", ckpt, "--backend", "torch", "--check",
            "--visual", vis]
    p = subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=REPO, env=env_with(None),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not any(work.glob(".vis.sfa*/strips/*.png")):  # the first strip is drawn, in the staging folder
            assert p.poll() is None, p.stderr.read()[-2000:]
            assert time.monotonic() - t0 < 120, "no strip drawn in 120 s"
            time.sleep(0.02)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    lines = err.strip().splitlines()
    assert p.returncode == 128 + sig and lines[-1].startswith("interrupted"), lines[-5:]
    assert not any("Traceback" in line for line in lines)
    assert not vis.exists() and [q.name for q in work.iterdir() if q.name.startswith(".")] == []


def test_heat_map_of_a_real_backend(tmp_path, ckpt, ckpt_exports):
    """ONNX Runtime on ckpt's standard-op graph really differs from PyTorch (~1e-6): the heat map is the log-scale
    colour of |ORT - PyTorch| computed here with onnxruntime and the model itself (pixels set apart excepted, cyan),
    its top is the report's max_abs, and a bound it breaks (--max-abs 1e-9) shows as FAILED, the point ringed red."""
    import onnxruntime as ort
    import torch

    from tests.helpers import seeded_model, torch_forward

    frames = [crop(f, w=96, h=64) for f in bikes_frames()]
    pairs = save_frames(tmp_path / "pairs" / "t", frames, ["im1.png", "im2.png", "im3.png"]).parent
    vis, rep = tmp_path / "vis", tmp_path / "r.json"
    code = exit_code(accuracy_main, [str(pairs), "--backend", "ort", "--onnx", str(ckpt_exports["onnx"]),
                                     "--checkpoint", str(ckpt), "--max-abs", "1e-9", "--visual", str(vis),
                                     "--report", str(rep)])
    assert code == 1
    c = json.loads(rep.read_text())["pairs"][0]["check"]
    assert not c["passed"] and 0 < c["max_abs"] < 1e-3
    x0, x2 = (hwc_to_nchw(f.astype(np.float32) / 255) for f in (frames[0], frames[2]))
    sess = ort.InferenceSession(str(ckpt_exports["onnx"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = sess.run(None, {names[0]: x0, names[1]: x2})[0].astype(np.float64)
    torch.manual_seed(0)
    ref = torch_forward(seeded_model(), x0, x2).astype(np.float64)
    levels = np.abs(out - ref)[0].max(axis=0) * 255
    heat = rgb(vis / "heat" / "0001_t.png")
    cyan = (heat == CYAN).all(axis=2)
    assert cyan.sum() == c.get("near_discontinuity_pixels", 0)
    top = c["max_abs"] * 255
    assert levels[~cyan].max() == pytest.approx(top, rel=1e-3)
    expected = np.array([inferno(v, top) for v in levels[~cyan]])
    # another ORT session (thread count, summation order) may move |Δ| ~1e-8: colours within 3 of 255
    assert np.percentile(np.abs(heat[~cyan] - expected).max(axis=1), 99) <= 3
    assert (heat[~cyan] != INFERNO_0).any(axis=1).mean() > 0.5  # structure, not a black map
    html = (vis / "index.html").read_text()
    assert 'id="verdict">FAILED<' in html and 'stroke="#c0191f" stroke-width="2"' in html
    assert f"({top:.3g} levels)" in html
