"""Video decoding, the one home for it (PyAV): training data, calibration, the runtime's up-conversion, benchmarks.

    open_video(path)               -- the container, its first video stream checked; UserError naming the file
    decode_rgb(path, start, end)   -- (index, uint8 (H, W, 3) RGB) for frames [start, end) of the first video stream
    count_frames(path)             -- frames of the first video stream, counted from its packets

Every PyAV failure (its error types differ between versions) becomes one UserError line naming the file.
PyAV is imported inside the functions: it costs time to import and only video inputs need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import UserError


def av_message(e: BaseException) -> str:
    """The first line of a PyAV error (its messages can run over several lines), at most 160 characters."""
    return (str(e).splitlines()[0] if str(e) else type(e).__name__)[:160]


def open_video(path: str | os.PathLike):
    """av container of `path` with at least one video stream (the caller closes it, e.g. `with open_video(p)`)."""
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # PyAV: InvalidDataError, FileNotFoundError, ...
        raise UserError(f"{path}: cannot open video ({av_message(e)})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{path}: has no video stream")
    return container


def decode_rgb(path: str | os.PathLike, start: int = 0, end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, uint8 RGB frame) for every frame index in [start, end) of the first video stream, streamed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: video file not found")
    with open_video(path) as container:
        try:
            for i, frame in enumerate(container.decode(video=0)):
                if end is not None and i >= end:
                    break
                if i >= start:
                    yield i, frame.to_ndarray(format="rgb24")
        except UserError:
            raise
        except Exception as e:  # PyAV raises its own error hierarchy (InvalidDataError, ...)
            raise UserError(f"{path}: cannot decode video ({av_message(e)})") from None


def count_frames(path: str | os.PathLike) -> int:
    """Frames of the first video stream. The container's own count can be missing or approximate; counting the
    demuxed packets is exact and cheap for clips."""
    with open_video(path) as container:
        try:
            return sum(1 for packet in container.demux(video=0) if packet.size)
        except Exception as e:
            raise UserError(f"{path}: cannot read video ({av_message(e)})") from None


# yuv4mpegpipe streams this reader takes: 8-bit planar YUV (every 4:2:0 siting -- C420jpeg, C420mpeg2, C420paldv,
# C420 -- decodes to yuv420p/yuvj420p), 4:2:2, 4:4:4 and mono. Deeper streams (C420p10 ...) would be cut to 8 bits
# silently by the RGB conversion, so they are refused instead.
Y4M_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuv444p", "gray"})


def open_y4m(stream, name: str = "<stdin>"):
    """av container of a y4m (yuv4mpegpipe) byte stream (e.g. sys.stdin.buffer; a pipe need not be seekable), its
    8-bit pixel format checked; UserError naming `name` otherwise."""
    import av

    try:
        container = av.open(stream, format="yuv4mpegpipe")
    except Exception as e:
        raise UserError(f"{name}: not a y4m (yuv4mpegpipe) stream ({av_message(e)}); pipe one in with "
                        "ffmpeg -i IN -f yuv4mpegpipe -") from None
    fmt = container.streams.video[0].codec_context.pix_fmt if container.streams.video else None
    if fmt not in Y4M_PIX_FMTS:
        container.close()
        raise UserError(f"{name}: y4m pixel format {fmt}; this reader takes 8-bit 4:2:0 (C420jpeg/C420mpeg2/C420), "
                        "4:2:2, 4:4:4 or mono (convert with ffmpeg ... -pix_fmt yuv420p -f yuv4mpegpipe -)")
    return container
