"""index.html of a visual report (runtime.visual, which calls it): the JSON report's figures, the PSNR plot, the strips.

One page, no script, no external file but the strips and heat maps beside it (relative links): it opens from disk.
The PSNR plot is an inline SVG written here (crisp at any zoom, no plotting library). Every figure taken from the
JSON report carries it unrounded in a `data-value` attribute (next to the rounded text), so a reader or a test can
match the page to the report exactly.
"""

from __future__ import annotations

import math
from html import escape

from sfadacof.outputs import HTML_MARK


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;
max-width:1400px;padding:0 16px;color:#1b1b1b;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}.cmd{color:#555;margin:0 0 14px;font-family:ui-monospace,monospace}
.pass{color:#0a7a2f}.fail{color:#c0191f}table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600;white-space:nowrap}.small{font-size:12px;max-width:900px}td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;max-width:1100px}img.strip{max-width:100%;height:auto;border:1px solid #ddd;background:#fff}
img.px{image-rendering:pixelated}svg{background:#fff;border:1px solid #ddd;max-width:100%;height:auto}
"""


def fmt_db(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def _v(x) -> str:
    """A figure's exact value for data-value ("inf" for an infinite PSNR)."""
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return repr(x) if isinstance(x, float) else str(x)


def _td(key: str, value, text: str | None = None) -> str:
    shown = text if text is not None else (fmt_db(value) if isinstance(value, float) else str(value))
    return f'<td class="n" data-key="{escape(key)}" data-value="{escape(_v(value))}">{escape(shown)}</td>'


def _g(x: float) -> str:
    return f"{x:.3g}"


def _psnr(x) -> float:
    return math.inf if x == "inf" else float(x)


def psnr_svg(names: list[str], series: list[tuple[str, list[float | None], str]], rule: tuple[float, str, str],
             x_label: str, failed: list[bool]) -> str:
    """A line plot of PSNR (dB) per entry: `series` = (legend, values (None: absent, inf: identical), colour),
    `rule` = (dB, label, colour) drawn dashed; failed entries ringed red. Infinite values sit on a band above the
    axis labelled "identical"."""
    n = len(names)
    w, h, left, right, top, bottom = 960, 350, 64, 24, 50, 40
    finite = [v for _, vals, _ in series for v in vals if v is not None and math.isfinite(v)]
    lo = min(finite + [rule[0]]) - 3
    hi = max(finite + [rule[0]]) + 3
    step = next(s for s in (1, 2, 5, 10, 20, 50) if (hi - lo) / s <= 8)
    lo, hi = math.floor(lo / step) * step, math.ceil(hi / step) * step
    inf_band = any(v is not None and math.isinf(v) for _, vals, _ in series for v in vals)
    plot_top = top + (26 if inf_band else 0)
    pw, ph = w - left - right, h - plot_top - bottom

    def x(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + 8 if math.isinf(v) else plot_top + ph * (hi - v) / (hi - lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'role="img" aria-label="PSNR per {escape(x_label)}" font-family="sans-serif" font-size="12">']
    k = lo
    while k <= hi + 1e-9:
        yy = y(k)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{w - right}" y2="{yy:.1f}" stroke="#e6e6e6"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{k:g}</text>')
        k += step
    if inf_band:
        out.append(f'<text x="{left - 6}" y="{top + 12}" text-anchor="end">∞</text>'
                   f'<text x="{left + 4}" y="{top - 4}" fill="#666">identical to PyTorch (PSNR ∞)</text>'
                   f'<line x1="{left}" y1="{plot_top - 6}" x2="{w - right}" y2="{plot_top - 6}" stroke="#bbb" '
                   'stroke-dasharray="2,3"/>')
    out.append(f'<rect x="{left}" y="{plot_top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    every = max(1, math.ceil(n / 20))
    for i in range(0, n, every):
        out.append(f'<line x1="{x(i):.1f}" y1="{plot_top + ph}" x2="{x(i):.1f}" y2="{plot_top + ph + 4}" '
                   f'stroke="#888"/><text x="{x(i):.1f}" y="{plot_top + ph + 17}" text-anchor="middle">{i + 1}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 10}" text-anchor="middle">{escape(x_label)} (#)</text>'
               f'<text transform="translate(16 {plot_top + ph / 2}) rotate(-90)" text-anchor="middle">'
               'PSNR (dB)</text>')
    ry = y(rule[0])
    out.append(f'<line x1="{left}" y1="{ry:.1f}" x2="{w - right}" y2="{ry:.1f}" stroke="{rule[2]}" '
               f'stroke-width="1.5" stroke-dasharray="7,4"/><text x="{w - right - 4}" y="{ry - 5:.1f}" '
               f'text-anchor="end" fill="{rule[2]}" stroke="#fff" stroke-width="3" paint-order="stroke">'
               f'{escape(rule[1])}</text>')
    lx = left
    for legend, vals, colour in series:
        # lines join neighbours with finite values only (an infinite PSNR is a point on the band, not a slope)
        runs, run = [], []
        for i, v in enumerate(vals):
            if v is None or math.isinf(v):
                runs, run = runs + [run], []
            else:
                run.append((x(i), y(v)))
        for pts in runs + [run]:
            if len(pts) > 1 and n <= 400:
                out.append('<polyline fill="none" stroke="{}" stroke-width="1.3" points="{}"/>'.format(
                    colour, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)))
        for i, v in enumerate(vals):
            if v is None:
                continue
            ring = ' stroke="#c0191f" stroke-width="2"' if failed[i] else ""
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{3.5 if n <= 200 else 2}" fill="{colour}"'
                       f'{ring}><title>#{i + 1} {escape(names[i])}: {escape(legend)} {fmt_db(v)} dB</title>'
                       '</circle>')
        out.append(f'<circle cx="{lx + 5}" cy="16" r="4" fill="{colour}"/>'
                   f'<text x="{lx + 13}" y="20">{escape(legend)}</text>')
        lx += 24 + 7 * len(legend)
    out.append("</svg>")
    return "".join(out)


def _row(name: str, cells: str) -> str:
    return f"<tr><th>{escape(name)}</th>{cells}</tr>"


def _backend_text(d: dict) -> str:
    main = d.get("backend", "?")
    extra = ", ".join(f"{k} {v}" for k, v in d.items() if k != "backend" and not isinstance(v, (dict, list)))
    return f"{main} ({extra})" if extra else str(main)


def render_index(vr, report: dict) -> str:
    """The page for VisualReport `vr` and its JSON report (runtime.infer / runtime.accuracy / video --check)."""
    check = report["check"]
    th = check["thresholds"]
    video = vr.unit != "pair"
    rows = report.get("checked_frames") if video else [r["check"] for r in report["pairs"]]
    names = [e.name for e in vr.entries]
    gt_rows = [None] * len(rows) if video else [r if "psnr" in r else None for r in report["pairs"]]
    verdict = "PASSED" if check["passed"] else "FAILED"
    cls = "pass" if check["passed"] else "fail"
    psnrs = [_psnr(r["psnr_vs_torch"]) for r in rows]
    finite = [p for p in psnrs if math.isfinite(p)]
    identical = len(psnrs) - len(finite)
    mean = sum(finite) / len(finite) if finite else math.inf
    bound = []
    if th.get("max_abs") is not None:
        bound.append(f"max |Δ| ≤ {th['max_abs']:g}")
    if th.get("min_psnr") is not None:
        bound.append(f"PSNR vs PyTorch ≥ {th['min_psnr']:g} dB")
    head = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', HTML_MARK,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Accuracy check {verdict}: {escape(_backend_text(report['backend']))}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<h1>Accuracy check: <span class="{cls}" id="verdict">{verdict}</span></h1>',
        f'<p class="cmd">{escape(vr.command)}</p>',
        '<table class="figures">',
        _row("backend", f'<td colspan="2" class="small">{escape(_backend_text(report["backend"]))}</td>'),
        _row("reference", f'<td colspan="2" class="small">{escape(_backend_text(check.get("reference", {})))}</td>'),
        _row("precision", f'<td data-key="precision">{escape(str(th.get("precision")))}</td><td></td>'),
        _row("bound", f"<td colspan=\"2\">{escape(' and '.join(bound) or 'none')}</td>"),
        _row("verdict", f'<td colspan="2" class="{cls}">{verdict}: '
             + escape(check.get("reason") or f"all {check['pairs']} {vr.unit}(s) within the bound") + "</td>"),
        _row(f"{vr.unit}s checked", _td("pairs", check["pairs"]) + f"<td>{check['failed']} failed</td>"),
        _row("PSNR vs PyTorch, min", _td("worst_psnr_vs_torch", _psnr(check["worst_psnr_vs_torch"]))
             + "<td>dB</td>"),
        _row("PSNR vs PyTorch, mean", _td("mean_psnr_vs_torch", mean) + "<td>dB"
             + ("" if not identical else f", over the {len(finite)} {vr.unit}(s) that differ; {identical} identical "
                "to PyTorch (∞)" if finite else f": all {identical} identical to PyTorch") + "</td>"),
        _row("max |Δ|, worst", _td("worst_max_abs", check["worst_max_abs"], _g(check["worst_max_abs"]))
             + f"<td>{check['worst_max_abs'] * 255:.3g} levels of 255</td>"),
    ]
    s = report.get("summary", {})
    if "psnr_mean" in s:
        head.append(_row(f"vs ground truth ({s['triplets']} triplets)", _td("psnr_mean", s["psnr_mean"])
                         + f"<td>dB PSNR mean; SSIM mean {s['ssim_mean']:.4f}</td>"))
    if video:
        head.append(_row("video", f"<td colspan=\"2\">{report['frames_in']} frames @ {report['fps_in']:g} fps → "
                                  f"{report['frames_out']} frames @ {report['fps_out']:g} fps</td>"))
    head.append("</table>")

    if th.get("min_psnr") is not None:
        rule = (float(th["min_psnr"]), f"bound {th['min_psnr']:g} dB ({th['precision']})", "#c0191f")
    else:  # fp32's bound is max|Δ|: the reduced-precision bound for scale, in grey
        rule = (45.0, "45 dB: the fp16/bf16 bound (this run's: max |Δ|)", "#888")
    series = [("vs PyTorch", psnrs, "#1f5fbf")]
    if any(g is not None for g in gt_rows):
        series.append(("vs ground truth", [min(_psnr(g["psnr"]), 1e9) if g else None for g in gt_rows], "#e07b00"))
    x_label = "interpolated frame" if video else "pair"
    body = [f"<h2>PSNR per {x_label}</h2>",
            psnr_svg(names, series, rule, x_label, [not r["passed"] for r in rows])]

    # all entries, one line each; the number links to the strip where there is one
    linked = {e.number: e for e in vr.kept}
    body.append(f"<h2>Every {x_label}</h2><table class=\"entries\"><tr><th>#</th><th>{x_label}</th><th>max |Δ|</th>"
                "<th>mean |Δ|</th><th>PSNR vs PyTorch</th><th>Δ 8-bit</th><th>set apart</th>"
                + ("" if video else "<th>PSNR vs GT</th><th>SSIM vs GT</th>") + "<th>ok</th></tr>")
    for i, (name, r) in enumerate(zip(names, rows), start=1):
        num = f'<a href="#e{i}">{i}</a>' if i in linked else str(i)
        g = gt_rows[i - 1]
        gt = "" if video else (_td("psnr", g["psnr"]) + _td("ssim", g["ssim"], f"{g['ssim']:.4f}") if g
                               else "<td>-</td><td>-</td>")
        body.append(f"<tr id=\"row{i}\"><td>{num}</td><td>{escape(name)}</td>"
                    f"{_td('max_abs', r['max_abs'], _g(r['max_abs']))}{_td('mean_abs', r['mean_abs'], _g(r['mean_abs']))}"
                    f"{_td('psnr_vs_torch', _psnr(r['psnr_vs_torch']))}{_td('max_abs_uint8', r['max_abs_uint8'])}"
                    f"{_td('near_discontinuity_pixels', r.get('near_discontinuity_pixels', 0))}{gt}"
                    f"<td class=\"{'pass' if r['passed'] else 'fail'}\">{'yes' if r['passed'] else 'NO'}</td></tr>")
    body.append("</table>")

    if vr.keep is not None and len(vr.entries) > vr.keep + 1:
        which = (f"the first and the {vr.keep} worst of the {len(vr.entries)} {x_label}s (lowest PSNR vs "
                 "PyTorch, then largest max |Δ|), in order")
    else:
        which = f"every {x_label}, in order"
    if video:
        which += (". Interpolated frames are numbered in the order the model made them: with --factor 2, frame k "
                  "lies between input frames k − 1 and k (counted from 0); deeper midpoints take their parent "
                  "midpoint as an input, and are judged on exactly those inputs")
    body.append(f"<h2>Strips</h2><p class=\"note\">Strips of {which}: frame 0 | result | frame 2"
                + ("" if video else " | ground truth (triplets)") + f" | heat map of |result − PyTorch|. "
                f"{vr.scale_note()}; the heat map is computed at full resolution (click a strip for it). "
                "Heat map: per pixel the largest of the three channels' |raw backend output − raw PyTorch output|, "
                "in 8-bit levels (×255), colour map inferno on a logarithmic scale: the top of each bar is that "
                "frame's own max |Δ| over the judged pixels, each tick below a tenth of the one above, black 1/10⁴ "
                "of the max or less (a bar from 0 to 0: identical to PyTorch). Cyan: pixels set apart at the op's "
                "discontinuities (runtime.accuracy), judged on their own.</p>")
    for e in vr.kept:
        sw, sh = e.size
        px = " px" if vr.enlarged() else ""
        st = e.stats
        body.append(
            f'<section id="e{e.number}"><h3>#{e.number} {escape(e.name)} '
            f'<span class="{"pass" if st["passed"] else "fail"}">{"ok" if st["passed"] else "FAILED"}</span> '
            f'· PSNR vs PyTorch {fmt_db(_psnr(st["psnr_vs_torch"]))} dB · max |Δ| {st["max_abs"]:.3g} '
            f'({st["heat_top_levels"]:.3g} levels)'
            + (f" · {'; '.join(escape(v) for v in st.get('violations', []))}" if st.get("violations") else "")
            + f'</h3><a href="{e.files["heat"]}"><img class="strip{px}" src="{e.files["strip"]}" width="{sw}" '
            f'height="{sh}" alt="strip #{e.number}: {escape(e.name)}"></a></section>')
    body.append(f"<p class=\"note\">{escape(report.get('metrics', ''))}</p></body></html>")
    return "\n".join(head + body) + "\n"
