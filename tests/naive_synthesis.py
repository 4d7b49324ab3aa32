"""A slow, literal transcription of the spec's synthesis formula, used only by tests as the independent reference.

Plain Python loops over b, c, i, j, k, l on float64 numpy arrays; math.trunc is C's cast toward zero. Nothing here
is shared with sfadacof.synthesis.
"""

from __future__ import annotations

import math

import numpy as np


def naive_adacof(p: np.ndarray, w: np.ndarray, alpha: np.ndarray, beta: np.ndarray, dilation: int) -> np.ndarray:
    """The spec's op on a replication-padded frame P (B, C, Hp, Wp) and maps (B, K*K, H, W)."""
    b_n, c_n, hp, wp = p.shape
    k2, h, w_ = w.shape[1:]
    ks = int(round(math.sqrt(k2)))
    out = np.zeros((b_n, c_n, h, w_), dtype=np.float64)

    def clamp(v: int, hi: int) -> int:
        return min(max(v, 0), hi)

    for b in range(b_n):
        for i in range(h):
            for j in range(w_):
                for k in range(ks):
                    for l in range(ks):
                        t = k * ks + l
                        a = float(alpha[b, t, i, j])
                        e = float(beta[b, t, i, j])
                        A, E = math.trunc(a), math.trunc(e)
                        fa, fe = a - A, e - E
                        r0 = clamp(i + k * dilation + A, hp - 1)
                        r1 = clamp(i + k * dilation + A + 1, hp - 1)
                        c0 = clamp(j + l * dilation + E, wp - 1)
                        c1 = clamp(j + l * dilation + E + 1, wp - 1)
                        wt = float(w[b, t, i, j])
                        for c in range(c_n):
                            s = (p[b, c, r0, c0] * (1 - fa) * (1 - fe) + p[b, c, r1, c0] * fa * (1 - fe)
                                 + p[b, c, r0, c1] * (1 - fa) * fe + p[b, c, r1, c1] * fa * fe)
                            out[b, c, i, j] += wt * s
    return out


def replication_pad(x: np.ndarray, pad: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")


def naive_fused(f0, f2, w1, a1, b1, w2, a2, b2, occ, k, d):
    """Spec 'Whole model' steps 4-5 with the spec op, in float64: replication-pad, synthesise, blend."""
    pad = ((k - 1) * d) // 2
    f64 = [np.asarray(x, dtype=np.float64) for x in (f0, f2, w1, a1, b1, w2, a2, b2, occ)]
    o1 = naive_adacof(replication_pad(f64[0], pad), f64[2], f64[3], f64[4], d)
    o2 = naive_adacof(replication_pad(f64[1], pad), f64[5], f64[6], f64[7], d)
    v = f64[8]
    return v * o1 + (1 - v) * o2
