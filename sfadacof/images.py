"""Image I/O, the one home for it: decode any PNG/JPEG a user hands us into float32 RGB, write 8-bit PNGs atomically.

Used by the runtime (pairs, frame folders), calibration and training data (sfadacof.data.read_image).

Decoding rules (the same for inputs and ground truth):
  * 8-bit images -> value / 255; 16-bit PNGs -> value / 65535 (Pillow's 'I;16*' / 'I' modes for grayscale; 16-bit
    colour PNGs go through PyAV because Pillow silently drops them to 8 bits); unsigned 32-bit grayscale TIFFs ->
    value / (2**32 - 1) (the depth is the file's BitsPerSample, not Pillow's mode, which is 'I' for 16 and 32 bits);
    signed-integer and floating-point samples are refused (no black or white level is defined for them);
  * RGBA / LA / palette-with-transparency -> alpha dropped (a note says so), never composited;
  * grayscale -> replicated to three channels;
  * an EXIF orientation tag is applied (PIL.ImageOps.exif_transpose), as image viewers do.
Size limit: an image over `max_pixels` (default sfadacof.cli_args.DEFAULT_MAX_PIXELS, `--max-pixels`) is refused
from its header, before decoding: a 27 KB PNG may declare 15000x15000 pixels (a decompression bomb), and the model's
memory grows with the frame area (see README "Limits").
Encoding (to_uint8, everywhere a float frame becomes 8 bits: written PNGs and videos, scores on 8-bit output):
clip to [0, 1], x255, round half to even (numpy.rint, the same rule as torch.round), uint8.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .cli_args import DEFAULT_MAX_PIXELS
from .errors import UserError
from .outputs import atomic_write_bytes, png_info

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MIN_SIZE = 32  # the model needs five 2x poolings' worth of context; smaller frames are refused


@dataclass
class DecodedImage:
    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1]
    path: Path
    bit_depth: int
    source_mode: str
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow and users say it."""
        return self.rgb.shape[1], self.rgb.shape[0]


def is_image_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS


def _png_header(path: Path) -> tuple[int, int, int, int] | None:
    """(bit depth, colour type, width, height) from a PNG's IHDR, or None for non-PNG files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25], int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def check_pixel_budget(path: Path | str, width: int, height: int, max_pixels: int | None,
                       video: bool = False) -> None:
    """UserError when width x height exceeds the budget (None: the default), or when one interpolation of it would
    need more than the memory budget (memory_budget_bytes) even in pieces (sfadacof.large_frames, what the runtime
    falls back to for frames too large to run whole); called before decoding, so before any allocation."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if width * height > limit:
        raise UserError(f"{path}: {width}x{height} ({width * height / 1e6:.1f} megapixels) exceeds the limit of "
                        f"{limit / 1e6:.1f} megapixels; pass --max-pixels {width * height} to process it anyway "
                        f"(needs roughly {estimated_gb(width * height):.0f} GB of memory)")
    budget = memory_budget_bytes()
    need = min(estimated_gb(width * height, video), estimated_gb_in_pieces(width * height, video))
    if need * 1e9 > budget:
        raise UserError(f"{path}: {width}x{height} needs roughly {need:.1f} GB of memory even at the least (whole or "
                        f"in pieces), over the memory budget of {budget / 1e9:.1f} GB (--memory-budget GB or "
                        f"{MEMORY_BUDGET_ENV}; default: half the memory available)")


MEMORY_BUDGET_ENV = "SFADACOF_MEMORY_BUDGET_GB"


def set_memory_budget(gb: float | None) -> None:
    """The commands' --memory-budget GB: stored in the environment variable, so that it reaches every check in
    this process and in the processes it starts (runtime.batch's Ray workers) alike; None keeps what is there."""
    if gb is not None:
        if not gb > 0:
            raise UserError(f"--memory-budget {gb}: must be > 0 (GB)")
        os.environ[MEMORY_BUDGET_ENV] = repr(float(gb))


def memory_budget_bytes() -> float:
    """$SFADACOF_MEMORY_BUDGET_GB, else half of the memory available now (MemAvailable; half of physical memory
    where /proc/meminfo is absent), at least 2 GB (a small frame's fixed cost: runtimes and weights)."""
    env = os.environ.get(MEMORY_BUDGET_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            raise UserError(f"{MEMORY_BUDGET_ENV}={env!r}: expected a number of GB") from None
        if not value > 0:
            raise UserError(f"{MEMORY_BUDGET_ENV}={env!r}: must be > 0")
        return value * 1e9
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30
    return max(available / 2, 2e9)


# A video holds more than the pair being interpolated: decoded frames waiting for their neighbours, the encoder's
# look-ahead and reference pictures. Measured: +0.27 GB at 1280x720 (runtime.infer on an mp4 against the same pair
# from PNGs, both in pieces); x1.3 for a margin.
VIDEO_GB_PER_MEGAPIXEL = 0.38


def estimated_gb(pixels: int, video: bool = False) -> float:
    """Peak memory of one interpolation of the whole frame, the largest of the CPU backends' (ONNX Runtime, whole
    runtime.infer process, 2 cores): 4.24 GB at 1920x1080, 16.5 GB at 3840x2160, i.e. ~0.3 GB plus ~2.0 GB per
    megapixel. runtime/backends/large_frames.py holds the smaller figures of particular backends."""
    return 0.3 + (2.0 + (VIDEO_GB_PER_MEGAPIXEL if video else 0.0)) * pixels / 1e6


def estimated_gb_in_pieces(pixels: int, video: bool = False) -> float:
    """Peak memory of one interpolation through sfadacof.large_frames (level 1 in strips, heads and synthesis in
    tiles; the rest of the U-Net whole), whole `runtime.infer` process: measured 1.33 GB at 1280x720 and 9.25 GB at
    6000x4000 (peak RSS, 2 cores), i.e. ~1.0 GB plus ~0.35 GB per megapixel -- but 1.53 GB at 1280x720 in a clean
    clone on a loaded 2-core machine (issue 24) and 1.66 GB later (the process's fixed share -- imports, threads,
    allocator arenas -- varies and has grown), so 1.5 GB plus 0.36 per megapixel: the budget is a promise, the
    estimate keeps a margin (1.83 GB at 1280x720) above what was measured. Re-measured after the pieces path's
    upsampling went to whole-row copies (issue 24): 8.96 GB at 6000x4000 (estimate 10.1 GB)."""
    return 1.5 + (0.36 + (VIDEO_GB_PER_MEGAPIXEL if video else 0.0)) * pixels / 1e6


def _decode_png16_colour(path: Path, colour_type: int) -> DecodedImage:
    # Pillow has no 16-bit RGB mode and keeps only the high byte; FFmpeg's PNG decoder (via PyAV) keeps all 16.
    import av

    try:
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            arr = frame.to_ndarray(format="rgb48le")
    except Exception as e:  # PyAV raises several error types for corrupt files
        raise UserError(f"{path}: unreadable 16-bit PNG ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    notes = []
    if colour_type in (4, 6):
        notes.append("alpha channel dropped")
    if colour_type == 4:
        notes.append("grayscale replicated to RGB")
    return DecodedImage(arr.astype(np.float32) / 65535.0, path, 16, f"png16/colour-type-{colour_type}", notes)


def _tiff_sample_bits(im: Image.Image, path: Path) -> int | None:
    """The bits per sample of an unsigned-integer TIFF (None for other formats); a TIFF of signed or floating-point
    samples is refused: Pillow reads signed 8-bit as unsigned, and neither has a defined black or white level."""
    if im.format != "TIFF":
        return None
    tags = getattr(im, "tag_v2", {})

    def first(tag: int, default: int) -> int:
        v = tags.get(tag, default)
        return int(v[0] if isinstance(v, (tuple, list)) else v)

    sample_format, bits = first(339, 1), first(258, 1)
    kind = {2: "signed integer", 3: "floating-point"}.get(sample_format)
    if kind is not None or sample_format != 1:
        raise UserError(f"{path}: {kind or f'SampleFormat {sample_format}'} samples ({bits}-bit) are not supported; "
                        "use unsigned 8-, 16- or 32-bit images")
    return bits


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> DecodedImage:
    """Decode `path` to float32 RGB (H, W, 3) in [0, 1]; UserError naming the file when it cannot, or when it has
    more than `max_pixels` pixels (None: DEFAULT_MAX_PIXELS)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        header = _png_header(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if header is not None:
        check_pixel_budget(path, header[2], header[3], max_pixels)
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
        return _decode_png16_colour(path, header[1])
    try:
        with Image.open(path) as opened:
            check_pixel_budget(path, opened.size[0], opened.size[1], max_pixels)
            opened.load()
            # exif_transpose returns a copy (or the image itself when there is no orientation tag)
            im = ImageOps.exif_transpose(opened)
            mode = im.mode
            notes: list[str] = []
            bits = _tiff_sample_bits(opened, path)
            if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                # 16-bit grayscale PNG/TIFF (Pillow reports 'I' for some, values still 0..65535), or a 32-bit
                # unsigned TIFF, which Pillow holds in int32 with the raw bits: viewed back as uint32.
                arr = np.asarray(im)
                if bits == 32:
                    arr = arr.astype(np.int32, copy=False).view(np.uint32)
                full = float(2 ** (bits or 16) - 1)
                if bits is None and (arr.min() < 0 or arr.max() > 65535):
                    raise UserError(f"{path}: integer samples outside 0..65535 ({arr.min()}..{arr.max()}); "
                                    "use 8- or 16-bit images")
                rgb = np.repeat((arr.astype(np.float64) / full).astype(np.float32)[:, :, None], 3, axis=2)
                return DecodedImage(rgb, path, bits or 16, mode, ["grayscale replicated to RGB"])
            if mode == "F":
                raise UserError(f"{path}: floating-point images (mode F) are not supported; use 8- or 16-bit")
            if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
                notes.append("alpha channel dropped")
            if mode in ("L", "LA", "1", "La"):
                notes.append("grayscale replicated to RGB")
            rgb8 = np.asarray(im.convert("RGB"))
    except UserError:
        raise
    except Image.DecompressionBombError as e:
        raise UserError(f"{path}: refused as a possible decompression bomb ({str(e).split('.')[0]}); "
                        "pass --max-pixels to raise the limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: unreadable image ({msg[:160]})") from None
    return DecodedImage(rgb8.astype(np.float32) / 255.0, path, 8, mode, notes)


def check_min_size(img: DecodedImage) -> None:
    w, h = img.size
    if w < MIN_SIZE or h < MIN_SIZE:
        raise UserError(f"{img.path}: frame is {w}x{h}; frames must be at least {MIN_SIZE}x{MIN_SIZE}")


def to_uint8(frame) -> np.ndarray:
    """Float image in [0, 1] (numpy or torch, any layout) -> uint8 numpy, clipped, x255, rounded half to even
    (numpy.rint; not truncated, not half up). The one 8-bit conversion of the project."""
    if hasattr(frame, "detach"):  # a torch tensor: the same rule on its values
        frame = frame.detach().cpu().numpy()
    return np.rint(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)


def hwc_to_nchw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)


def nchw_to_hwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[0].transpose(1, 2, 0))


def save_png_rgb8(path: str | os.PathLike, rgb8: np.ndarray) -> None:
    """Write (H, W, 3) uint8 as an RGB PNG, atomically, marked as this project's (outputs.PNG_MARK: a later run may
    replace it, never a file it did not write)."""
    if rgb8.dtype != np.uint8 or rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb8.shape} {rgb8.dtype}")
    image = Image.fromarray(rgb8, "RGB")
    atomic_write_bytes(Path(path), lambda tmp: image.save(tmp, format="PNG", pnginfo=png_info()))
