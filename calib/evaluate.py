"""Accuracy of the INT8 graph beside the FP32 graph on held-aside triplets, the per-group sensitivity table, and the
ORT CPU speed of both.

Metrics (the same conventions as runtime.infer / runtime.accuracy):
  * PSNR / SSIM against ground truth: on the 8-bit output (clip to [0, 1], x255, round half to even) / 255 against
    the ground truth as decoded, data range 1, all pixels and RGB channels (sfadacof.metrics);
  * INT8 against FP32: PSNR of the two clipped float outputs (what is displayed), and max |difference| unclipped.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from sfadacof.images import to_uint8
from sfadacof.metrics import psnr, ssim

from .graph import estimator_subgraph
from .sources import Item, center_crop, nchw

SIZE_MULTIPLE = 32


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def padded_nchw_pair(f0: np.ndarray, f2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HWC frames -> NCHW, reflect-padded bottom/right to a multiple of 32 as the model does (so the kernel-map
    subgraph, which has no pad of its own, sees the same tensors as the full graph)."""
    h, w = f0.shape[:2]
    ph, pw = (-h) % SIZE_MULTIPLE, (-w) % SIZE_MULTIPLE
    x0, x2 = nchw(f0), nchw(f2)
    if ph or pw:
        pad = ((0, 0), (0, 0), (0, ph), (0, pw))
        x0, x2 = np.pad(x0, pad, mode="reflect"), np.pad(x2, pad, mode="reflect")
    return x0, x2


class Runner:
    """One ONNX graph in ONNX Runtime on CPU (runtime.backends.ort_backend: the project's session options, and the
    custom AdaCoFSynthesis node computed by the C++ CPU kernel): (H, W, 3) float frames in, the (H, W, 3) float
    middle frame out.

    Frames are reflect-padded (bottom/right) to a multiple of 32 on the host and the output cropped back, as the
    model does itself; for a graph that pads internally (export.to_onnx) the host pad is a no-op."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from runtime.backends.ort_backend import OrtBackend

        self.path = Path(path)
        self.threads = threads or default_threads()
        # verify_io off: the kernel-estimator subgraphs timed and compared here have seven outputs.
        self.backend = OrtBackend(self.path, threads=self.threads, verify_io=False)
        self.session = self.backend.session
        self.inputs = self.backend.input_names

    def run_nchw(self, x0: np.ndarray, x2: np.ndarray) -> np.ndarray:
        return self.backend.run(None, {self.inputs[0]: x0, self.inputs[1]: x2})[0]

    def __call__(self, f0: np.ndarray, f2: np.ndarray) -> np.ndarray:
        h, w = f0.shape[:2]
        y = self.run_nchw(*padded_nchw_pair(f0, f2))
        return np.ascontiguousarray(y[0, :, :h, :w].transpose(1, 2, 0))

    def close(self) -> None:
        self.backend.close()


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).permute(2, 0, 1)


def quality(out: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PSNR / SSIM of the 8-bit output against the ground truth."""
    pred = _t(to_uint8(out).astype(np.float64) / 255.0)
    target = _t(truth)
    return {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}


def agreement(int8: np.ndarray, fp32: np.ndarray) -> dict[str, float]:
    return {"psnr_int8_vs_fp32": psnr(_t(np.clip(int8, 0, 1)), _t(np.clip(fp32, 0, 1))),
            "max_abs_int8_vs_fp32": float(np.max(np.abs(int8.astype(np.float64) - fp32)))}


def clip_of(name: str) -> str:
    """Triplets are grouped per clip in the summary: 'bikes@120' -> 'bikes', 'seq/0001' -> 'seq'."""
    return name.split("@")[0] if "@" in name else (name.split("/")[0] if "/" in name else name)


def evaluate(fp32: Runner, int8: Runner, items: list[Item], crop: tuple[int, int] | None = None,
             fp32_outputs: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Per triplet: size, FP32 and INT8 quality against ground truth, INT8 against FP32.

    `fp32_outputs` caches FP32 outputs by triplet name (the sensitivity table reuses them)."""
    rows = []
    for it in items:
        if it.truth is None:
            continue
        f0, f2, gt = (center_crop(a, crop) for a in (it.frame0, it.frame2, it.truth))
        if fp32_outputs is not None and it.name in fp32_outputs:
            ref = fp32_outputs[it.name]
        else:
            ref = fp32(f0, f2)
            if fp32_outputs is not None:
                fp32_outputs[it.name] = ref
        out = int8(f0, f2)
        rows.append({"name": it.name, "clip": clip_of(it.name), "size": [int(f0.shape[1]), int(f0.shape[0])],
                     "fp32": quality(ref, gt), "int8": quality(out, gt), **agreement(out, ref)})
    return rows


def _mean(values) -> float:
    values = list(values)
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return math.inf
    return float(statistics.fmean(values)) if values else math.nan


def summarise(rows: list[dict]) -> dict:
    """Means overall and per clip: PSNR/SSIM FP32 and INT8 vs GT, their difference, INT8 vs FP32."""

    def agg(rs: list[dict]) -> dict:
        s = {"triplets": len(rs),
             "psnr_fp32": _mean(r["fp32"]["psnr"] for r in rs), "psnr_int8": _mean(r["int8"]["psnr"] for r in rs),
             "ssim_fp32": _mean(r["fp32"]["ssim"] for r in rs), "ssim_int8": _mean(r["int8"]["ssim"] for r in rs),
             "psnr_int8_vs_fp32": _mean(r["psnr_int8_vs_fp32"] for r in rs),
             "worst_psnr_int8_vs_fp32": min((r["psnr_int8_vs_fp32"] for r in rs), default=math.nan)}
        s["psnr_loss_db"] = s["psnr_fp32"] - s["psnr_int8"]
        s["worst_psnr_loss_db"] = max((r["fp32"]["psnr"] - r["int8"]["psnr"] for r in rs), default=math.nan)
        return s

    clips = sorted({r["clip"] for r in rows})
    return {"overall": agg(rows), "per_clip": {c: agg([r for r in rows if r["clip"] == c]) for c in clips}}


def _f(v: float, fmt: str) -> str:
    return "inf" if math.isinf(v) else format(v, fmt)


def format_table(rows: list[dict], summary: dict) -> str:
    head = (f"{'triplet':<26} {'size':>9} {'PSNR fp32':>9} {'PSNR int8':>9} {'loss dB':>7} "
            f"{'SSIM fp32':>9} {'SSIM int8':>9} {'int8/fp32':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name'][-26:]:<26} {r['size'][0]:>4}x{r['size'][1]:<4} {r['fp32']['psnr']:9.3f} "
                     f"{r['int8']['psnr']:9.3f} {r['fp32']['psnr'] - r['int8']['psnr']:7.3f} "
                     f"{r['fp32']['ssim']:9.4f} {r['int8']['ssim']:9.4f} {_f(r['psnr_int8_vs_fp32'], '9.2f'):>9}")
    lines.append("-" * len(head))
    for name, s in list(summary["per_clip"].items()) + [("ALL", summary["overall"])]:
        lines.append(f"{('mean ' + name)[-26:]:<26} {s['triplets']:>9} {s['psnr_fp32']:9.3f} {s['psnr_int8']:9.3f} "
                     f"{s['psnr_loss_db']:7.3f} {s['ssim_fp32']:9.4f} {s['ssim_int8']:9.4f} "
                     f"{_f(s['psnr_int8_vs_fp32'], '9.2f'):>9}")
    return "\n".join(lines)


def format_sensitivity(rows: list[dict]) -> str:
    head = f"{'group quantized alone':<22} {'convs':>5} {'PSNR/GT':>8} {'cost dB':>8} {'int8/fp32':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['group']:<22} {r['convs']:>5} {r['psnr']:8.3f} {r['cost_db']:8.3f} "
                     f"{_f(r['psnr_int8_vs_fp32'], '9.2f'):>9}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Speed


@dataclass
class Speed:
    size: tuple[int, int]
    runs: int
    fp32_s: float
    int8_s: float
    threads: int
    fp32_min_s: float = math.nan
    int8_min_s: float = math.nan

    @property
    def ratio(self) -> float:
        """INT8 time / FP32 time (< 1 = INT8 faster)."""
        return self.int8_s / self.fp32_s

    def as_dict(self) -> dict:
        return {"width": self.size[1], "height": self.size[0], "runs": self.runs, "threads": self.threads,
                "fp32_s_per_frame": self.fp32_s, "int8_s_per_frame": self.int8_s,
                "int8_over_fp32_time": self.ratio, "int8_speedup": 1.0 / self.ratio,
                # On a shared machine the fastest run is the least disturbed one: its ratio is reported too.
                "fp32_min_s": self.fp32_min_s, "int8_min_s": self.int8_min_s,
                "int8_over_fp32_time_min": self.int8_min_s / self.fp32_min_s}


def benchmark(fp32: Runner, int8: Runner, size: tuple[int, int], runs: int = 5, seed: int = 0) -> Speed:
    """Median seconds per frame of each graph, runs interleaved (fp32, int8, fp32, ...) after one warm-up each,
    so that load from other processes on a shared machine hits both alike."""
    rng = np.random.default_rng(seed)
    x0 = rng.random((1, 3, *size), dtype=np.float32)
    x2 = np.clip(x0 + rng.normal(0, 0.05, x0.shape).astype(np.float32), 0, 1)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for r in (fp32, int8):
        r.run_nchw(x0, x2)
    for _ in range(runs):
        for key, r in (("fp32", fp32), ("int8", int8)):
            t = time.perf_counter()
            r.run_nchw(x0, x2)
            times[key].append(time.perf_counter() - t)
    return Speed(size, runs, statistics.median(times["fp32"]), statistics.median(times["int8"]),
                 fp32.threads, min(times["fp32"]), min(times["int8"]))


def _estimators(fp32_path: Path, int8_path: Path, tmp: Path, stem: str) -> list[Path]:
    """The kernel estimators of both models (graph.estimator_subgraph), saved as tmp/STEM_fp32.onnx, STEM_int8.onnx."""
    paths = []
    for p, tag in ((fp32_path, "fp32"), (int8_path, "int8")):
        out = tmp / f"{stem}_{tag}.onnx"
        onnx.save(estimator_subgraph(onnx.load(str(p))), str(out))
        paths.append(out)
    return paths


def benchmark_estimator(fp32_path: Path, int8_path: Path, size: tuple[int, int], runs: int, tmp: Path,
                        threads: int | None = None) -> Speed:
    """The same measurement on the kernel estimators alone (graph.estimator_subgraph of each model)."""
    paths = _estimators(fp32_path, int8_path, Path(tmp), "estimator")
    a, b = Runner(paths[0], threads), Runner(paths[1], threads)
    try:
        return benchmark(a, b, size, runs)
    finally:
        a.close()
        b.close()


def _head_names(model: onnx.ModelProto) -> dict[str, str]:
    """Estimator output tensor -> head ('moduleAlpha1', ...), from the Conv that produces it."""
    from .graph import conv_nodes

    out = {}
    by_name = {n.name: n for n in model.graph.node}
    for c in conv_nodes(model):
        if c.group == "heads":
            for key in ("Weight1", "Weight2", "Alpha1", "Alpha2", "Beta1", "Beta2", "Occlusion"):
                if f"module{key}" in c.module:
                    out[by_name[c.node].output[0]] = key.lower()
    return out


def estimator_maps_diff(fp32_path: Path, int8_path: Path, items: list[Item], crop: tuple[int, int] | None,
                        tmp: Path, threads: int | None = None) -> dict[str, dict[str, float]]:
    """How far the INT8 kernel estimator's maps move from FP32's, per head, over the evaluation triplets.

    alpha/beta are the sampling offsets in pixels (the spec's α, β), so their |Δ| is a displacement of the taps;
    weight/occlusion are the logits before the softmax / sigmoid. A model whose heads barely depend on the
    features (e.g. early in training) shows tiny frame differences however coarse the features are; these
    numbers show what quantization does to the estimator itself."""
    paths = _estimators(fp32_path, int8_path, Path(tmp), "maps")
    heads = _head_names(onnx.load(str(paths[0]), load_external_data=False))
    runners = [Runner(p, threads) for p in paths]
    sums: dict[str, list[float]] = {}
    try:
        names = [o.name for o in runners[0].session.get_outputs()]
        for it in items:
            f0, f2 = center_crop(it.frame0, crop), center_crop(it.frame2, crop)
            h, w = f0.shape[:2]
            x0, x2 = padded_nchw_pair(f0, f2)
            a = dict(zip(names, runners[0].session.run(None, {runners[0].inputs[0]: x0, runners[0].inputs[1]: x2})))
            b = dict(zip(names, runners[1].session.run(names, {runners[1].inputs[0]: x0, runners[1].inputs[1]: x2})))
            for t, head in heads.items():
                if t not in a:
                    continue  # an inner conv of the head; only the head's last conv is an estimator output
                d = np.abs(a[t][..., :h, :w].astype(np.float64) - b[t][..., :h, :w])
                acc = sums.setdefault(head, [0.0, 0.0, 0])
                acc[0] += float(d.sum())
                acc[1] = max(acc[1], float(d.max()))
                acc[2] += d.size
    finally:
        for r in runners:
            r.close()
    return {k: {"mean_abs": v[0] / v[2], "max_abs": v[1]} for k, v in sorted(sums.items())}
