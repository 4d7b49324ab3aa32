"""Time and peak memory of the PyTorch synthesis op: `python -m sfadacof.opbench --size 1920x1080`.

Peak memory is the process's max RSS after the inputs exist minus before the op ran, so it is the op's own
transient memory (gathers, indices, output), not the K*K maps it reads.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from .synthesis import adacof_synthesis_unpadded


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1920x1080", help="WxH")
    ap.add_argument("--kernel-size", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    k2 = args.kernel_size ** 2
    g = torch.Generator().manual_seed(0)
    frame = torch.rand(1, 3, h, w, generator=g)
    maps = [torch.softmax(torch.randn(1, k2, h, w, generator=g), 1)] + [torch.randn(1, k2, h, w, generator=g) * 4 for _ in range(2)]
    inputs_mib = (frame.numel() + sum(m.numel() for m in maps)) * 4 / 2**20
    base = _maxrss_mib()
    times = []
    with torch.no_grad():
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            adacof_synthesis_unpadded(frame, *maps, 1)
            times.append(time.perf_counter() - t0)
    peak = _maxrss_mib() - base
    print(f"synthesis op {w}x{h} K={args.kernel_size}, {torch.get_num_threads()} threads: "
          f"best {min(times):.3f} s/direction; inputs {inputs_mib:.0f} MiB; op peak extra RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
