"""An independent functional transcription of the spec's whole-model forward ("the authors' forward"), working
directly on a state_dict with F.conv2d. It shares no module code with sfadacof.models, so a wiring mistake there
(skip order, concat order, which pool, which suffix) shows up as a mismatch. The synthesis is the spec-form op on
the replication-padded frame (tested separately against the naive loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sfadacof.synthesis import adacof_synthesis

P = "get_kernel."


def conv(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    w, b = sd[P + name + ".weight"], sd[P + name + ".bias"]
    stride = 2 if w.shape[-1] == 2 else 1  # the 2x2 conv pools
    return F.conv2d(x, w, b, stride=stride, padding=w.shape[-1] // 2 if w.shape[-1] == 3 else 0)


def up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def basic(sd, name, x):
    for i in (0, 2, 4):
        x = F.relu(conv(sd, f"{name}.{i}", x))
    return x


def upsample(sd, name, x):
    return F.relu(conv(sd, f"{name}.1", up(x)))


def flow(sd, name, x):
    return F.relu(conv(sd, f"{name}.2", F.relu(conv(sd, f"{name}.0", x))))


def pool(sd, name, x):
    return conv(sd, name, x) if P + name + ".weight" in sd else F.avg_pool2d(x, 2, 2)


def head(sd, name, x, final):
    for i in (0, 2, 4):
        x = F.relu(conv(sd, f"{name}.{i}", x))
    return final(conv(sd, f"{name}.7", up(x)))


def decoder(sd, bottom, skips, suffix=""):
    x = bottom
    for n in (5, 4, 3, 2):
        x = upsample(sd, f"moduleUpsample{n}{suffix}", basic(sd, f"moduleDeconv{n}{suffix}", x)) + skips[n]
    return x


def encoder_plain(sd, x):
    skips = {}
    for n in range(1, 6):
        x = basic(sd, f"moduleConv{n}", x)
        skips[n] = x
        x = pool(sd, f"modulePool{n}", x)
    return x, skips


def kernel_estimation(sd: dict[str, Tensor], f0: Tensor, f2: Tensor) -> list[Tensor]:
    if P + "flowconv1_FD.0.weight" in sd:  # SF-AdaCoF final / noShare
        q = "_1" if P + "moduleConv1_1.0.weight" in sd else ""
        xp_in, xq_in, sp, sq = f0, f2, {}, {}
        for n in range(1, 6):
            xp = basic(sd, f"moduleConv{n}", xp_in)
            xq = basic(sd, f"moduleConv{n}{q}", xq_in)
            fd = flow(sd, f"flowconv{n}_FD", (xq - xp).abs())
            a = flow(sd, f"flowconv{n}_pr", xp) * fd
            b = flow(sd, f"flowconv{n}_ne", xq) * fd
            sp[n], sq[n] = torch.cat([xp, a, b], 1), torch.cat([xq, a, b], 1)
            xp_in, xq_in = pool(sd, f"modulePool{n}", sp[n]), pool(sd, f"modulePool{n}{q}", sq[n])
        feat = torch.cat([decoder(sd, xp_in, sp), decoder(sd, xq_in, sq, q)], 1)
    elif sd[P + "moduleConv1.0.weight"].shape[1] == 3:  # two directions, shared weights
        b0, s0 = encoder_plain(sd, f0)
        b2, s2 = encoder_plain(sd, f2)
        feat = torch.cat([decoder(sd, b0, s0), decoder(sd, b2, s2)], 1)
    else:  # one U-Net on both frames
        b, s = encoder_plain(sd, torch.cat([f0, f2], 1))
        feat = decoder(sd, b, s)
    soft = lambda t: torch.softmax(t, 1)  # noqa: E731
    ident = lambda t: t  # noqa: E731
    return [head(sd, "moduleWeight1", feat, soft), head(sd, "moduleAlpha1", feat, ident),
            head(sd, "moduleBeta1", feat, ident), head(sd, "moduleWeight2", feat, soft),
            head(sd, "moduleAlpha2", feat, ident), head(sd, "moduleBeta2", feat, ident),
            head(sd, "moduleOcclusion", feat, torch.sigmoid)]


def reference_forward(sd: dict[str, Tensor], frame0: Tensor, frame2: Tensor, dilation: int = 1) -> Tensor:
    h0, w0 = frame0.shape[2:]
    ph, pw = (32 - h0 % 32) % 32, (32 - w0 % 32) % 32
    f0 = F.pad(frame0, (0, pw, 0, ph), mode="reflect")
    f2 = F.pad(frame2, (0, pw, 0, ph), mode="reflect")
    mean = torch.tensor([0.4631, 0.4352, 0.3990]).view(1, 3, 1, 1)
    w1, a1, b1, w2, a2, b2, v = kernel_estimation(sd, f0 - mean, f2 - mean)
    ks = int(round(w1.shape[1] ** 0.5))
    pad = ((ks - 1) * dilation) // 2
    o1 = adacof_synthesis(F.pad(f0, [pad] * 4, mode="replicate"), w1, a1, b1, dilation)
    o2 = adacof_synthesis(F.pad(f2, [pad] * 4, mode="replicate"), w2, a2, b2, dilation)
    return (v * o1 + (1 - v) * o2)[:, :, :h0, :w0]
