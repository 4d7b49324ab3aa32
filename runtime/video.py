"""Frame-rate up-conversion of a video (or a folder of sequential frames) by 2, 4 or 8 with recursive midpoints.

Streaming: frames are decoded, interpolated and encoded one at a time (two input frames in memory, plus the
log2(factor) levels of midpoints), never extracted to disk first.

Timing: the output is constant frame rate, input rate x factor (25 fps -> 50 fps for --factor 2), and starts at the
input's first video timestamp so that the audio stays in sync. N input frames give N x factor output frames: the last
input frame is held for factor frames, so that the video lasts exactly as long as the input (and its audio).
A variable-frame-rate input is resampled onto that constant grid (frame i of the input at i / rate).

Audio: every audio stream is copied packet for packet (no re-encoding), timestamps rescaled by the muxer.

Scene cuts (--scene-cut T): when the mean absolute difference of two consecutive frames (RGB in [0, 1]) exceeds T,
the in-between frames repeat the earlier frame instead of morphing across the cut.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from sfadacof.errors import UserError

from .backends.base import Backend
from .backends.registry import BackendOptions, create_backend
from .media import MIN_SIZE, default_file_mode, hwc_to_nchw, load_image, nchw_to_hwc, root_images, save_png_rgb8, to_uint8

VIDEO_OUTPUT_EXTENSIONS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".m4v": "mp4"}
DEFAULT_FOLDER_FPS = Fraction(25)


@dataclass
class VideoStats:
    frames_in: int = 0
    frames_out: int = 0
    interpolated: int = 0
    scene_cuts: list[int] = field(default_factory=list)  # index of the input frame after each cut
    infer_seconds: float = 0.0


def scene_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames in [0, 1] (any layout)."""
    return float(np.mean(np.abs(a - b)))


def midpoints(backend: Backend, a: np.ndarray, b: np.ndarray, depth: int, stats: VideoStats) -> list[np.ndarray]:
    """The 2**depth - 1 frames strictly between a and b (NCHW float32), in time order, by recursive midpoints."""
    if depth == 0:
        return []
    t0 = time.perf_counter()
    # Clip before re-feeding: the model was trained on frames in [0, 1] and its raw output can overshoot slightly.
    m = np.clip(backend.infer(a, b), 0.0, 1.0).astype(np.float32)
    stats.infer_seconds += time.perf_counter() - t0
    stats.interpolated += 1
    return midpoints(backend, a, m, depth - 1, stats) + [m] + midpoints(backend, m, b, depth - 1, stats)


def upconvert(backend: Backend, frames: Iterator[np.ndarray], factor: int, scene_cut: float | None,
              stats: VideoStats) -> Iterator[np.ndarray]:
    """Input frames (H, W, 3 float32) -> output frames (H, W, 3 uint8), factor per input frame."""
    depth = int(math.log2(factor))
    if 2 ** depth != factor:
        raise UserError(f"--factor {factor}: must be 2, 4 or 8")
    prev: np.ndarray | None = None
    for cur_hwc in frames:
        cur = hwc_to_nchw(cur_hwc)
        stats.frames_in += 1
        if prev is not None:
            yield to_uint8(nchw_to_hwc(prev))
            if scene_cut is not None and scene_change(prev, cur) > scene_cut:
                stats.scene_cuts.append(stats.frames_in - 1)
                inner = [prev] * (factor - 1)
            else:
                inner = midpoints(backend, prev, cur, depth, stats)
            for m in inner:
                yield to_uint8(nchw_to_hwc(m))
        prev = cur
    if prev is not None:
        last = to_uint8(nchw_to_hwc(prev))
        for _ in range(factor):  # hold the last frame: duration (and audio sync) preserved
            yield last


def _check_size(w: int, h: int, what: Path) -> None:
    if w < MIN_SIZE or h < MIN_SIZE:
        raise UserError(f"{what}: frames are {w}x{h}; frames must be at least {MIN_SIZE}x{MIN_SIZE}")


class _Sink:
    def add(self, rgb8: np.ndarray) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class FolderSink(_Sink):
    """PNG frames frame_000000.png, ... (each written atomically)."""

    def __init__(self, folder: Path) -> None:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: exists and is not a folder")
        self.folder, self.n = folder, 0

    def add(self, rgb8: np.ndarray) -> None:
        save_png_rgb8(self.folder / f"frame_{self.n:06d}.png", rgb8)
        self.n += 1


class VideoSink(_Sink):
    """H.264 video (plus copied audio streams) written to a temp file, renamed over the target on close."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, start_seconds: float,
                 crf: int, audio_templates: list) -> None:
        import av

        fmt = VIDEO_OUTPUT_EXTENSIONS.get(path.suffix.lower())
        if fmt is None:
            raise UserError(f"{path}: output video must end in {', '.join(VIDEO_OUTPUT_EXTENSIONS)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        self.path, self.tmp = path, Path(tmp)
        self.container = av.open(str(self.tmp), "w", format=fmt)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width, height
        # 4:2:0 needs even sizes; for odd ones keep every pixel with 4:4:4 rather than crop or pad the picture
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        # The muxer may replace stream.time_base once the header is written (mp4: 1/12800), so frames carry
        # their own time base, 1/output rate, and the encoder/muxer rescale from it.
        self.frame_time_base = Fraction(1, 1) / rate
        self.stream.time_base = self.frame_time_base
        self.stream.options = {"crf": str(crf), "preset": "medium"}
        self.audio = {}
        for tpl in audio_templates:
            out = self.container.add_stream_from_template(tpl)
            self.audio[tpl.index] = out
        self.pts0 = round(start_seconds * rate)
        self.n = 0

    def add(self, rgb8: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(rgb8, format="rgb24")
        frame.pts = self.pts0 + self.n
        frame.time_base = self.frame_time_base
        self.n += 1
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)

    def add_audio_packet(self, packet) -> None:
        if packet.dts is None:  # demuxer flush packets carry no data
            return
        packet.stream = self.audio[packet.stream.index]
        self.container.mux(packet)

    def close(self) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        os.chmod(self.tmp, default_file_mode())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already broken; the temp file is removed either way
            pass
        self.tmp.unlink(missing_ok=True)


def _open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV: InvalidDataError, FileNotFoundError, ...
        raise UserError(f"{path}: cannot open video ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path}: has no video stream")
    return container


def run_video(backend: Backend, src: Path, dst: Path, *, factor: int, scene_cut: float | None = None,
              fps: float | None = None, crf: int = 18) -> dict:
    """Up-convert `src` (video file or frames folder) into `dst` (video file or frames folder); returns a report."""
    stats = VideoStats()
    to_video = dst.suffix.lower() in VIDEO_OUTPUT_EXTENSIONS
    container = None
    sink: _Sink | None = None
    try:
        if src.is_dir():
            paths = root_images(src)
            if len(paths) < 2:
                raise UserError(f"{src}: a frame sequence needs at least 2 images, found {len(paths)}")
            rate = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FOLDER_FPS
            first = load_image(paths[0])
            w, h = first.size
            _check_size(w, h, paths[0])

            def folder_frames() -> Iterator[np.ndarray]:
                for p in paths:
                    img = first if p == paths[0] else load_image(p)
                    if img.size != (w, h):
                        raise UserError(f"{p}: size {img.size[0]}x{img.size[1]} differs from {paths[0].name} ({w}x{h})")
                    yield img.rgb

            frames, audio, start, total = folder_frames(), [], 0.0, len(paths)
            packets = None
        else:
            container = _open_video(src)
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            w, h = vs.codec_context.width, vs.codec_context.height
            _check_size(w, h, src)
            rate = Fraction(fps).limit_denominator(1001) if fps else (vs.average_rate or vs.guessed_rate)
            if not rate:
                raise UserError(f"{src}: frame rate unknown; pass --fps")
            audio = list(container.streams.audio)
            start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
            total = vs.frames or None
            packets = container.demux(vs, *audio)
            frames = None
        out_rate = Fraction(rate) * factor
        if to_video:
            sink = VideoSink(dst, w, h, out_rate, start, crf, audio)
        else:
            sink = FolderSink(dst)

        if frames is None:
            def video_frames() -> Iterator[np.ndarray]:
                for pkt in packets:
                    if pkt.stream.type == "audio":
                        if isinstance(sink, VideoSink):
                            sink.add_audio_packet(pkt)
                        continue
                    for fr in pkt.decode():
                        yield fr.to_ndarray(format="rgb24").astype(np.float32) / np.float32(255.0)

            frames = video_frames()

        from .infer import progress

        t0 = time.perf_counter()
        for rgb8 in progress(upconvert(backend, frames, factor, scene_cut, stats),
                             total=total * factor if total else None, desc="interpolating", unit="frame"):
            sink.add(rgb8)
            stats.frames_out += 1
        if stats.frames_in < 2:
            raise UserError(f"{src}: needs at least 2 video frames, decoded {stats.frames_in}")
        sink.close()
        wall = time.perf_counter() - t0
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        if container is not None:
            container.close()
    return {"input": src, "output": dst, "backend": backend.describe(), "factor": factor,
            "fps_in": float(rate), "fps_out": float(out_rate), "fps_out_exact": str(out_rate),
            "frames_in": stats.frames_in, "frames_out": stats.frames_out, "interpolated": stats.interpolated,
            "scene_cut_threshold": scene_cut, "scene_cuts_before_input_frames": stats.scene_cuts,
            "audio_streams_copied": len(audio) if to_video else 0,
            "seconds_infer": stats.infer_seconds, "seconds_total": wall,
            "seconds_per_interpolated_frame": stats.infer_seconds / max(stats.interpolated, 1)}


def run_video_cli(args, options: BackendOptions) -> int:
    """`runtime.infer` on a video file or a frames folder (called by runtime.infer.main)."""
    from .infer import write_json

    if args.check:
        raise UserError("--check works on pairs folders; run runtime.accuracy on pairs extracted from the video")
    if args.scene_cut is not None and not 0 < args.scene_cut <= 1:
        raise UserError(f"--scene-cut {args.scene_cut}: must be in (0, 1]")
    if args.output.resolve() == args.input.resolve():
        raise UserError(f"{args.output}: output would overwrite the input")
    with create_backend(args.backend, options) as backend:
        report = run_video(backend, args.input, args.output, factor=args.factor, scene_cut=args.scene_cut,
                           fps=args.fps, crf=args.crf)
    if args.report:
        write_json(args.report, report)
    print(f"{report['frames_in']} frames @ {report['fps_in']:g} fps -> {report['frames_out']} frames @ "
          f"{report['fps_out']:g} fps -> {args.output} ({len(report['scene_cuts_before_input_frames'])} scene cut(s), "
          f"{report['seconds_per_interpolated_frame']:.3f} s per interpolated frame)", file=sys.stdout)
    return 0
