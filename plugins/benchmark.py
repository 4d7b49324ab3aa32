"""GPU benchmark of the fused AdaCoF synthesis op (needs an NVIDIA GPU; exits 2 with a one-line reason otherwise).

    python -m plugins.benchmark [--sizes 1080p 4k] [--kernel-size 5] [--iters 20] [--no-torch]

On the same GPU and inputs (B = 1, C = 3, frames after the model's pad to a multiple of 32: 1080p -> 1088 x 1920,
4K -> 2176 x 3840), times with CUDA events (median of --iters after warm-up):
  * fused    : the optimised kernel the TensorRT plugin launches (float32, float16, float16 + float32 offsets);
  * naive    : the original-style kernels (one thread per output element, one launch per direction, then a blend;
               like the AdaCoF repository, minus its explicit replication-pad copy, which is not timed);
  * pytorch  : sfadacof.synthesis reference (replication pad + two synthesis calls + blend), float32.
GB/s = the op's compulsory traffic (each map, the occlusion and both frames read once, the output written once)
divided by the time, next to the device's peak (memory clock x bus width) and a measured device-to-device copy.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys

SIZES = {"1080p": (1088, 1920), "4k": (2176, 3840), "720p": (736, 1280)}


def _peak_bandwidth_gbs(device: int) -> float | None:
    """Theoretical DRAM bandwidth from cudaDeviceGetAttribute (memory clock kHz, bus width bits)."""
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12"):
        try:
            rt = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return None
    clock, width = ctypes.c_int(0), ctypes.c_int(0)
    if rt.cudaDeviceGetAttribute(ctypes.byref(clock), 36, device) != 0:  # cudaDevAttrMemoryClockRate
        return None
    if rt.cudaDeviceGetAttribute(ctypes.byref(width), 37, device) != 0:  # cudaDevAttrGlobalMemoryBusWidth
        return None
    return 2.0 * clock.value * 1e3 * width.value / 8 / 1e9 if clock.value and width.value else None


def _time_ms(fn, iters: int) -> float:
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _copy_bandwidth_gbs(iters: int) -> float:
    import torch

    src = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src), iters)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def _inputs(h: int, w: int, k: int, dtype, offset_dtype):
    import torch

    g = torch.Generator(device="cuda").manual_seed(0)
    dev = "cuda"
    frames = [torch.rand((1, 3, h, w), generator=g, device=dev).to(dtype) for _ in range(2)]
    maps = []
    for _ in range(2):
        maps.append(torch.softmax(torch.randn((1, k * k, h, w), generator=g, device=dev), 1).to(dtype))
        maps.append((torch.randn((1, k * k, h, w), generator=g, device=dev) * 3).to(offset_dtype))
        maps.append((torch.randn((1, k * k, h, w), generator=g, device=dev) * 3).to(offset_dtype))
    occ = torch.rand((1, 1, h, w), generator=g, device=dev).to(dtype)
    return [frames[0], frames[1], *maps, occ]


def _traffic_bytes(inputs) -> int:
    # every input read once + the output (frame0's size) written once
    return sum(t.numel() * t.element_size() for t in inputs) + inputs[0].numel() * inputs[0].element_size()


def build_parser() -> argparse.ArgumentParser:
    from sfadacof.cli_args import ArgumentParser

    ap = ArgumentParser(prog="python -m plugins.benchmark", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["1080p", "4k"], choices=sorted(SIZES), help="frame sizes to time")
    ap.add_argument("--kernel-size", type=int, default=5, help="the op's kernel size K")
    ap.add_argument("--dilation", type=int, default=1, help="the op's dilation")
    ap.add_argument("--iters", type=int, default=20, help="timed calls per size (after warm-up)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference (slow, memory hungry)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from . import _libs

    problem = _libs.cuda_torch_problem("plugins.benchmark")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import torch

    from . import cuda_op

    try:
        cuda_op.library_path()
    except _libs.LibraryNotBuilt as e:
        print(f"plugins.benchmark: {e}", file=sys.stderr)
        return 2

    k, d = args.kernel_size, args.dilation
    dev = torch.cuda.current_device()
    peak = _peak_bandwidth_gbs(dev)
    copy_bw = _copy_bandwidth_gbs(args.iters)
    name = torch.cuda.get_device_name(dev)
    print(f"device: {name}; peak DRAM bandwidth {peak:.0f} GB/s" if peak else f"device: {name}; peak unknown",
          f"; measured D2D copy {copy_bw:.0f} GB/s; library {cuda_op.library_path()}")
    print(f"K={k} d={d} B=1 C=3, median of {args.iters} runs (CUDA events)")
    print(f"{'size':>6} {'impl':<26} {'ms':>9} {'GB/s':>8} {'%peak':>6} {'%copy':>6} {'speed-up':>9}")

    for size in args.sizes:
        h, w = SIZES[size]
        rows = []
        configs = [("fused f32", torch.float32, torch.float32, False),
                   ("naive f32 (original style)", torch.float32, torch.float32, True),
                   ("fused f16", torch.float16, torch.float16, False),
                   ("fused f16 + f32 offsets", torch.float16, torch.float32, False),
                   ("naive f16 (original style)", torch.float16, torch.float16, True)]
        for label, dtype, odt, naive in configs:
            inputs = _inputs(h, w, k, dtype, odt)
            out = torch.empty_like(inputs[0])
            ms = _time_ms(lambda: cuda_op.adacof_synthesis_cuda(*inputs, kernel_size=k, dilation=d, out=out,
                                                                naive=naive), args.iters)
            rows.append((label, ms, _traffic_bytes(inputs)))
            del inputs, out
        if not args.no_torch:
            from sfadacof.synthesis import fused_reference

            inputs = _inputs(h, w, k, torch.float32, torch.float32)
            rows.append(("pytorch reference f32", _time_ms(lambda: fused_reference(inputs, k, d),  # noqa: B023
                                                           max(3, args.iters // 4)), _traffic_bytes(inputs)))
            del inputs
            torch.cuda.empty_cache()
        base = {dt: ms for (label, ms, _) in rows for dt in ("f32", "f16") if label == f"fused {dt}"}
        for label, ms, nbytes in rows:
            gbs = nbytes / (ms * 1e-3) / 1e9
            dt = "f16" if "f16" in label else "f32"
            speed = ms / base[dt]
            print(f"{size:>6} {label:<26} {ms:9.3f} {gbs:8.0f} {100 * gbs / peak if peak else float('nan'):6.1f} "
                  f"{100 * gbs / copy_bw:6.1f} {speed:8.2f}x")
    print("speed-up = time / time of the fused kernel of the same tensor dtype (higher = fused is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
