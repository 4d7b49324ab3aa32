"""Frame-rate up-conversion of a video (or a folder of sequential frames) by 2, 4 or 8 with recursive midpoints.

Streaming: frames are decoded, interpolated and encoded one at a time (two input frames in memory, plus the
log2(factor) levels of midpoints), never extracted to disk first.

Timing: every output frame's presentation time comes from the source timestamps: input frame i keeps its own time
t_i, and the k-th of the factor - 1 frames between t_i and t_i+1 is shown at t_i + k (t_i+1 - t_i) / factor. A
constant-rate input gives a constant-rate output at input rate x factor (25 fps -> 50 fps for --factor 2); a
variable-frame-rate input stays variable, so the audio (whose packets keep their times) stays in sync. N input
frames give N x factor output frames: the last input frame is held for factor frames over the previous interval, so
the video lasts as long as the input. Timestamps that do not increase are refused in one line.
Frame folders are timed at --input-fps (default 25).

Any target rate (--fps F, e.g. 60 from 23.976, 25 or 29.97): the model makes midpoints only, so output frame j, at
T_j = t_0 + j / F, shows the surrounding source pair's recursive midpoint nearest to T_j among the times
t_i + k/2^D (t_i+1 - t_i), D = --max-depth (default 3: eighths), made to the depth that time needs; where the
nearest is a source frame (k = 0 or 2^D, e.g. every 5th frame of 24 -> 60 is on a source frame) that frame is kept
as is. The output's timestamps are the exact T_j, the audio is copied untouched, so both stay in sync; the report
gives every frame's timing error |time shown - T_j| as its worst (timing_error_max_ms, also on the summary line) and
mean. After the last source frame it is held for the previous interval, as a player shows it (no error counted).

Size: H.264 in 4:2:0 (yuv420p, what players expect) needs even sizes; an odd width or height is padded by one
replicated column/row (the report and a note on stderr say so). Other containers than .mp4/.mkv/.mov/.m4v (.avi,
.webm, ...) are refused rather than written as something else.

Audio: every audio stream is copied packet for packet (no re-encoding), timestamps rescaled by the muxer.

Pipes: input "-" reads a y4m (yuv4mpegpipe) stream from stdin (8-bit 4:2:0 in any chroma siting, 4:2:2, 4:4:4 or
mono; deeper streams are refused in one line); output "-" writes y4m (4:2:0, the output rate) to stdout, and every
message and progress line goes to stderr (file descriptor 1 is pointed at stderr meanwhile). y4m carries no audio:
    ffmpeg -i in.mkv -f yuv4mpegpipe - | python -m runtime.infer - -o - --factor 2 | ffmpeg -i - out.mkv

Check (--check, --visual DIR): every call of the model is judged against PyTorch on the same inputs
(runtime.accuracy.CheckedBackend), rows in the report's `checked_frames`, exit 1 past the bound; runtime.visual draws
the first and the worst.

Scene cuts (--scene-cut T): when the mean absolute difference of two consecutive frames (RGB in [0, 1]) exceeds T,
the in-between frames repeat the earlier frame instead of morphing across the cut.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from sfadacof.errors import UserError
from sfadacof.images import MIN_SIZE, check_pixel_budget, hwc_to_nchw, load_image, nchw_to_hwc, save_png_rgb8, to_uint8
from sfadacof.outputs import VIDEO_MARK, StagedFolder, default_file_mode, temp_path_beside
from sfadacof.progress import Progress, per_unit
from sfadacof.video_decode import av_message, open_video, open_y4m

from .backends.base import Backend
from .pairs import root_images
from .report import write_json

VIDEO_OUTPUT_EXTENSIONS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".m4v": "mp4"}
# Names that look like a video but are not written here: refused instead of becoming a folder of PNGs.
UNSUPPORTED_VIDEO_OUTPUTS = frozenset({".avi", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".gif", ".y4m",
                                       ".ogv", ".3gp"})


def check_video_output_name(dst: Path) -> None:
    """UserError for an output name with a video extension this writer does not produce."""
    if dst.suffix.lower() in UNSUPPORTED_VIDEO_OUTPUTS:
        raise UserError(f"{dst}: writing {dst.suffix} is not supported; name a {', '.join(VIDEO_OUTPUT_EXTENSIONS)} "
                        "file, or a folder (no extension) for PNG frames")
DEFAULT_FOLDER_FPS = Fraction(25)
OUTPUT_FRAME = "output frame"  # the unit of the progress lines and of the summary's s/output frame


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


def inner_frames(backend: Backend, prev: np.ndarray, cur: np.ndarray, depth: int, scene_cut: float | None,
                 stats: VideoStats, index: int) -> list[np.ndarray]:
    """The 2**depth - 1 output frames (H, W, 3) uint8 between input frames `index` (prev) and `index` + 1 (cur), both
    NCHW float32: recursive midpoints, or prev repeated across a scene cut. Depends on the two frames only, which is
    what lets runtime.batch compute spans of a video on different workers."""
    if scene_cut is not None and scene_change(prev, cur) > scene_cut:
        stats.scene_cuts.append(index + 1)
        return [to_uint8(nchw_to_hwc(prev))] * (2 ** depth - 1)
    return [to_uint8(nchw_to_hwc(m)) for m in midpoints(backend, prev, cur, depth, stats)]


def upconvert(backend: Backend | None, frames: Iterator[tuple[np.ndarray, int]], factor: int, scene_cut: float | None,
              stats: VideoStats, between: Callable[[int], list[np.ndarray]] | None = None
              ) -> Iterator[tuple[np.ndarray, int]]:
    """Input (frame (H, W, 3) float32, pts) -> output (frame (H, W, 3) uint8, pts), factor per input frame.

    Input pts are integers in some time base tb; output pts are in tb / factor, so that the in-between times
    t_i + k (t_i+1 - t_i) / factor are integers too (see the module doc). `between(i)`, when given, supplies the
    in-between frames of input frames i and i + 1 already computed (runtime.batch's spans) instead of the backend."""
    depth = int(math.log2(factor))
    if 2 ** depth != factor:
        raise UserError(f"--factor {factor}: must be 2, 4 or 8")
    prev: np.ndarray | None = None
    prev_pts = step = 0
    for cur_hwc, pts in frames:
        cur = hwc_to_nchw(cur_hwc)
        stats.frames_in += 1
        if prev is not None:
            if pts <= prev_pts:
                raise UserError(f"frame {stats.frames_in - 1}: timestamp {pts} does not follow {prev_pts}; "
                                "the video's timestamps are broken (re-mux it, e.g. ffmpeg -i IN -c copy OUT)")
            step = pts - prev_pts
            yield to_uint8(nchw_to_hwc(prev)), prev_pts * factor
            i = stats.frames_in - 2
            inner = between(i) if between is not None else inner_frames(backend, prev, cur, depth, scene_cut,
                                                                        stats, i)
            for k, m in enumerate(inner, start=1):
                yield m, prev_pts * factor + k * step
        prev, prev_pts = cur, pts
    if prev is not None:
        last = to_uint8(nchw_to_hwc(prev))
        for k in range(factor):  # hold the last frame over the previous interval: duration (and audio sync) kept
            yield last, prev_pts * factor + k * step


DEFAULT_MAX_DEPTH = 3  # --fps: eighths of a source interval; the worst timing error is 1/16 of one (2.6 ms at 24 fps)


def _gcd_time_base(a: Fraction, b: Fraction) -> Fraction:
    """The largest time base of which both `a` and `b` are integer multiples."""
    return Fraction(math.gcd(a.numerator, b.numerator), math.lcm(a.denominator, b.denominator))


@dataclass
class RetimeStats:
    """--fps: the timing error of every output frame (seconds between its output time and the time its content
    shows), and how each frame was made."""

    errors: list[Fraction] = field(default_factory=list)
    kept: int = 0          # a source frame as is (the output time is on it, or nearest at this depth)
    made: int = 0          # a midpoint of the surrounding pair
    held: int = 0          # after the last source frame: it is held for the previous interval (no error counted)
    depth_used: int = 0    # the deepest midpoint any output frame needed


def retime(backend: Backend | None, frames: Iterator[tuple[np.ndarray, int]], time_base: Fraction,
           out_rate: Fraction, max_depth: int, scene_cut: float | None, stats: VideoStats, rs: RetimeStats
           ) -> Iterator[tuple[np.ndarray, Fraction]]:
    """Input (frame (H, W, 3) float32, pts in time_base) -> output (frame (H, W, 3) uint8, time in seconds) at
    out_rate: output time T_j = t_0 + j / out_rate while T_j < t_last + (t_last - t_prev) (the duration is kept).

    For T_j in [t_i, t_i+1), with f = (T_j - t_i) / (t_i+1 - t_i), the frame shown is the pair's recursive midpoint at
    q = round(f * 2**max_depth) / 2**max_depth (the nearest time available at that depth, ties to the later one),
    made to the depth q needs (q = 3/8: midpoints 1/2, 1/4, 3/8; q = 0 or 1: the source frame itself, kept as is).
    Midpoints are shared between the output frames of a pair. Across a scene cut the nearest source frame is shown.
    """
    scale = 2 ** max_depth
    prev = cur = None
    t_prev = t_cur = None
    j = 0
    t0 = None
    for cur_hwc, pts in frames:
        cur, t_cur = hwc_to_nchw(cur_hwc), Fraction(pts) * time_base
        stats.frames_in += 1
        if t0 is None:
            t0 = t_cur
        if prev is not None:
            if t_cur <= t_prev:
                raise UserError(f"frame {stats.frames_in - 1}: timestamp {pts} does not follow the previous one; "
                                "the video's timestamps are broken (re-mux it, e.g. ffmpeg -i IN -c copy OUT)")
            cut = scene_cut is not None and scene_change(prev, cur) > scene_cut
            if cut:
                stats.scene_cuts.append(stats.frames_in - 1)
            memo = {Fraction(0): prev, Fraction(1): cur}
            while (t_out := t0 + j / out_rate) < t_cur:
                f = (t_out - t_prev) / (t_cur - t_prev)
                q = Fraction(math.floor(f * scale + Fraction(1, 2)), scale)
                if cut:
                    q = Fraction(0 if f < Fraction(1, 2) else 1)
                frame = _dyadic(backend, memo, q, stats)
                rs.errors.append(abs(t_prev + q * (t_cur - t_prev) - t_out))
                if q in (0, 1):
                    rs.kept += 1
                else:
                    rs.made += 1
                    rs.depth_used = max(rs.depth_used, int(math.log2(q.denominator)))
                yield to_uint8(nchw_to_hwc(frame)), t_out
                j += 1
        prev, t_prev_last, t_prev = cur, t_prev, t_cur
    if prev is not None and stats.frames_in >= 2:
        end = t_cur + (t_cur - t_prev_last)  # the last frame shows for the previous interval
        last = to_uint8(nchw_to_hwc(prev))
        while (t_out := t0 + j / out_rate) < end:
            rs.held += 1
            yield last, t_out
            j += 1


def _dyadic(backend: Backend | None, memo: dict, q: Fraction, stats: VideoStats) -> np.ndarray:
    """The pair's frame at dyadic time q (NCHW float32), from the midpoint of its two parents at the depth above."""
    if q not in memo:
        lo, hi = q - Fraction(1, q.denominator), q + Fraction(1, q.denominator)
        a, b = _dyadic(backend, memo, lo, stats), _dyadic(backend, memo, hi, stats)
        t0 = time.perf_counter()
        memo[q] = np.clip(backend.infer(a, b), 0.0, 1.0).astype(np.float32)  # clipped before re-feeding, as midpoints
        stats.infer_seconds += time.perf_counter() - t0
        stats.interpolated += 1
    return memo[q]


# -- spans: the in-between frames of input frames [a, b], computed apart (runtime.batch) ----------------------------

def check_same_size(src: Path, index: int, width: int, height: int, w: int, h: int) -> None:
    """Frame `index` of `src` must have the stream's size: a video that changes size mid-stream (a resolution switch,
    spliced clips) has no pair to interpolate across the change, nor one output size."""
    if (width, height) != (w, h):
        raise UserError(f"{src}: frame {index} is {width}x{height}, the video starts at {w}x{h}; a video that changes "
                        f"size is not supported (scale it to one size first, e.g. ffmpeg -i IN -vf scale={w}:{h} OUT)")


def compute_span(backend: Backend, src: Path, span_file: Path, start: int, stop: int, *, factor: int,
                 scene_cut: float | None = None, max_pixels: int | None = None) -> int:
    """Write the in-between frames of input frames start..stop (the pairs (start, start+1) ... (stop-1, stop)) of the
    video `src` to `span_file` (npz, atomically); returns how many frames it holds."""
    from sfadacof.outputs import atomic_path
    from sfadacof.video_decode import decode_rgb

    depth = int(math.log2(factor))
    stats = VideoStats()
    inner: list[np.ndarray] = []
    prev = None
    seen = start
    size = None
    for i, rgb in decode_rgb(src, start, stop + 1):
        if prev is None:
            check_pixel_budget(src, rgb.shape[1], rgb.shape[0], max_pixels, video=True)
        size = size or (rgb.shape[1], rgb.shape[0])
        check_same_size(src, i, rgb.shape[1], rgb.shape[0], *size)
        cur = hwc_to_nchw(rgb.astype(np.float32) / np.float32(255.0))  # as run_video decodes
        if prev is not None:
            inner.extend(inner_frames(backend, prev, cur, depth, scene_cut, stats, i - 1))
        prev, seen = cur, i
    if prev is None or seen != stop:
        raise UserError(f"{src}: decoded frames up to {seen}, the span needs {start}..{stop} (a corrupt or "
                        "truncated video?)")
    with atomic_path(span_file, suffix=".npz") as tmp:
        np.savez(tmp, frames=np.stack(inner), start=start, stop=stop, factor=factor, scene_cuts=np.array(stats.scene_cuts, int))
    return len(inner)


class SpanFrames:
    """`between(i)` for upconvert from span files; one span in memory at a time (they are read in order)."""

    def __init__(self, spans: list[Path], factor: int) -> None:
        self.factor, self.index, self.loaded = factor, [], None
        for p in spans:
            with np.load(p) as z:
                a, b, f = int(z["start"]), int(z["stop"]), int(z["factor"])
            if f != factor:
                raise UserError(f"{p}: computed for --factor {f}, not {factor}")
            self.index.append((a, b, p))
        self.index.sort()
        self.scene_cuts: list[int] = []

    def __call__(self, i: int) -> list[np.ndarray]:
        if self.loaded is None or not self.loaded[0] <= i < self.loaded[1]:
            span = next(((a, b, p) for a, b, p in self.index if a <= i < b), None)
            if span is None:
                raise UserError(f"no computed span holds input frame {i}")
            with np.load(span[2]) as z:
                self.loaded = (span[0], span[1], z["frames"])
                self.scene_cuts.extend(int(c) for c in z["scene_cuts"])
        a, _, frames = self.loaded
        n = self.factor - 1
        return list(frames[(i - a) * n:(i - a + 1) * n])


def assemble_spans(src: Path, dst: Path, spans: list[Path], *, factor: int, crf: int = 18,
                   max_pixels: int | None = None) -> int:
    """Write `dst` from `src` and its computed spans with run_video's own writer (timestamps, audio); returns the
    number of output frames."""
    report = run_video(None, src, dst, factor=factor, crf=crf, max_pixels=max_pixels,
                       between=SpanFrames(spans, factor))
    return report["frames_out"]


def _check_size(w: int, h: int, what: Path) -> None:
    if w < MIN_SIZE or h < MIN_SIZE:
        raise UserError(f"{what}: frames are {w}x{h}; frames must be at least {MIN_SIZE}x{MIN_SIZE}")


class _Sink:
    def add(self, rgb8: np.ndarray) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class FolderSink(_Sink):
    """PNG frames frame_000000.png, ..., written into a hidden staging folder that is renamed into place (absent or
    empty: check_outputs' `whole` rule refuses anything else) only when the whole video is done: a failed or
    interrupted run leaves no partial sequence, and frames never mix with files already there."""

    def __init__(self, folder: Path) -> None:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: exists and is not a folder")
        self.folder, self.n = folder, 0
        self.staged = StagedFolder(folder)

    def add(self, rgb8: np.ndarray, pts: int = 0) -> None:
        name = f"frame_{self.n:06d}.png"
        try:
            save_png_rgb8(self.staged.path(name), rgb8)
        except OSError as e:  # name the output, not the hidden staging file
            raise OSError(e.errno, e.strerror or str(e), str(self.folder / name)) from None
        self.n += 1

    def close(self) -> None:
        self.staged.commit()

    def abort(self) -> None:
        self.staged.abort()


class VideoSink(_Sink):
    """H.264 video (plus copied audio streams) written to a temp file, renamed over the target on close."""

    def __init__(self, path: Path, width: int, height: int, rate: Fraction, time_base: Fraction,
                 crf: int, audio_templates: list) -> None:
        import av

        fmt = VIDEO_OUTPUT_EXTENSIONS.get(path.suffix.lower())
        if fmt is None:
            raise UserError(f"{path}: output video must end in {', '.join(VIDEO_OUTPUT_EXTENSIONS)}")
        self.path, self.tmp = path, temp_path_beside(path, suffix=path.suffix)
        try:
            self.container = av.open(str(self.tmp), "w", format=fmt)
            # whose file it is: runtime.batch resumes over its own finished video, never over a user's
            self.container.metadata[VIDEO_MARK[0]] = VIDEO_MARK[1]
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.stream = self.container.add_stream("libx264", rate=rate)
        # 4:2:0 needs even sizes: an odd width/height is padded by one replicated column/row (see add)
        self.pad = (height % 2, width % 2)
        self.stream.width, self.stream.height = width + self.pad[1], height + self.pad[0]
        self.stream.pix_fmt = "yuv420p"
        # The muxer may replace stream.time_base once the header is written (mp4: 1/12800), so frames carry
        # their own time base (the source's divided by the factor) and the encoder/muxer rescale from it.
        self.frame_time_base = time_base
        self.stream.time_base = self.frame_time_base
        # the encoder's own clock: left at 1/rate it would round variable-rate times onto a coarse grid
        self.stream.codec_context.time_base = self.frame_time_base
        # mbtree=0: with macroblock-tree rate control on, this libx264 build (its AVX-512 code: asm limited to AVX2
        # gives one file) encodes the same frames to different bitstreams run to run, even single-threaded (measured:
        # 2-6 distinct files in 8-12 encodes; up to 18 levels apart once decoded), so users diffing two runs saw
        # noise. Without it: one file in every repeat, any thread count. The cost is a few % of bitrate at a CRF.
        self.stream.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
        self.audio = {}
        for tpl in audio_templates:
            out = self.container.add_stream_from_template(tpl)
            self.audio[tpl.index] = out
        self.n = 0

    def _write_error(self, e: Exception) -> OSError:
        """An encoder/muxer failure (full disk, I/O error) as an OSError naming the OUTPUT: exit 1, not 'corrupt
        input'."""
        errno_ = getattr(e, "errno", None)
        what = getattr(e, "strerror", None) or str(e)
        return OSError(errno_, f"cannot write the video ({what})", str(self.path))

    def add(self, rgb8: np.ndarray, pts: int = 0) -> None:
        import av

        if any(self.pad):
            rgb8 = np.pad(rgb8, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb8, format="rgb24")
        frame.pts = pts
        frame.time_base = self.frame_time_base
        self.n += 1
        try:
            for pkt in self.stream.encode(frame):
                self.container.mux(pkt)
        except (av.FFmpegError, OSError) as e:
            raise self._write_error(e) from None

    def add_audio_packet(self, packet) -> None:
        import av

        if packet.dts is None:  # demuxer flush packets carry no data
            return
        packet.stream = self.audio[packet.stream.index]
        try:
            self.container.mux(packet)
        except (av.FFmpegError, OSError) as e:
            raise self._write_error(e) from None

    def close(self) -> None:
        import av

        try:
            for pkt in self.stream.encode():
                self.container.mux(pkt)
            self.container.close()
        except (av.FFmpegError, OSError) as e:
            raise self._write_error(e) from None
        os.chmod(self.tmp, default_file_mode())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # already broken; the temp file is removed either way
            pass
        self.tmp.unlink(missing_ok=True)


class Y4MSink(_Sink):
    """8-bit 4:2:0 frames as a yuv4mpegpipe stream on `stream` (runtime.infer ... -o -: stdout), which ffmpeg -i -
    reads. y4m has one constant rate and no audio: frames are written in order at the output rate."""

    def __init__(self, stream, width: int, height: int, rate: Fraction) -> None:
        import av

        self.container = av.open(stream, "w", format="yuv4mpegpipe")
        self.stream = self.container.add_stream("wrapped_avframe", rate=rate)  # the muxer's raw-frame codec
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.n = 0

    def add(self, rgb8: np.ndarray, pts: int = 0) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(rgb8, format="rgb24")  # the encoder converts to yuv420p (swscale)
        frame.pts = self.n
        self.n += 1
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)

    def close(self) -> None:
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # a reader that went away: nothing more to write either way
            pass


@contextmanager
def stdout_for_stream():
    """A binary file on the process's stdout for a y4m stream; meanwhile file descriptor 1 and sys.stdout point to
    stderr, so no message (ours, a library's, a C extension's) can corrupt the stream."""
    sys.stdout.flush()
    saved_fd, saved_stdout = os.dup(1), sys.stdout
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield out
    finally:
        sys.stdout = saved_stdout
        try:
            out.close()
        except BrokenPipeError:  # the reader is gone; cli_main already turns the write's own error into exit 1
            pass
        os.dup2(saved_fd, 1)
        os.close(saved_fd)


def run_video(backend: Backend | None, src: Path, dst: Path, *, factor: int, scene_cut: float | None = None,
              input_fps: float | None = None, target_fps: float | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
              crf: int = 18, max_pixels: int | None = None, between: SpanFrames | None = None,
              y4m_out=None) -> dict:
    """Up-convert `src` (video file or frames folder) into `dst` (video file or frames folder); returns a report.
    With `between` (runtime.batch), the in-between frames come from computed spans and no backend runs.
    src "-": a y4m stream on stdin; dst "-": a y4m stream on `y4m_out` (default: sys.stdout.buffer).
    target_fps: any output rate instead of `factor` (see retime); input_fps: a frame folder's rate (default 25), or
    a video's frames retimed to i / input_fps."""
    fps = input_fps
    stats = VideoStats()
    rs = RetimeStats() if target_fps else None
    if target_fps and between is not None:
        raise UserError("--fps runs on one machine; runtime.batch takes --factor")
    check_video_output_name(dst)
    to_stream = str(dst) == "-"
    to_video = not to_stream and dst.suffix.lower() in VIDEO_OUTPUT_EXTENSIONS
    container = None
    sink: _Sink | None = None
    try:
        if str(src) != "-" and src.is_dir():
            paths = root_images(src)
            if len(paths) < 2:
                raise UserError(f"{src}: a frame sequence needs at least 2 images, found {len(paths)}")
            rate = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FOLDER_FPS
            first = load_image(paths[0], max_pixels)
            w, h = first.size
            _check_size(w, h, paths[0])

            def folder_frames() -> Iterator[tuple[np.ndarray, int]]:
                for i, p in enumerate(paths):
                    img = first if p == paths[0] else load_image(p, max_pixels)
                    if img.size != (w, h):
                        raise UserError(f"{p}: size {img.size[0]}x{img.size[1]} differs from {paths[0].name} ({w}x{h})")
                    yield img.rgb, i

            frames, audio, total, time_base = folder_frames(), [], len(paths), 1 / Fraction(rate)
            packets = None
        else:
            container = open_y4m(sys.stdin.buffer) if str(src) == "-" else open_video(src)
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            w, h = vs.codec_context.width, vs.codec_context.height
            _check_size(w, h, src)
            check_pixel_budget(src, w, h, max_pixels, video=True)
            rate = Fraction(fps).limit_denominator(1001) if fps else (vs.average_rate or vs.guessed_rate)
            if not rate:
                raise UserError(f"{src}: frame rate unknown; pass --input-fps")
            audio = list(container.streams.audio)
            total = vs.frames or None
            packets = container.demux(vs, *audio)
            frames = None
            # --fps retimes the video (frame i at i / fps); otherwise the source's own timestamps are kept
            time_base = 1 / Fraction(rate) if fps else Fraction(vs.time_base)
        out_rate = Fraction(target_fps).limit_denominator(1001) if target_fps else Fraction(rate) * factor
        # --fps: times t_0 + j / out_rate and the source's own times, both exact on this grid
        out_time_base = _gcd_time_base(Fraction(time_base), 1 / out_rate) if target_fps else time_base / factor
        if to_stream:
            sink = Y4MSink(y4m_out if y4m_out is not None else sys.stdout.buffer, w, h, out_rate)
        elif to_video:
            sink = VideoSink(dst, w, h, out_rate, out_time_base, crf, audio)
        else:
            sink = FolderSink(dst)

        if frames is None:
            def video_frames() -> Iterator[tuple[np.ndarray, int]]:
                import av

                n = 0
                last_pts: int | None = None
                try:
                    for pkt in packets:
                        if pkt.stream.type == "audio":
                            if isinstance(sink, VideoSink):
                                sink.add_audio_packet(pkt)
                            continue
                        for fr in pkt.decode():
                            if fps:
                                pts = n
                            elif fr.pts is None:  # no timestamp (some raw streams): the next nominal slot
                                step = max(1, round(1 / (rate * time_base)))
                                pts = 0 if last_pts is None else last_pts + step
                            else:
                                pts = int(fr.pts)
                            last_pts = pts
                            check_same_size(src, n, fr.width, fr.height, w, h)
                            n += 1
                            yield fr.to_ndarray(format="rgb24").astype(np.float32) / np.float32(255.0), pts
                except av.FFmpegError as e:
                    raise UserError(f"{src}: corrupt video stream after {n} frame(s) ({av_message(e)})") from None

            frames = video_frames()

        # one unit for the progress lines and the summary: output frames, wall time (decoding and encoding included)
        if rs is not None:
            expected = round(total * out_rate / Fraction(rate)) if total else None
            out = ((rgb8, int(t / out_time_base)) for rgb8, t in
                   retime(backend, frames, Fraction(time_base), out_rate, max_depth, scene_cut, stats, rs))
        else:
            expected = total * factor if total else None
            out = upconvert(backend, frames, factor, scene_cut, stats, between)
        with Progress(expected, "interpolating", unit=OUTPUT_FRAME) as bar:
            for rgb8, pts in out:
                sink.add(rgb8, pts)
                stats.frames_out += 1
                bar.update()
            if stats.frames_in < 2:
                raise UserError(f"{src}: needs at least 2 video frames, decoded {stats.frames_in}")
            sink.close()
        wall = bar.elapsed
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        if container is not None:
            container.close()
    padded = isinstance(sink, VideoSink) and any(sink.pad)
    if between is not None:
        stats.scene_cuts = between.scene_cuts
    return {"input": src, "output": dst,
            "backend": backend.describe() if backend is not None else {"backend": "computed spans (runtime.batch)"},
            **({"factor": factor} if rs is None else _retime_report(rs, target_fps, max_depth)),
            **({"note": f"odd size {w}x{h} padded to {w + w % 2}x{h + h % 2} (one replicated column/row) for "
                        "yuv420p H.264"} if padded else {}),
            "fps_in": float(rate), "fps_out": float(out_rate), "fps_out_exact": str(out_rate),
            "frames_in": stats.frames_in, "frames_out": stats.frames_out, "interpolated": stats.interpolated,
            "scene_cut_threshold": scene_cut, "scene_cuts_before_input_frames": stats.scene_cuts,
            "audio_streams_copied": len(audio) if to_video else 0,
            **({"audio_streams_dropped": len(audio)} if audio and not to_video else {}),
            "seconds_infer": stats.infer_seconds, "seconds_total": wall,
            "seconds_per_output_frame": wall / max(stats.frames_out, 1),
            "seconds_per_interpolated_frame": stats.infer_seconds / max(stats.interpolated, 1)}


def _retime_report(rs: RetimeStats, target_fps: float, max_depth: int) -> dict:
    errs = [float(e) for e in rs.errors] or [0.0]
    return {"target_fps": target_fps, "max_depth": max_depth, "depth_used": rs.depth_used,
            "frames_kept_from_source": rs.kept, "frames_from_midpoints": rs.made, "frames_held_at_end": rs.held,
            "timing_error_max_ms": 1000 * max(errs), "timing_error_mean_ms": 1000 * float(np.mean(errs))}


def run_video_cli(args, backend: Backend, checker=None, visual=None) -> int:
    """`runtime.infer` on a video file or a frames folder (called by runtime.infer.main with its Interpolator).
    `checker` (runtime.accuracy.Checker, --check) judges every interpolated frame against PyTorch; `visual`
    (runtime.visual.VisualReport, --visual) draws them. Exit 1 when the check fails."""
    if checker is not None:
        from .accuracy import CheckedBackend

        backend = CheckedBackend(backend, checker, visual)
    report = run_video(backend, args.input, args.output, factor=args.factor or 2, scene_cut=args.scene_cut,
                       input_fps=args.input_fps, target_fps=args.fps, max_depth=args.max_depth, crf=args.crf,
                       max_pixels=args.max_pixels, y4m_out=getattr(args, "y4m_out", None))
    if checker is not None:
        report["check"] = checker.summary()
        report["checked_frames"] = checker.rows
    if visual is not None:
        report["visual"] = visual.summary()
        print(f"visual report: {visual.commit(report)}")
    if args.report:
        write_json(args.report, report)
    if "note" in report:
        print(f"note: {report['note']}", file=sys.stderr)
    if report.get("audio_streams_dropped"):
        print(f"note: {report['audio_streams_dropped']} audio stream(s) not written: {args.output} holds video "
              "frames only", file=sys.stderr)
    print(f"{report['frames_in']} frames @ {report['fps_in']:g} fps -> {report['frames_out']} frames @ "
          f"{report['fps_out']:g} fps -> {args.output} in {report['seconds_total']:.1f} s "
          f"({per_unit(report['seconds_total'], report['frames_out'], OUTPUT_FRAME)}; the model "
          f"{per_unit(report['seconds_infer'], report['interpolated'], 'interpolated frame')}; "
          f"{len(report['scene_cuts_before_input_frames'])} scene cut(s)"
          + (f"; worst timing error {report['timing_error_max_ms']:.2f} ms, midpoints to depth "
             f"{report['depth_used']}" if "timing_error_max_ms" in report else "") + ")", file=sys.stdout)
    if checker is not None:
        c = report["check"]
        line = (f"accuracy check: {c['pairs']} interpolated frame(s) against PyTorch, worst max|Δ| "
                f"{c['worst_max_abs']:.3g}, worst PSNR {c['worst_psnr_vs_torch']:.2f} dB "
                f"({checker.thresholds.describe()})")
        if not c["passed"]:
            print(f"{line}: FAILED: {c['reason']}", file=sys.stderr)
            return 1  # as for pairs: the video is written, the backend missed its bound
        print(f"{line}: passed", file=sys.stdout)
    return 0
