"""Frames too large for one pass, interpolated in pieces that reproduce the whole-frame forward.

    interpolate_in_pieces(model, frame0, frame2, tile=512, strip=256) -> the middle frame, as model(frame0, frame2)

Where the model is local and where it is not decides the pieces:
  * level 1 of the encoder (3x3 convolutions, then a 2x2 stride-2 pool) is local: it runs in horizontal strips of
    `strip` rows with LEVEL1_MARGIN rows of real context on each cut side (even, so the pool sees the same 2x2
    blocks), and only the rows whose context is complete are kept. Level 1 works at full resolution and holds the
    most memory (~380 bytes a pixel at once for the whole frame); in strips it holds a strip's worth;
  * the rest of the U-Net runs on the whole (half-size) level-1 output: its x2 upsamplings use align_corners=True,
    whose sampling grid i * (n_in - 1) / (n_out - 1) depends on the whole frame's size, so tiles of it would not
    reproduce the whole frame (tiles of the whole network: 24.7/255 off on bigbuckbunny at margins of 128-256 px);
  * the seven heads and the synthesis run in output tiles of `tile` x `tile`: each head's half-resolution
    convolutions on its window plus 3 rows/columns of context, its x2 upsampling evaluated at the whole frame's
    grid (the same formula as torch's bilinear align_corners=True, evaluated at the tile's global indices), its
    full-resolution convolution with 1 of context; the synthesis reads the whole (3-channel) frames, so offsets of
    any size stay exact.
What differs from the whole-frame forward is float32 summation order only (a convolution over a window may pick
another algorithm than over the whole map): ~1e-6, the size of the differences between ONNX Runtime and PyTorch,
and like those it can flip a tap at the op's discontinuities (offsets at negative integers, runtime/accuracy.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .models import AdaCoFNet, KernelMaps, normalize, padded_pair
from .synthesis import adacof_synthesis_window


TILE = 512   # default output tile of the heads and the synthesis (full resolution)
STRIP = 256  # default rows of a level-1 strip


def _even_up(n: int) -> int:
    return n + (n % 2)


def level1_in_strips(kernel_estimation: nn.Module, f0: Tensor, f2: Tensor, strip: int) -> tuple[Tensor, ...]:
    """kernel_estimation.level1(normalize(f0), normalize(f2)) on 32-padded frames, computed strip by strip."""
    h = f0.shape[2]
    margin = _even_up(kernel_estimation.LEVEL1_MARGIN)
    strip = max(2, _even_up(strip))
    pieces: list[tuple[Tensor, ...]] = []
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)
        a0, a1 = max(0, r0 - margin), min(h, r1 + margin)
        out = kernel_estimation.level1(normalize(f0[:, :, a0:a1]), normalize(f2[:, :, a0:a1]))
        k0 = (r0 - a0) // 2
        pieces.append(tuple(t[:, :, k0:k0 + (r1 - r0) // 2] for t in out))
    return tuple(torch.cat([p[i] for p in pieces], 2) for i in range(len(pieces[0])))


def _conv_count(layers) -> int:
    return sum(1 for m in layers if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1)


def _window(lo: int, hi: int, margin: int, n: int) -> tuple[int, int]:
    return max(0, lo - margin), min(n, hi + margin)


def _upsample_rows_cols(x: Tensor, n_out: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int],
                        origin: tuple[int, int]) -> Tensor:
    """Rows rows[0]:rows[1] and columns cols[0]:cols[1] of the bilinear x2 upsampling (align_corners=True) of a map
    whose full size is half of n_out, given its window `x` that starts at `origin` of that map."""
    out = x
    for dim, (lo, hi), n, o in ((2, rows, n_out[0], origin[0]), (3, cols, n_out[1], origin[1])):
        n_in = n // 2
        # as ATen computes it: scale = (n_in - 1) / (n_out - 1) and the source index scale * i, in float32
        scale = torch.tensor(n_in - 1, dtype=torch.float32) / torch.tensor(n - 1, dtype=torch.float32)
        src = torch.arange(lo, hi, dtype=torch.float32) * scale
        i0 = src.to(torch.int64)
        lam = (src - i0.to(torch.float32)).clamp(0, 1)
        i1 = torch.clamp(i0 + 1, max=n_in - 1)
        # columns are selected as the rows of the transposed view: index_select then copies whole rows, not single
        # elements along the last axis (~1.6-2.9x faster for the heads' windows); the products and the sum are the
        # same float32 operations, done in place on the selected copies (fewer full-size temporaries: a lower peak)
        t = out if dim == 2 else out.transpose(2, 3)
        out = t.index_select(2, i0 - o).mul_((1 - lam).view(1, 1, -1, 1))
        out.add_(t.index_select(2, i1 - o).mul_(lam.view(1, 1, -1, 1)))
        if dim == 3:
            out = out.transpose(2, 3).contiguous()
    return out


def head_window(head: nn.Sequential, features: Tensor, full: tuple[int, int], rows: tuple[int, int],
                cols: tuple[int, int]) -> Tensor:
    """head(features)[:, :, rows, cols] computed from a window of `features` (the half-resolution decoder output
    of a frame of size `full`)."""
    up = next(i for i, m in enumerate(head) if isinstance(m, nn.Upsample))
    pre, post = head[:up], head[up + 1:]
    m_pre, m_post = _conv_count(pre), _conv_count(post)
    hh, wh = features.shape[2:]
    # full-resolution window with the post-upsampling convolutions' context
    er = _window(rows[0], rows[1], m_post, full[0])
    ec = _window(cols[0], cols[1], m_post, full[1])
    # half-resolution rows/columns the upsampling reads for that window, with the pre-upsampling context
    sr = [int(i * (hh - 1) / (full[0] - 1)) for i in (er[0], er[1] - 1)]
    sc = [int(i * (wh - 1) / (full[1] - 1)) for i in (ec[0], ec[1] - 1)]
    hr = _window(max(0, sr[0] - 1), min(hh, sr[1] + 2), m_pre, hh)  # +-1: float rounding of the source index
    hc = _window(max(0, sc[0] - 1), min(wh, sc[1] + 2), m_pre, wh)
    x = pre(features[:, :, hr[0]:hr[1], hc[0]:hc[1]])
    x = _upsample_rows_cols(x, full, er, ec, (hr[0], hc[0]))
    x = post(x)
    return x[:, :, rows[0] - er[0]:rows[1] - er[0], cols[0] - ec[0]:cols[1] - ec[0]]


def maps_window(kernel_estimation: nn.Module, features: Tensor, full: tuple[int, int], rows: tuple[int, int],
                cols: tuple[int, int]) -> KernelMaps:
    ke = kernel_estimation
    return KernelMaps(*(head_window(h, features, full, rows, cols) for h in (
        ke.moduleWeight1, ke.moduleAlpha1, ke.moduleBeta1, ke.moduleWeight2, ke.moduleAlpha2, ke.moduleBeta2,
        ke.moduleOcclusion)))


def interpolate_in_pieces(model: AdaCoFNet, frame0: Tensor, frame2: Tensor, tile: int = TILE,
                          strip: int = STRIP) -> Tensor:
    """model(frame0, frame2) computed in pieces (module docstring); frames (B, 3, H, W) float32 in [0, 1]."""
    return _in_pieces(model, frame0, frame2, tile, strip, None)[0]


def interpolate_in_pieces_near_discontinuity(model: AdaCoFNet, frame0: Tensor, frame2: Tensor, margin: float,
                                             tile: int = TILE, strip: int = STRIP) -> tuple[Tensor, Tensor]:
    """(interpolate_in_pieces, the (B, 1, H, W) mask of output pixels with an offset within `margin` of a
    discontinuity of the op: KernelMaps.near_discontinuity), the mask built tile by tile."""
    return _in_pieces(model, frame0, frame2, tile, strip, margin)


@torch.inference_mode()
def _in_pieces(model: AdaCoFNet, frame0: Tensor, frame2: Tensor, tile: int, strip: int,
               margin: float | None) -> tuple[Tensor, Tensor | None]:
    h, w, f0, f2 = padded_pair(frame0, frame2)
    full = tuple(f0.shape[2:])
    ke = model.get_kernel
    features = ke.features_from_level1(level1_in_strips(ke, f0, f2, strip))
    out = frame0.new_empty(frame0.shape)
    near = None if margin is None else torch.zeros_like(out[:, :1], dtype=torch.bool)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            rows, cols = (y0, min(h, y0 + tile)), (x0, min(w, x0 + tile))
            m = maps_window(ke, features, full, rows, cols)
            o1 = adacof_synthesis_window(f0, m.weight1, m.alpha1, m.beta1, model.dilation, (y0, x0))
            o2 = adacof_synthesis_window(f2, m.weight2, m.alpha2, m.beta2, model.dilation, (y0, x0))
            out[:, :, rows[0]:rows[1], cols[0]:cols[1]] = m.occlusion * o1 + (1 - m.occlusion) * o2
            if near is not None:
                near[:, :, rows[0]:rows[1], cols[0]:cols[1]] = m.near_discontinuity(margin)
    return out, near
