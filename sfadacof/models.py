"""The AdaCoF model family, built from docs/MODEL.md with the authors' module names.

Module names and shapes must equal the released checkpoints' (`checkpoints/*.json`), so that their state_dicts load
with strict=True: everything lives under `get_kernel.` and keeps the original `moduleConvN`, `modulePoolN`,
`flowconvN_FD/_pr/_ne`, `moduleDeconvN`, `moduleUpsampleN`, `moduleWeight1`, ... names and Sequential indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .synthesis import adacof_synthesis_unpadded, kernel_pad, near_discontinuity

# Canonical variant names; the aliases are the spellings of the spec's table and checkpoint files.
VARIANTS: tuple[str, ...] = ("sf_adacof", "adacof", "rwtd", "rwtdcp", "noshare", "cp")
VARIANT_ALIASES: dict[str, str] = {
    "sf_adacof": "sf_adacof", "sf-adacof": "sf_adacof", "final": "sf_adacof",
    "adacof": "adacof",
    "rwtd": "rwtd", "sf_adacof_rwtd": "rwtd",
    "rwtdcp": "rwtdcp", "sf_adacof_rwtdcp": "rwtdcp",
    "noshare": "noshare", "sf_adacof_noshare": "noshare",
    "cp": "cp", "sf_adacof_cp": "cp",
}

# Per-channel mean subtracted (no division) before kernel estimation, R, G, B.
RGB_MEAN: tuple[float, float, float] = (0.4631, 0.4352, 0.3990)
# Frames are padded so that H and W are multiples of this (five 2x poolings).
SIZE_MULTIPLE = 32


def canonical_variant(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in VARIANT_ALIASES:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANT_ALIASES[key]


def conv3x3(i: int, o: int) -> nn.Conv2d:
    return nn.Conv2d(i, o, kernel_size=3, stride=1, padding=1)


def basic(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(i, o), nn.ReLU(), conv3x3(o, o), nn.ReLU(), conv3x3(o, o), nn.ReLU())


def upsample2x() -> nn.Upsample:
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)


def upsample(c: int) -> nn.Sequential:
    return nn.Sequential(upsample2x(), conv3x3(c, c), nn.ReLU())


def flow(c: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(c, c), nn.ReLU(), nn.Conv2d(c, 1, kernel_size=1), nn.ReLU())


def pool(c: int, learned: bool) -> nn.Module:
    return nn.Conv2d(c, c, kernel_size=2, stride=2) if learned else nn.AvgPool2d(kernel_size=2, stride=2)


def head(out_channels: int, softmax: bool) -> nn.Sequential:
    """Weight/Alpha/Beta head: conv indices 0, 2, 4, 7; bilinear x2 at 6; Softmax over channels for weights."""
    layers: list[nn.Module] = [conv3x3(64, 64), nn.ReLU(), conv3x3(64, 64), nn.ReLU(), conv3x3(64, out_channels),
                               nn.ReLU(), upsample2x(), conv3x3(out_channels, out_channels)]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return nn.Sequential(*layers)


def occlusion_head() -> nn.Sequential:
    return nn.Sequential(conv3x3(64, 64), nn.ReLU(), conv3x3(64, 64), nn.ReLU(), conv3x3(64, 64), nn.ReLU(),
                         upsample2x(), conv3x3(64, 1), nn.Sigmoid())


@dataclass
class KernelMaps:
    """Outputs of kernel estimation at the 32-padded resolution."""

    weight1: Tensor
    alpha1: Tensor
    beta1: Tensor
    weight2: Tensor
    alpha2: Tensor
    beta2: Tensor
    occlusion: Tensor

    def as_tuple(self) -> tuple[Tensor, ...]:
        return (self.weight1, self.alpha1, self.beta1, self.weight2, self.alpha2, self.beta2, self.occlusion)

    def near_discontinuity(self, margin: float) -> Tensor:
        """(B, 1, H, W) bool: pixels any of whose 4*K*K offsets lies within `margin` of a discontinuity of the op
        (sfadacof.synthesis.near_discontinuity)."""
        return torch.stack([near_discontinuity(o, margin).any(1) for o in (self.alpha1, self.beta1, self.alpha2,
                                                                            self.beta2)]).any(0).unsqueeze(1)


class _Heads(nn.Module):
    """The seven heads shared by every variant, on the 64-channel half-resolution decoder output."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        k2 = kernel_size * kernel_size
        self.moduleWeight1 = head(k2, softmax=True)
        self.moduleAlpha1 = head(k2, softmax=False)
        self.moduleBeta1 = head(k2, softmax=False)
        self.moduleWeight2 = head(k2, softmax=True)
        self.moduleAlpha2 = head(k2, softmax=False)
        self.moduleBeta2 = head(k2, softmax=False)
        self.moduleOcclusion = occlusion_head()

    def heads(self, x: Tensor) -> KernelMaps:
        return KernelMaps(self.moduleWeight1(x), self.moduleAlpha1(x), self.moduleBeta1(x), self.moduleWeight2(x),
                          self.moduleAlpha2(x), self.moduleBeta2(x), self.moduleOcclusion(x))


class _Decoder:
    """Mixin: Deconv5..2 + Upsample5..2 with skip additions, for modules named with an optional suffix."""

    def _add_decoder(self, widths: tuple[int, ...], suffix: str = "") -> None:
        # widths = (w5, w4, w3, w2, ...): Deconv5 = Basic(w5, w5), Deconv4 = Basic(w5, w4), ..., Deconv2 = Basic(w3, w2)
        w5, w4, w3, w2 = widths[:4]
        setattr(self, f"moduleDeconv5{suffix}", basic(w5, w5))
        setattr(self, f"moduleUpsample5{suffix}", upsample(w5))
        setattr(self, f"moduleDeconv4{suffix}", basic(w5, w4))
        setattr(self, f"moduleUpsample4{suffix}", upsample(w4))
        setattr(self, f"moduleDeconv3{suffix}", basic(w4, w3))
        setattr(self, f"moduleUpsample3{suffix}", upsample(w3))
        setattr(self, f"moduleDeconv2{suffix}", basic(w3, w2))
        setattr(self, f"moduleUpsample2{suffix}", upsample(w2))

    def _decode(self, bottom: Tensor, skips: list[Tensor], suffix: str = "") -> Tensor:
        """bottom = pool5 output; skips = [skip2, skip3, skip4, skip5]; returns the half-resolution features."""
        x = bottom
        for n in (5, 4, 3, 2):
            x = getattr(self, f"moduleDeconv{n}{suffix}")(x)
            x = getattr(self, f"moduleUpsample{n}{suffix}")(x) + skips[n - 2]
        return x


class _PlainUNet(_Heads, _Decoder):
    """Encoder `Basic` blocks of the given widths, each followed by a pool, and the matching decoder."""

    # rows/columns of context the level-1 block needs for an exact strip: its three 3x3 convolutions
    LEVEL1_MARGIN = 3

    def __init__(self, kernel_size: int, conv_pool: bool, widths: tuple[int, ...]) -> None:
        super().__init__(kernel_size)
        for n in range(1, 6):
            setattr(self, f"moduleConv{n}", basic(widths[n - 1], widths[n]))
            setattr(self, f"modulePool{n}", pool(widths[n], conv_pool))
        self._add_decoder(widths[:0:-1])

    def _level1(self, x: Tensor) -> Tensor:
        return self.modulePool1(self.moduleConv1(x))

    def _unet_from_level2(self, x: Tensor) -> Tensor:
        skips = []
        for n in range(2, 6):
            x = getattr(self, f"moduleConv{n}")(x)
            skips.append(x)
            x = getattr(self, f"modulePool{n}")(x)
        return self._decode(x, skips)  # the level-1 output is not a skip (as in the original)

    def forward(self, f0: Tensor, f2: Tensor) -> KernelMaps:
        return self.heads(self.features_from_level1(self.level1(f0, f2)))


class UNetKernelEstimation(_PlainUNet):
    """AdaCoF (average pooling) and CP (2x2 stride-2 conv pooling): one U-Net on cat(f0, f2)."""

    def __init__(self, kernel_size: int, conv_pool: bool) -> None:
        super().__init__(kernel_size, conv_pool, (6, 32, 64, 128, 256, 512))

    def level1(self, f0: Tensor, f2: Tensor) -> tuple[Tensor, ...]:
        """The pooled level-1 outputs: local (convolutions and a stride-2 pool), so computable in strips."""
        return (self._level1(torch.cat([f0, f2], 1)),)

    def features_from_level1(self, level1: tuple[Tensor, ...]) -> Tensor:
        """The decoder's 64-channel half-resolution features from level1's outputs."""
        return self._unet_from_level2(level1[0])


class TwoDirectionKernelEstimation(_PlainUNet):
    """RWTD / RWTDCP: a half-width U-Net run on each frame with the same weights; outputs concatenated."""

    def __init__(self, kernel_size: int, conv_pool: bool) -> None:
        super().__init__(kernel_size, conv_pool, (3, 16, 32, 64, 128, 256))

    def level1(self, f0: Tensor, f2: Tensor) -> tuple[Tensor, ...]:
        return self._level1(f0), self._level1(f2)

    def features_from_level1(self, level1: tuple[Tensor, ...]) -> Tensor:
        return torch.cat([self._unet_from_level2(level1[0]), self._unet_from_level2(level1[1])], 1)


class FeatureDiffKernelEstimation(_Heads, _Decoder):
    """SF-AdaCoF final (shared blocks) and noShare (next-frame blocks suffixed `_1`): two directions with
    feature-map differencing at every encoder level."""

    ENC_IN = (3, 16, 32, 64, 128)
    ENC_OUT = (14, 30, 62, 126, 254)
    # level 1's context for an exact strip: three 3x3 convolutions, then the flow branch's 3x3 (its 1x1 adds none)
    LEVEL1_MARGIN = 4

    def __init__(self, kernel_size: int, share: bool) -> None:
        super().__init__(kernel_size)
        self.share = share
        suffixes = ("",) if share else ("", "_1")
        for n in range(1, 6):
            c_in, c_n = self.ENC_IN[n - 1], self.ENC_OUT[n - 1]
            for s in suffixes:
                setattr(self, f"moduleConv{n}{s}", basic(c_in, c_n))
                setattr(self, f"modulePool{n}{s}", pool(c_n + 2, learned=True))
            setattr(self, f"flowconv{n}_FD", flow(c_n))
            setattr(self, f"flowconv{n}_pr", flow(c_n))
            setattr(self, f"flowconv{n}_ne", flow(c_n))
        for s in suffixes:
            self._add_decoder((256, 128, 64, 32, 16), s)

    def _encoder_level(self, n: int, in_p: Tensor, in_q: Tensor) -> tuple[Tensor, Tensor]:
        """Level n's two feature maps (before pooling): each direction's Basic block and the shared flow terms."""
        q = "" if self.share else "_1"  # module suffix of the next-frame direction
        x_p = getattr(self, f"moduleConv{n}")(in_p)
        x_q = getattr(self, f"moduleConv{n}{q}")(in_q)
        fd = getattr(self, f"flowconv{n}_FD")(torch.abs(x_q - x_p))
        a = getattr(self, f"flowconv{n}_pr")(x_p) * fd
        b = getattr(self, f"flowconv{n}_ne")(x_q) * fd
        return torch.cat([x_p, a, b], 1), torch.cat([x_q, a, b], 1)

    def _pool(self, n: int, x_p: Tensor, x_q: Tensor) -> tuple[Tensor, Tensor]:
        q = "" if self.share else "_1"
        return getattr(self, f"modulePool{n}")(x_p), getattr(self, f"modulePool{n}{q}")(x_q)

    def level1(self, f0: Tensor, f2: Tensor) -> tuple[Tensor, ...]:
        """The pooled level-1 outputs: local (convolutions and a stride-2 pool), so computable in strips; level 1
        is no skip of the decoder (as in the original)."""
        return self._pool(1, *self._encoder_level(1, f0, f2))

    def features_from_level1(self, level1: tuple[Tensor, ...]) -> Tensor:
        q = "" if self.share else "_1"
        in_p, in_q = level1
        skips_p, skips_q = [], []
        for n in range(2, 6):
            x_p, x_q = self._encoder_level(n, in_p, in_q)
            skips_p.append(x_p)
            skips_q.append(x_q)
            in_p, in_q = self._pool(n, x_p, x_q)
        dec_p = self._decode(in_p, skips_p)
        dec_q = self._decode(in_q, skips_q, q)
        return torch.cat([dec_p, dec_q], 1)

    def forward(self, f0: Tensor, f2: Tensor) -> KernelMaps:
        return self.heads(self.features_from_level1(self.level1(f0, f2)))


def build_kernel_estimation(variant: str, kernel_size: int) -> nn.Module:
    v = canonical_variant(variant)
    if v == "adacof":
        return UNetKernelEstimation(kernel_size, conv_pool=False)
    if v == "cp":
        return UNetKernelEstimation(kernel_size, conv_pool=True)
    if v == "rwtd":
        return TwoDirectionKernelEstimation(kernel_size, conv_pool=False)
    if v == "rwtdcp":
        return TwoDirectionKernelEstimation(kernel_size, conv_pool=True)
    if v == "sf_adacof":
        return FeatureDiffKernelEstimation(kernel_size, share=True)
    return FeatureDiffKernelEstimation(kernel_size, share=False)


def normalize(frame: Tensor) -> Tensor:
    mean = torch.tensor(RGB_MEAN, dtype=frame.dtype, device=frame.device).view(1, 3, 1, 1)
    return frame - mean


def pad_to_multiple(frame: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """Reflect-pad the bottom and right edges up to a multiple of `multiple` (as the original)."""
    h, w = frame.shape[2:]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return frame
    return F.pad(frame, (0, pad_w, 0, pad_h), mode="reflect")


def padded_pair(frame0: Tensor, frame2: Tensor) -> tuple[int, int, Tensor, Tensor]:
    """(H, W, frame0 and frame2 padded to a multiple of 32); ValueError when the frames differ in shape."""
    if frame0.shape != frame2.shape:
        raise ValueError(f"frames differ in shape: {tuple(frame0.shape)} vs {tuple(frame2.shape)}")
    h, w = frame0.shape[2:]
    return h, w, pad_to_multiple(frame0), pad_to_multiple(frame2)


def charbonnier_smoothness(t: Tensor) -> Tensor:
    """C(T): Charbonnier of horizontal plus vertical neighbour differences (training regulariser)."""
    dx = t[:, :, :, :-1] - t[:, :, :, 1:]
    dy = t[:, :, :-1, :] - t[:, :, 1:, :]
    return torch.mean(torch.sqrt(dx * dx + 1e-6)) + torch.mean(torch.sqrt(dy * dy + 1e-6))


class AdaCoFNet(nn.Module):
    """Two frames (B, 3, H, W) RGB in [0, 1] in, the middle frame out (not clamped)."""

    def __init__(self, variant: str = "sf_adacof", kernel_size: int = 5, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be >= 1, got {kernel_size}, {dilation}")
        if ((kernel_size - 1) * dilation) % 2:
            raise ValueError(f"(kernel_size - 1) * dilation must be even, got K={kernel_size}, d={dilation}")
        self.variant = canonical_variant(variant)
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.kernel_pad = kernel_pad(kernel_size, dilation)
        self.get_kernel = build_kernel_estimation(self.variant, kernel_size)

    def estimate(self, frame0: Tensor, frame2: Tensor) -> KernelMaps:
        """Kernel maps for frames already padded to a multiple of 32 (not normalised)."""
        return self.get_kernel(normalize(frame0), normalize(frame2))

    def synthesize(self, frame0: Tensor, frame2: Tensor, maps: KernelMaps) -> Tensor:
        """The fused synthesis: V * AdaCoF(pad(f0), W1, a1, b1) + (1 - V) * AdaCoF(pad(f2), W2, a2, b2)."""
        o1 = adacof_synthesis_unpadded(frame0, maps.weight1, maps.alpha1, maps.beta1, self.dilation)
        o2 = adacof_synthesis_unpadded(frame2, maps.weight2, maps.alpha2, maps.beta2, self.dilation)
        v = maps.occlusion
        return v * o1 + (1 - v) * o2

    def forward_with_maps(self, frame0: Tensor, frame2: Tensor) -> tuple[Tensor, KernelMaps]:
        """(the middle frame, the kernel maps at the 32-padded resolution)."""
        return self._forward_maps(frame0, frame2)

    def _forward_maps(self, frame0: Tensor, frame2: Tensor) -> tuple[Tensor, KernelMaps]:
        h, w, f0, f2 = padded_pair(frame0, frame2)
        maps = self.estimate(f0, f2)
        return self.synthesize(f0, f2, maps)[:, :, :h, :w], maps

    def forward(self, frame0: Tensor, frame2: Tensor) -> Tensor:
        return self._forward_maps(frame0, frame2)[0]

    def forward_with_regularisers(self, frame0: Tensor, frame2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(frame1, g_Spatial, g_Occlusion) as the original returns in training mode."""
        frame1, m = self._forward_maps(frame0, frame2)
        g_spatial = sum(charbonnier_smoothness(torch.mean(wt * x, dim=1, keepdim=True))
                        for wt, x in ((m.weight1, m.alpha1), (m.weight1, m.beta1),
                                      (m.weight2, m.alpha2), (m.weight2, m.beta2)))
        return frame1, g_spatial, charbonnier_smoothness(m.occlusion)
