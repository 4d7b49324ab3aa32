"""The visual report of an accuracy check: `--visual DIR` of `runtime.infer --check` and `runtime.accuracy`.

    DIR/index.html            the JSON report's figures, the PSNR plot (inline SVG) and every strip, in order
    DIR/strips/NNN_NAME.png   frame 0 | result | frame 2 | ground truth (triplets) | heat map of |result - PyTorch|
    DIR/heat/NNN_NAME.png     that heat map at the frame's full resolution

Self-contained: relative links only, no script, no web font, so it works opened from disk (file://) and copied
elsewhere as a folder.

Heat map: per pixel the largest of the three channels' |raw backend output - raw PyTorch output| (both unclamped,
the differences runtime.accuracy judges), in 8-bit levels (x 255). Each map has its own scale: the top colour is that
frame's max |Δ| over the pixels the check judges (the report's `max_abs` x 255), printed at the top of the bar
beside it; a frame identical to PyTorch's is black with a bar from 0 to 0. Pixels the check sets
apart (the op's discontinuities, runtime.accuracy) are cyan, outside the colour map, and their own max is in the
title. The colour map is inferno (matplotlib's perceptually uniform map) from 9 of its colours, linear between them,
on a logarithmic scale of DECADES (4) decades below the max: the top colour is the max, each tick a tenth of the one
above, black is 1/10^4 of the max or less -- a linear scale shows the few largest differences of a reduced-precision
run and leaves everything else black.

Strip size: every panel is the frame scaled to PANEL_MAX_W (320 px) wide when the frame is wider (frames: Lanczos;
heat map: each shown pixel is the MAX of the frame pixels it covers, so a single hot pixel never averages away),
and frames narrower than PANEL_MIN_W (160 px) are enlarged by the integer factor that reaches it (nearest
neighbour: pixels stay pixels). strip_size() gives the exact size; the page says the scale.

Video (runtime.infer --check on a video): every interpolated frame is checked and plotted; strips are kept for the
first and the VIDEO_STRIPS (8) worst (lowest PSNR vs PyTorch, then largest max|Δ|), shown in time order. Pairs: a
strip each up to 100 pairs; beyond, the first and the PAIR_STRIPS (99) worst, in order (every pair is still plotted
and listed).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sfadacof.images import to_uint8
from sfadacof.outputs import StagedFolder, html_is_ours, png_info, png_is_ours

from .visual_html import fmt_db, render_index

PANEL_MAX_W = 320
PANEL_MIN_W = 160
MARGIN, GAP, TITLE_H, LABEL_H, BAR_W = 8, 6, 24, 20, 92
VIDEO_STRIPS = 8
PAIR_STRIPS = 99  # past 100 pairs (a whole test set): the first and the 99 worst, so the page stays a page
# matplotlib's inferno (_cm_listed.py), its entries 0, 32, 64, ..., 224 and 255 (x 255, rounded): the colour map,
# linear between them on the table's own positions
INFERNO_AT = np.array([0, 32, 64, 96, 128, 160, 192, 224, 255], dtype=np.float64) / 255.0
INFERNO = np.array([(0, 0, 4), (33, 12, 74), (87, 16, 110), (138, 34, 106), (188, 55, 84), (228, 90, 49),
                    (249, 142, 9), (249, 203, 53), (252, 255, 164)], dtype=np.float64)
SET_APART = (0, 255, 255)  # cyan: not a colour of inferno
DECADES = 4  # the heat map's logarithmic scale: from the frame's max |Δ| down to 1/10^4 of it


def colormap(t: np.ndarray) -> np.ndarray:
    """t in [0, 1] (any shape) -> uint8 RGB (shape + (3,)), inferno."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    return np.rint(np.stack([np.interp(t, INFERNO_AT, INFERNO[:, c]) for c in range(3)], axis=-1)).astype(np.uint8)


def log_position(levels: np.ndarray, top: float) -> np.ndarray:
    """Where |Δ| sits on the bar: 1 at `top`, 1 - k/DECADES at top/10^k, 0 at or below top/10^DECADES (and 0)."""
    if top <= 0:
        return np.zeros_like(levels, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.clip(1.0 + np.log10(np.asarray(levels, dtype=np.float64) / top) / DECADES, 0.0, 1.0)


def difference_levels(raw: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float x2 -> (H, W) float64: max over channels of |raw - ref| x 255 (8-bit levels)."""
    return np.abs(raw[0].astype(np.float64) - ref[0].astype(np.float64)).max(axis=0) * 255.0


def heat_scale(levels: np.ndarray, near: np.ndarray | None) -> float:
    """The bar's top: max |Δ| (levels) over the pixels the check judges (not those set apart); 0 for none."""
    judged = levels if near is None else levels[~near]
    return float(judged.max()) if judged.size else 0.0


def heat_rgb(levels: np.ndarray, top: float, near: np.ndarray | None = None) -> np.ndarray:
    """(H, W) levels -> (H, W, 3) uint8: colormap(log_position(levels, top)) (all black when top is 0), set-apart
    pixels cyan."""
    rgb = colormap(log_position(levels, top))
    if near is not None:
        rgb[near] = SET_APART
    return rgb


def panel_size(width: int, height: int) -> tuple[int, int]:
    """The size of one panel of the strip for frames of width x height (see the module doc)."""
    if width > PANEL_MAX_W:
        return PANEL_MAX_W, max(1, round(height * PANEL_MAX_W / width))
    k = -(-PANEL_MIN_W // width) if width < PANEL_MIN_W else 1
    return width * k, height * k


def strip_size(width: int, height: int, panels: int) -> tuple[int, int]:
    """(width, height) of a strip of `panels` panels (the heat map included) and the scale bar."""
    pw, ph = panel_size(width, height)
    return 2 * MARGIN + panels * pw + (panels - 1) * GAP + BAR_W, 2 * MARGIN + TITLE_H + LABEL_H + ph


def _block_reduce(a: np.ndarray, ph: int, pw: int, reduce) -> np.ndarray:
    """(H, W) -> (ph, pw): enlarged by repetition, or each output pixel the `reduce` (max, or) of its block."""
    h, w = a.shape
    if ph >= h:
        return np.repeat(np.repeat(a, ph // h, axis=0), pw // w, axis=1)
    rows = (np.arange(ph) * h) // ph
    cols = (np.arange(pw) * w) // pw
    return reduce.reduceat(reduce.reduceat(a, rows, axis=0), cols, axis=1)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's own font (no system fonts needed)


def _fit(draw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def fmt_levels(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def render_strip(title: str, panels: list[tuple[str, np.ndarray]], levels: np.ndarray, top: float,
                 near: np.ndarray | None, heat_label: str):
    """A PIL image: the uint8 (H, W, 3) `panels` then the heat map of `levels` and its scale bar."""
    from PIL import Image, ImageDraw

    h, w = levels.shape
    pw, ph = panel_size(w, h)
    n = len(panels) + 1
    size = strip_size(w, h, n)
    im = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(im)
    title_font, font = _font(14), _font(12)
    draw.text((MARGIN, MARGIN + 3), _fit(draw, title, title_font, size[0] - 2 * MARGIN), fill=(0, 0, 0),
              font=title_font)
    y_img = MARGIN + TITLE_H + LABEL_H
    shrink = pw < w
    for i, (label, rgb8) in enumerate(panels):
        x = MARGIN + i * (pw + GAP)
        draw.text((x, MARGIN + TITLE_H + 3), _fit(draw, label, font, pw), fill=(40, 40, 40), font=font)
        im.paste(Image.fromarray(rgb8).resize((pw, ph), Image.Resampling.LANCZOS if shrink
                                               else Image.Resampling.NEAREST), (x, y_img))
    x = MARGIN + (n - 1) * (pw + GAP)
    draw.text((x, MARGIN + TITLE_H + 3), _fit(draw, heat_label, font, pw), fill=(40, 40, 40), font=font)
    shown = _block_reduce(levels, ph, pw, np.maximum)
    shown_near = None if near is None else _block_reduce(near, ph, pw, np.logical_or)
    im.paste(Image.fromarray(heat_rgb(shown, top, shown_near)), (x, y_img))
    # the scale bar: top colour = `top` levels, a tick per decade below it, black = top/10^DECADES or less (or 0)
    bx = x + pw + GAP
    ramp = colormap(np.linspace(1.0, 0.0, ph) if top > 0 else np.zeros(ph))
    im.paste(Image.fromarray(np.repeat(ramp[:, None, :], 14, axis=1)), (bx, y_img))
    draw.rectangle((bx - 1, y_img - 1, bx + 14, y_img + ph), outline=(90, 90, 90))
    draw.text((bx, MARGIN + TITLE_H + 3), "levels, log", fill=(40, 40, 40), font=font)
    if top > 0:
        every = 1 if ph >= 14 * (DECADES + 1) else DECADES  # room for a label per decade, or the ends only
        ticks = [(k / DECADES, fmt_levels(top / 10 ** k)) for k in range(0, DECADES, every)]
        ticks.append((1.0, "<=" + fmt_levels(top / 10 ** DECADES)))
    else:
        ticks = [(0.0, "0"), (1.0, "0")]
    for frac, label in ticks:
        ty = y_img + round(frac * (ph - 1))
        draw.line((bx + 14, ty, bx + 18, ty), fill=(0, 0, 0))
        draw.text((bx + 20, min(max(ty - 6, y_img - 4), y_img + ph - 10)), label, fill=(0, 0, 0), font=font)
    return im


@dataclass
class _Entry:
    number: int
    name: str
    stats: dict
    row: dict | None = None
    files: dict[str, str] = field(default_factory=dict)  # "strip"/"heat" -> path relative to the folder
    size: tuple[int, int] = (0, 0)  # the strip's


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "pair"


def visual_report_is_ours(folder: Path) -> bool:
    """An earlier --visual DIR of this project: every file in it is our index.html or one of our PNGs."""
    files = [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
    return any(p.name == "index.html" for p in files) and all(
        not p.is_symlink() and (html_is_ours(p) if p.suffix == ".html" else png_is_ours(p)) for p in files)


class VisualReport:
    """Collects strips while a check runs (written into a hidden staging folder), then `commit(report)` writes
    index.html and renames the folder into place; `abort()` (or leaving the `with` block by an exception, Ctrl-C
    included) removes the staging folder. The caller has run check_outputs on `folder` (whole, visual_report_is_ours).

    `keep`: None = a strip for every entry; an int = the first and the `keep` worst."""

    def __init__(self, folder: Path, *, command: str, unit: str = "pair", keep: int | None = None) -> None:
        self.folder = Path(folder)
        self.command, self.unit, self.keep = command, unit, keep
        self.stage = StagedFolder(self.folder, replace=True)
        for sub in ("strips", "heat"):
            self.stage.path(sub).mkdir()
        self.entries: list[_Entry] = []  # every checked entry: the plot
        self.kept: list[_Entry] = []  # those with a strip, in order
        self.size: tuple[int, int] | None = None
        self.panel: tuple[int, int] | None = None

    def __enter__(self) -> "VisualReport":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def abort(self) -> None:
        self.stage.abort()

    @staticmethod
    def _badness(e: _Entry) -> tuple[float, float]:
        return (-e.stats["psnr_vs_torch"], e.stats["max_abs"])

    def _make_room(self, e: _Entry) -> bool:
        """Whether `e` gets a strip (the first always; else while it is among the `keep` worst)."""
        if self.keep is None or e.number == 1:
            return True
        worst = [k for k in self.kept if k.number != 1]
        if len(worst) < self.keep:
            return True
        best = min(worst, key=self._badness)
        if not self._badness(e) > self._badness(best):
            return False
        self.kept.remove(best)
        for rel in best.files.values():
            self.stage.path(rel).unlink()
        best.files.clear()
        return True

    def add(self, name: str, frame0: np.ndarray, frame2: np.ndarray, result8: np.ndarray, raw: np.ndarray,
            ref: np.ndarray, near: np.ndarray | None, stats: dict, ground_truth: np.ndarray | None = None,
            row: dict | None = None) -> None:
        """One checked entry. frame0/frame2/ground_truth: (H, W, 3) float in [0, 1] or uint8; result8: the written
        8-bit result; raw/ref: the backend's and PyTorch's raw (1, 3, H, W) outputs; near: (1, 1, H, W) bool of
        pixels set apart, or None; stats: the checker's row; row: the report's row (PSNR/SSIM vs ground truth)."""
        from PIL import Image

        e = _Entry(len(self.entries) + 1, name, stats, row)
        self.entries.append(e)
        if not self._make_room(e):
            return
        u8 = [f if f.dtype == np.uint8 else to_uint8(f) for f in (frame0, frame2)]
        panels = [("frame 0", u8[0]), ("result", result8), ("frame 2", u8[1])]
        if ground_truth is not None:
            panels.append(("ground truth", ground_truth if ground_truth.dtype == np.uint8 else to_uint8(ground_truth)))
        levels = difference_levels(raw, ref)
        mask = None if near is None else np.asarray(near)[0, 0].astype(bool)
        top = heat_scale(levels, mask)
        psnr = stats["psnr_vs_torch"]
        title = f"#{e.number} {name}   " + ("identical to PyTorch (PSNR inf)" if math.isinf(psnr) and top == 0 else
                                            f"PSNR vs PyTorch {fmt_db(psnr)} dB   max |d| {fmt_levels(top)} levels")
        if mask is not None and mask.any():
            title += f"   {int(mask.sum())} px set apart (cyan), max {fmt_levels(float(levels[mask].max()))}"
        strip = render_strip(title, panels, levels, top, mask, "|result - PyTorch|")
        stem = f"{e.number:04d}_{_safe(name)}"
        e.files = {"strip": f"strips/{stem}.png", "heat": f"heat/{stem}.png"}
        e.size = strip.size
        strip.save(self.stage.path(e.files["strip"]), format="PNG", pnginfo=png_info())
        Image.fromarray(heat_rgb(levels, top, mask)).save(self.stage.path(e.files["heat"]), format="PNG",
                                                          pnginfo=png_info())
        e.stats = {**stats, "heat_top_levels": top}
        self.size, self.panel = (levels.shape[1], levels.shape[0]), panel_size(levels.shape[1], levels.shape[0])
        self.kept.append(e)
        self.kept.sort(key=lambda k: k.number)

    def enlarged(self) -> bool:
        return self.size is not None and self.panel[0] > self.size[0]

    def scale_note(self) -> str:
        """How the strips show the frames (for the page)."""
        (w, h), (pw, ph) = self.size or (0, 0), self.panel or (0, 0)
        if pw == w:
            how = "shown at their size"
        elif pw > w:
            how = f"enlarged {pw // w}x (nearest neighbour: frames under {PANEL_MIN_W} px wide)"
        else:
            how = (f"downscaled to {pw}x{ph} (frames wider than {PANEL_MAX_W} px; frames: Lanczos, heat map: each "
                   "shown pixel the max of the pixels it covers)")
        return f"Frames {w}x{h}, {how}"

    def summary(self) -> dict:
        """What the JSON report says of the visual report (key "visual")."""
        return {"folder": self.folder, "index": self.folder / "index.html",
                "strips": [e.files["strip"] for e in self.kept], f"{self.unit}s_checked": len(self.entries)}

    def commit(self, report: dict) -> Path:
        """Write index.html from the JSON report `report`, then put the folder in place; returns index.html."""
        text = render_index(self, report)
        self.stage.path("index.html").write_text(text, encoding="utf-8")
        self.stage.commit()
        return self.folder / "index.html"

