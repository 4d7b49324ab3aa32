"""The FP16 CUDA backend for machines without TensorRT: `--backend torch --device cuda --precision fp16`.

What runs in which precision (the numerics rule: coordinates, offsets and the synthesis stay fp32):
  * kernel estimation (encoder, decoder, weight and occlusion heads): float16 convolutions in channels-last memory
    format, so cuDNN picks its tensor-core NHWC kernels;
  * the four offset heads (moduleAlpha1/Beta1/Alpha2/Beta2): float32 (TF32 off), fed the float16 decoder features
    upcast.
    An offset of several pixels keeps only 4-6 fractional bits in float16, and the fraction is the bilinear
    weight (plugins/README.md, "dtypes");
  * the synthesis: the fused CUDA kernel of libsfadacof_cuda (plugins.cuda_op, the one the TensorRT plugin
    launches) on float16 frames, weights and occlusion with the float32 offsets; inside it every offset, bilinear
    weight and accumulator is float32, only the store rounds to float16.
The padded frames, the kernel's output and the float32 result are allocated once per input shape and reused
across frames; the convolutions' activations come from torch's caching allocator, which reuses them too.

`mixed_precision_model` and `estimate_maps` hold the CPU-testable part (which modules stay float32, what the
estimation computes); `synthesize_reference` is the float32 PyTorch synthesis the CPU tests use in place of the
CUDA kernel.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from torch import Tensor, nn

from sfadacof.checkpoint import LoadedCheckpoint, load_checkpoint
from sfadacof.errors import UserError
from sfadacof.models import AdaCoFNet, KernelMaps, normalize, pad_to_multiple

from .base import Backend
from .torch_backend import checkpoint_description, no_tf32

#: heads whose outputs are offsets (alpha vertical, beta horizontal): kept in float32
OFFSET_HEADS: tuple[str, ...] = ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2")


class Float32Head(nn.Module):
    """Runs `head` in float32 on an upcast copy of its (float16) input; the output stays float32."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head.float().to(memory_format=torch.contiguous_format)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x.float().contiguous())


def mixed_precision_model(model: AdaCoFNet, dtype: torch.dtype = torch.float16) -> AdaCoFNet:
    """A copy of `model` whose kernel estimation runs in `dtype` with channels-last weights, except the offset
    heads, which are wrapped in Float32Head. The original model is left untouched."""
    m = copy.deepcopy(model).eval()
    est = m.get_kernel
    for name in OFFSET_HEADS:
        if not hasattr(est, name):
            raise ValueError(f"model has no offset head {name}")
    est.to(dtype=dtype, memory_format=torch.channels_last)
    for name in OFFSET_HEADS:
        setattr(est, name, Float32Head(getattr(est, name)))
    return m


def estimate_maps(model: AdaCoFNet, f0: Tensor, f2: Tensor, dtype: torch.dtype = torch.float16) -> KernelMaps:
    """Kernel maps of a mixed_precision_model for float32 frames already padded to a multiple of 32: weights and
    occlusion in `dtype`, offsets in float32."""
    x0 = normalize(f0).to(dtype).contiguous(memory_format=torch.channels_last)
    x2 = normalize(f2).to(dtype).contiguous(memory_format=torch.channels_last)
    maps = model.get_kernel(x0, x2)
    # NCHW contiguous, as the synthesis kernel reads them
    return KernelMaps(*(t.contiguous() for t in maps.as_tuple()))


def synthesize_reference(model: AdaCoFNet, f0: Tensor, f2: Tensor, maps: KernelMaps) -> Tensor:
    """The synthesis in float32 PyTorch (sfadacof.synthesis) on the same maps: the CPU stand-in for the kernel."""
    m32 = KernelMaps(*(t.float() for t in maps.as_tuple()))
    return model.synthesize(f0.float(), f2.float(), m32)


class TorchCudaFp16Backend(Backend):
    name = "torch"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: str = "cuda",
                 variant: str | None = None, loaded: LoadedCheckpoint | None = None, impl: str = "fused") -> None:
        if not device.startswith("cuda"):
            raise UserError(f"--precision fp16 with --backend torch needs --device cuda (got {device}); "
                            "on a CPU use --precision fp32 or --backend ort --precision fp16")
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: this torch build or machine has no CUDA")
        from plugins import _libs, cuda_op

        try:
            cuda_op.library_path()
        except _libs.LibraryNotBuilt as e:
            raise UserError(f"--precision fp16: {e}") from None
        self._cuda_op = cuda_op
        self.impl = impl
        self.ckpt = loaded if loaded is not None else load_checkpoint(checkpoint, variant=variant)
        self.device = torch.device(device)
        self.model = mixed_precision_model(self.ckpt.model).to(self.device)
        self._buffers: dict[tuple, dict[str, Tensor]] = {}

    def _buffers_for(self, shape: tuple[int, ...], padded: tuple[int, ...]) -> dict[str, Tensor]:
        key = (shape, padded)
        if key not in self._buffers:
            self._buffers.clear()  # one shape at a time: a video keeps its size
            pin = torch.cuda.is_available()
            self._buffers[key] = {
                "in0": torch.empty(shape, dtype=torch.float32, pin_memory=pin),
                "in2": torch.empty(shape, dtype=torch.float32, pin_memory=pin),
                "out16": torch.empty(padded, dtype=torch.float16, device=self.device),
                "result": torch.empty(shape, dtype=torch.float32, pin_memory=pin),
            }
        return self._buffers[key]

    def forward_gpu(self, f0: Tensor, f2: Tensor, out16: Tensor | None = None) -> Tensor:
        """float32 CUDA frames (B, 3, H, W) -> float16 middle frames at the 32-padded size (on the device).
        The float32 offset heads run without TF32, and cuDNN benchmarks its kernels (fixed frame sizes: the fastest
        NHWC fp16 ones), both only while this runs (no_tf32)."""
        m = self.model
        p0, p2 = pad_to_multiple(f0), pad_to_multiple(f2)
        with no_tf32(cudnn_benchmark=True):
            maps = estimate_maps(m, p0, p2)
        h0, h2 = p0.half(), p2.half()
        return self._cuda_op.adacof_synthesis_cuda(h0, h2, *maps.as_tuple(), kernel_size=m.kernel_size,
                                                   dilation=m.dilation, out=out16, impl=self.impl)

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        frame0 = np.ascontiguousarray(frame0, dtype=np.float32)
        frame2 = np.ascontiguousarray(frame2, dtype=np.float32)
        b, c, h, w = frame0.shape
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        buf = self._buffers_for((b, c, h, w), (b, c, ph, pw))
        with torch.inference_mode():
            buf["in0"].numpy()[...] = frame0
            buf["in2"].numpy()[...] = frame2
            f0 = buf["in0"].to(self.device, non_blocking=True)
            f2 = buf["in2"].to(self.device, non_blocking=True)
            out16 = self.forward_gpu(f0, f2, out16=buf["out16"])
            buf["result"].copy_(out16[:, :, :h, :w])
            torch.cuda.current_stream(self.device).synchronize()
            return buf["result"].numpy().copy()

    def describe(self) -> dict:
        return {"backend": self.name, "precision": "fp16", "device": str(self.device), "torch": torch.__version__,
                "fp16_layout": "channels_last convolutions; offset heads fp32; synthesis: libsfadacof_cuda "
                               f"{self.impl} kernel (fp16 tensors, fp32 offsets, fp32 arithmetic)",
                **checkpoint_description(self.ckpt)}

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._buffers.clear()


def _main(argv: list[str] | None = None) -> int:
    """Timing helper for plugins.gpu_check (run as a subprocess: plugins may not import runtime):
    python -m runtime.backends.torch_cuda_fp16 --frames IN.npz --out OUT.npz [--iters N] [--impl fused|tiled]
    reads frame0/frame2 (float32 NCHW), writes the middle frame (float32) and ms per frame (median, CUDA events)."""
    import argparse
    import json
    import statistics

    from sfadacof.outputs import atomic_path

    ap = argparse.ArgumentParser(prog="python -m runtime.backends.torch_cuda_fp16")
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--impl", default="fused", choices=("fused", "tiled"))
    args = ap.parse_args(argv)
    try:
        with np.load(args.frames) as z:
            frame0, frame2 = z["frame0"], z["frame2"]
        be = TorchCudaFp16Backend(args.checkpoint, impl=args.impl)
    except (UserError, OSError, KeyError, ValueError) as e:
        print(f"torch_cuda_fp16: {e}")
        return 2
    out = be.infer(frame0, frame2)  # warm-up (cuDNN autotuning, kernel load)
    f0 = torch.from_numpy(frame0).to(be.device)
    f2 = torch.from_numpy(frame2).to(be.device)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            be.forward_gpu(f0, f2)
        for _ in range(args.iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            be.forward_gpu(f0, f2)
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, out=out)
    print(json.dumps({"ms_per_frame_gpu": statistics.median(times), "impl": args.impl,
                      "backend": be.describe()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
