"""The AdaCoF synthesis op in PyTorch: the reference every other backend is checked against.

Arithmetic (docs/MODEL.md, "The AdaCoF synthesis op"): for each tap (k, l) the offset is split with
truncation toward zero (C's int cast, not floor), so the fractional part lies in (-1, 1) and a negative offset
extrapolates; each of the four corner indices is clamped into the source on its own.

The core works on a source image plus an integer `shift` added to every row/column index before clamping:
  * spec form: source = replication-padded frame P, shift = 0;
  * model form: source = the frame F itself, shift = -kernel_pad. Because P is a replication pad of F,
    P[clamp(x, 0, Hp-1)] == F[clamp(x - pad, 0, H-1)] per axis, so both forms give identical numbers and the
    model never materialises the padded copy.

Vectorised over pixels with a Python loop over the K*K taps only, so the transient memory is a few
(B, C, H, W) tensors whatever K is. Backward is written by hand (A and E held constant, as in the original) and
recomputes the per-tap gathers instead of storing K*K of them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def trunc_toward_zero(x: Tensor) -> Tensor:
    """C-style (int) cast of a float, as a float tensor. Written with floor/ceil so it also exports to ONNX."""
    return torch.where(x < 0, torch.ceil(x), torch.floor(x))


def near_discontinuity(offsets: Tensor, margin: float) -> Tensor:
    """Where the op jumps: trunc-toward-zero makes a tap's sample continuous in its offset except at the negative
    integers (offset -n + e, e -> 0+, samples 2*P(0) - P(1) around the truncated position 0, -n - e samples P(-n)),
    so two fp32 computations of the same offset that straddle -n give different frames. True where an offset lies
    within `margin` of an integer <= -1 (same shape as `offsets`)."""
    nearest = torch.round(offsets)
    return (nearest <= -1) & ((offsets - nearest).abs() < margin)


def kernel_pad(kernel_size: int, dilation: int) -> int:
    return ((kernel_size - 1) * dilation) // 2


class _Tap:
    """Gathered corners and fractional offsets of one tap, shared by forward and backward."""

    __slots__ = ("p00", "p10", "p01", "p11", "fa", "fe")

    def __init__(self, src_flat: Tensor, src_h: int, src_w: int, alpha: Tensor, beta: Tensor,
                 row_base: Tensor, col_base: Tensor) -> None:
        # alpha, beta: (B, H, W); row_base: (H, 1) and col_base: (1, W) int64 = i + k*d + shift, j + l*d + shift.
        a_int = trunc_toward_zero(alpha)
        e_int = trunc_toward_zero(beta)
        self.fa = (alpha - a_int).unsqueeze(1)
        self.fe = (beta - e_int).unsqueeze(1)
        rows = row_base + a_int.to(torch.int64)
        cols = col_base + e_int.to(torch.int64)
        r0 = rows.clamp(0, src_h - 1) * src_w
        r1 = (rows + 1).clamp(0, src_h - 1) * src_w
        c0 = cols.clamp(0, src_w - 1)
        c1 = (cols + 1).clamp(0, src_w - 1)
        b, c = src_flat.shape[:2]
        out_shape = (b, c) + tuple(alpha.shape[1:])

        def gather(index: Tensor) -> Tensor:
            idx = index.reshape(b, 1, -1).expand(b, c, -1)
            return torch.gather(src_flat, 2, idx).reshape(out_shape)

        self.p00 = gather(r0 + c0)
        self.p10 = gather(r1 + c0)
        self.p01 = gather(r0 + c1)
        self.p11 = gather(r1 + c1)

    def sample(self) -> Tensor:
        fa, fe = self.fa, self.fe
        return (self.p00 * (1 - fa) * (1 - fe) + self.p10 * fa * (1 - fe)
                + self.p01 * (1 - fa) * fe + self.p11 * fa * fe)


def _bases(h: int, w: int, k: int, l: int, dilation: int, shift: int, device: torch.device,
           origin: tuple[int, int] = (0, 0)) -> tuple[Tensor, Tensor]:
    rows = torch.arange(h, device=device, dtype=torch.int64).view(h, 1) + (origin[0] + k * dilation + shift)
    cols = torch.arange(w, device=device, dtype=torch.int64).view(1, w) + (origin[1] + l * dilation + shift)
    return rows, cols


def _taps(src_flat: Tensor, src_h: int, src_w: int, alpha: Tensor, beta: Tensor, kernel_size: int, dilation: int,
          shift: int, origin: tuple[int, int] = (0, 0)):
    """(t, _Tap) for every tap t = k*K + l, in the spec's order (the sum's order fixes the fp32 rounding)."""
    h, w = alpha.shape[2:]
    for k in range(kernel_size):
        for l in range(kernel_size):
            t = k * kernel_size + l
            rows, cols = _bases(h, w, k, l, dilation, shift, src_flat.device, origin)
            yield t, _Tap(src_flat, src_h, src_w, alpha[:, t], beta[:, t], rows, cols)


def _check(src: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor, kernel_size: int) -> None:
    if not (weight.shape == alpha.shape == beta.shape):
        raise ValueError(f"weight/alpha/beta shapes differ: {tuple(weight.shape)}, {tuple(alpha.shape)}, {tuple(beta.shape)}")
    if weight.dim() != 4 or src.dim() != 4 or weight.shape[0] != src.shape[0]:
        raise ValueError(f"expected NCHW tensors with the same batch, got {tuple(src.shape)} and {tuple(weight.shape)}")
    if weight.shape[1] != kernel_size * kernel_size:
        raise ValueError(f"maps have {weight.shape[1]} channels, expected K*K = {kernel_size * kernel_size}")


def synthesis_forward(src: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor, kernel_size: int,
                      dilation: int, shift: int, origin: tuple[int, int] = (0, 0)) -> Tensor:
    """out[b,c,i,j] = sum_{k,l} W * S(k, l) with indices i + k*d + shift (+ trunc offset), each corner clamped;
    `origin`: the maps cover the output window starting at that (row, column) (i, j counted from it)."""
    _check(src, weight, alpha, beta, kernel_size)
    b, c, src_h, src_w = src.shape
    h, w = weight.shape[2:]
    src_flat = src.reshape(b, c, src_h * src_w)
    out = src.new_zeros((b, c, h, w))
    for t, tap in _taps(src_flat, src_h, src_w, alpha, beta, kernel_size, dilation, shift, origin):
        out = out + weight[:, t:t + 1] * tap.sample()
    return out


class _SynthesisFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor, kernel_size: int, dilation: int,
                shift: int) -> Tensor:
        ctx.save_for_backward(src, weight, alpha, beta)
        ctx.params = (kernel_size, dilation, shift)
        return synthesis_forward(src, weight, alpha, beta, kernel_size, dilation, shift)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        src, weight, alpha, beta = ctx.saved_tensors
        kernel_size, dilation, shift = ctx.params
        b, c, src_h, src_w = src.shape
        h, w = weight.shape[2:]
        src_flat = src.reshape(b, c, src_h * src_w)
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_a = torch.zeros_like(alpha) if ctx.needs_input_grad[2] else None
        grad_b = torch.zeros_like(beta) if ctx.needs_input_grad[3] else None
        for t, tap in _taps(src_flat, src_h, src_w, alpha, beta, kernel_size, dilation, shift):
            if grad_w is not None:
                grad_w[:, t] = (grad_out * tap.sample()).sum(1)
            wt = weight[:, t:t + 1]
            if grad_a is not None:
                d_a = (tap.p10 - tap.p00) * (1 - tap.fe) + (tap.p11 - tap.p01) * tap.fe
                grad_a[:, t] = (grad_out * wt * d_a).sum(1)
            if grad_b is not None:
                d_e = (tap.p01 - tap.p00) * (1 - tap.fa) + (tap.p11 - tap.p10) * tap.fa
                grad_b[:, t] = (grad_out * wt * d_e).sum(1)
        # The original computes no gradient for the frame (spec): frames are data, not parameters.
        return None, grad_w, grad_a, grad_b, None, None, None


def adacof_synthesis(padded_frame: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor, dilation: int = 1) -> Tensor:
    """The spec's op on the replication-padded frame P (B, C, Hp, Wp); maps are (B, K*K, H, W)."""
    kernel_size = int(round(weight.shape[1] ** 0.5))
    expect = (padded_frame.shape[2] - (kernel_size - 1) * dilation, padded_frame.shape[3] - (kernel_size - 1) * dilation)
    if tuple(weight.shape[2:]) != expect:
        raise ValueError(f"maps are {tuple(weight.shape[2:])}, expected {expect} for a padded frame {tuple(padded_frame.shape[2:])}")
    return _SynthesisFunction.apply(padded_frame, weight, alpha, beta, kernel_size, dilation, 0)


def adacof_synthesis_unpadded(frame: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor, dilation: int = 1) -> Tensor:
    """The same op reading the unpadded frame F (B, C, H, W) directly; equals adacof_synthesis(replication_pad(F))."""
    kernel_size = int(round(weight.shape[1] ** 0.5))
    if tuple(weight.shape[2:]) != tuple(frame.shape[2:]):
        raise ValueError(f"maps are {tuple(weight.shape[2:])}, frame is {tuple(frame.shape[2:])}")
    return _SynthesisFunction.apply(frame, weight, alpha, beta, kernel_size, dilation, -kernel_pad(kernel_size, dilation))


def adacof_synthesis_window(frame: Tensor, weight: Tensor, alpha: Tensor, beta: Tensor, dilation: int,
                            origin: tuple[int, int]) -> Tensor:
    """adacof_synthesis_unpadded(frame, ...)'s output window starting at `origin` (row, column), from the maps of
    that window only (B, K*K, h, w): every tap still reads the whole frame (no autograd)."""
    kernel_size = int(round(weight.shape[1] ** 0.5))
    h, w = weight.shape[2:]
    if origin[0] < 0 or origin[1] < 0 or origin[0] + h > frame.shape[2] or origin[1] + w > frame.shape[3]:
        raise ValueError(f"window {h}x{w} at {origin} is outside the frame {tuple(frame.shape[2:])}")
    return synthesis_forward(frame, weight, alpha, beta, kernel_size, dilation, -kernel_pad(kernel_size, dilation),
                             origin)


def fused_reference(inputs, kernel_size: int, dilation: int = 1) -> Tensor:
    """The plugin's nine inputs (frame0, frame2, weight1, alpha1, beta1, weight2, alpha2, beta2, occlusion), in any
    float type -> the spec's whole-model steps 4-5 with this reference op on replication-padded frames, in float32,
    without autograd: V * AdaCoF(pad(f0), W1, a1, b1) + (1 - V) * AdaCoF(pad(f2), W2, a2, b2)."""
    t = [x.float() for x in inputs]
    pad = torch.nn.ReplicationPad2d(kernel_pad(kernel_size, dilation))
    with torch.no_grad():
        o1 = adacof_synthesis(pad(t[0]), t[2], t[3], t[4], dilation)
        o2 = adacof_synthesis(pad(t[1]), t[5], t[6], t[7], dilation)
        return t[8] * o1 + (1 - t[8]) * o2
