"""Issue 23: poisoned state never reaches an output, and the verdicts and messages are right.

Real command lines on real files: an export-cache entry altered in place, weights holding NaN or Inf (every command
that loads a checkpoint), checkpoints that unpack to gigabytes (peak RSS of the child measured), a video that changes
size, integer and float TIFF frames, a checkpoint that is some other file, and file names holding control
characters. tests/README.md maps each promise to its test here. The cases whose point is the process (one line on a
real stderr, the child's peak RSS, every command's own process) run it as a subprocess (`run`: slow, 2-4 s of imports
each); the others call the command's main(argv) in this process (`run_in`, tests.helpers.run_main), which is what
`python -m` runs after its imports.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sfadacof.checkpoint import save_checkpoint
from sfadacof.images import to_uint8
from tests.helpers import bikes_frames, crop, run_main, save_frames, seeded_model

REPO = Path(__file__).resolve().parents[1]
W, H = 64, 64
VARIANT = "rwtd"  # the smallest variant (1.4 M weights): exports and loads fast


def run(module: str, *args, cache: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "SFADACOF_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_in(module: str, *args, cache: Path) -> subprocess.CompletedProcess:
    """`run`'s command through its main(argv) in this process (tests.helpers.run_main); stdout is not kept."""
    code, err = run_main(module, *args, env={"SFADACOF_CACHE": str(cache)})
    return subprocess.CompletedProcess([module, *map(str, args)], code, "", "".join(line + "\n" for line in err))


def run_with_peak_rss(module: str, *args, cache: Path, timeout: int = 600) -> tuple[subprocess.CompletedProcess, int]:
    """The command in a wrapper process whose only child it is, so RUSAGE_CHILDREN's peak RSS (bytes) is its own."""
    wrapper = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    env = {**os.environ, "SFADACOF_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=timeout)
    return r, int(r.stdout.split("PEAK_KB")[1]) * 1024


def error_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    """The command failed with `code` and said why in exactly one line, its last (progress lines may come before
    it; a message broken by a newline would leave its tail as the last line), with no traceback."""
    lines = r.stderr.splitlines()  # splits on \r, \x0b, \x1c..\x1e, \x85, U+2028/9 too: all must be escaped
    errors = [line for line in lines if line.startswith("error:") or line.startswith("python -m")]
    assert r.returncode == code and len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in r.stderr, \
        (r.returncode, r.stderr[-2000:])
    return errors[0]


def frames(n: int = 3) -> list[np.ndarray]:
    return [crop(f, w=W, h=H) for f in bikes_frames(count=n, start=40)]


@pytest.fixture(scope="module")
def model():
    return seeded_model(VARIANT, seed=3)


@pytest.fixture(scope="module")
def work(tmp_path_factory, model):
    """A checkpoint of `model`, a pairs folder (one pair), a frame sequence: what the commands read."""
    d = tmp_path_factory.mktemp("poison")
    ck = d / "good.pth"
    save_checkpoint(ck, model, epoch=1)
    f = frames(3)
    pairs = d / "pairs"
    save_frames(pairs / "p", [f[0], f[2]])
    seq = save_frames(d / "seq", f)
    return {"dir": d, "ckpt": ck, "pairs": pairs, "seq": seq, "frames": f}


def reference(model, f0: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """The PyTorch model called directly on frames in [0, 1] (HWC float), as 8-bit."""
    t = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1)[None] for x in (f0, f2)]
    with torch.no_grad():
        return to_uint8(model(*t)[0].permute(1, 2, 0).numpy())


# -- an export-cache entry altered in place ---------------------------------------------------------------------------

def _alter_largest_initializer(path: Path) -> None:
    """Scale the largest weight tensor of an ONNX file in place: same length, metadata and graph intact, so the
    file still parses and passes onnx.checker."""
    import onnx

    m = onnx.load(str(path))
    init = max(m.graph.initializer, key=lambda t: len(t.raw_data))
    raw = init.raw_data
    data = bytearray(path.read_bytes())
    at = data.find(raw)
    assert at > 0 and data.find(raw, at + 1) < 0
    data[at:at + len(raw)] = (np.frombuffer(raw, np.float32) * 3.0 + 0.5).astype(np.float32).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_altered_export_cache_entry_is_detected_and_rebuilt(work, ckpt, ckpt_exports, tmp_path):
    """runtime.infer --backend ort finds the checkpoint's export in its cache (this run's own default-exporter entry
    and its digest, copied into a cache of this test's: no export), then the entry's weights are altered in place.
    The next run says so in one note line, exports again and writes the model's frame (equal to the PyTorch
    reference within one 8-bit step), not the altered graph's (on main: off by tens of levels, exit 0). The three
    runs go through runtime.infer's main(argv) in this process (`run_in`): what is tested is the cache's check, the
    same code in or out of a process (export.cache keeps nothing in memory between runs)."""
    import shutil

    from export.cache import digest_path
    from sfadacof.checkpoint import load_checkpoint

    cache = tmp_path / "cache"
    (cache / "onnx").mkdir(parents=True)
    for f in (ckpt_exports["default"], digest_path(ckpt_exports["default"])):
        shutil.copy2(f, cache / "onnx" / f.name)
    args = (work["pairs"], "--backend", "ort", "--checkpoint", ckpt)
    first = run_in("runtime.infer", *args, "-o", tmp_path / "a", cache=cache)
    assert first.returncode == 0 and "exporting ONNX" not in first.stderr, first.stderr[-2000:]  # the copy was used
    entries = sorted((cache / "onnx").glob("*.onnx"))
    assert len(entries) == 1 and (cache / "onnx" / (entries[0].name + ".sha256")).is_file()
    _alter_largest_initializer(entries[0])
    again = run_in("runtime.infer", *args, "-o", tmp_path / "b", cache=cache)
    assert again.returncode == 0, again.stderr[-2000:]
    notes = [line for line in again.stderr.splitlines() if "does not match the digest" in line]
    assert len(notes) == 1 and str(entries[0]) in notes[0]
    model = load_checkpoint(ckpt).model.eval()
    ref = reference(model, *(x.astype(np.float32) / 255 for x in (work["frames"][0], work["frames"][2])))
    for out in ("a", "b"):
        got = np.asarray(Image.open(tmp_path / out / "p.png")).astype(int)
        assert np.abs(got - ref.astype(int)).max() <= 1, out
    # the rebuilt entry verifies again: a third run exports nothing and says nothing about the cache
    mtime = entries[0].stat().st_mtime_ns
    third = run_in("runtime.infer", *args, "-o", tmp_path / "c", cache=cache)
    assert third.returncode == 0 and "digest" not in third.stderr and entries[0].stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_cache_entry_without_digest_or_cut_short_is_rebuilt(work, tmp_path, monkeypatch, capsys):
    """The other ways an entry stops being what was written: its digest removed (an entry of an older version, or
    a poisoned one with the evidence deleted), or the file cut short. Both are exported again, never used."""
    from export.cache import digest_path, onnx_for_checkpoint
    from sfadacof.checkpoint import file_sha256

    monkeypatch.setenv("SFADACOF_CACHE", str(tmp_path / "cache"))
    path = onnx_for_checkpoint(work["ckpt"], synthesis="onnx", exporter="torchscript")
    good = file_sha256(path)
    _alter_largest_initializer(path)
    digest_path(path).unlink()
    capsys.readouterr()
    assert onnx_for_checkpoint(work["ckpt"], synthesis="onnx", exporter="torchscript") == path
    assert file_sha256(path) == good and "does not match the digest" in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:-1000])
    assert onnx_for_checkpoint(work["ckpt"], synthesis="onnx", exporter="torchscript") == path
    assert file_sha256(path) == good and "does not match the digest" in capsys.readouterr().err


# -- weights holding NaN or Inf ------------------------------------------------------------------------------------------

POISONS = [  # (tensor, value, stored in fp16)
    ("get_kernel.moduleConv1.0.weight", float("nan"), False),
    ("get_kernel.moduleWeight1.7.bias", float("inf"), False),
    ("get_kernel.moduleAlpha1.7.weight", float("-inf"), True),
    ("get_kernel.moduleDeconv3.2.weight", float("nan"), True),
]


def poisoned_checkpoint(path: Path, model, tensor: str, value: float, half: bool, extra: dict | None = None) -> Path:
    save_checkpoint(path, model, epoch=1, half=half)
    obj = torch.load(path, weights_only=True)
    obj["state_dict"][tensor].view(-1)[7] = value
    if extra:
        obj.update(extra)
    torch.save(obj, path)
    return path


COMMANDS = {
    "infer-torch": lambda w, ck, out: ("runtime.infer", w["pairs"], "-o", out, "--backend", "torch", "--checkpoint", ck),
    "infer-ort": lambda w, ck, out: ("runtime.infer", w["pairs"], "-o", out, "--backend", "ort", "--checkpoint", ck),
    "export": lambda w, ck, out: ("export.to_onnx", ck, "-o", out / "m.onnx"),
    "accuracy": lambda w, ck, out: ("runtime.accuracy", w["pairs"], "--backend", "torch", "--checkpoint", ck,
                                    "--report", out / "r.json"),
    "calib": lambda w, ck, out: ("calib", w["pairs"], "-o", out / "q.onnx", "--checkpoint", ck, "--num", "1",
                                 "--size", "64x64", "--no-eval"),
    "evaluate": lambda w, ck, out: ("sfadacof.evaluate", w["seq"], "--checkpoint", ck, "--json", out / "e.json"),
    "train-init": lambda w, ck, out: ("sfadacof.train", "--data", w["seq"], "--out", out, "--variant", VARIANT,
                                      "--init-from", ck, "--crop", "64", "--max-steps", "1", "--quiet"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_non_finite_weights_refused_in_every_command(command, work, model, tmp_path):
    """NaN weights wrote black frames and Inf weights exported (exit 0): every command that loads a checkpoint
    refuses them in one line naming the file and the tensor, before writing anything."""
    tensor, value, half = POISONS[list(COMMANDS).index(command) % len(POISONS)]
    ck = poisoned_checkpoint(tmp_path / "bad.pth", model, tensor, value, half)
    out = tmp_path / "out"
    line = error_line(run(*COMMANDS[command](work, ck, out), cache=tmp_path / "cache"))
    kind = "NaN" if value != value else "Inf"
    assert str(ck) in line and f"tensor {tensor} holds {kind} (1 of" in line, line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_non_finite_weights_refused_on_resume(work, model, tmp_path):
    """sfadacof.train resuming from an OUT/last.pth whose weights hold NaN (a diverged run) refuses it in one line."""
    out = tmp_path / "run"
    out.mkdir()
    last = poisoned_checkpoint(out / "last.pth", model, "get_kernel.moduleConv2.0.weight", float("nan"), False,
                               extra={"step": 3})
    r = run("sfadacof.train", "--data", work["seq"], "--out", out, "--variant", VARIANT, "--crop", "64",
            "--max-steps", "5", "--quiet", cache=tmp_path / "cache")
    line = error_line(r)
    assert str(last) in line and "tensor get_kernel.moduleConv2.0.weight holds NaN" in line


def test_finite_weights_still_load_in_every_form(work, model, tmp_path):
    """The check refuses only non-finite values: the same weights in fp32 and fp16 (and huge but finite values,
    whose sum overflows fp32) load and give the model's output."""
    from sfadacof.checkpoint import load_checkpoint

    for half in (False, True):
        p = tmp_path / f"ok{half}.pth"
        save_checkpoint(p, model, half=half)
        assert torch.equal(load_checkpoint(p).model.state_dict()["get_kernel.moduleConv1.0.weight"],
                           model.state_dict()["get_kernel.moduleConv1.0.weight"].half().float() if half
                           else model.state_dict()["get_kernel.moduleConv1.0.weight"])
    big = poisoned_checkpoint(tmp_path / "big.pth", model, "get_kernel.moduleConv1.0.weight", 3e38, False)
    obj = torch.load(big, weights_only=True)
    obj["state_dict"]["get_kernel.moduleConv1.0.weight"].view(-1)[8] = 3e38  # sum overflows to inf, values finite
    torch.save(obj, big)
    assert load_checkpoint(big).model.state_dict()["get_kernel.moduleConv1.0.weight"].view(-1)[8] == 3e38


# -- checkpoints that unpack to gigabytes -------------------------------------------------------------------------------

BOMB_BYTES = 2 << 30  # declared; the file is ~2 MB
PEAK_LIMIT = 900 << 20  # importing torch + the command is ~0.4-0.6 GB here; unpacking would add 2 GB


def _deflated_zeros(n: int, chunk: int = 1 << 24) -> tuple[bytes, int]:
    """(raw deflate stream of n zero bytes, their crc32): after a full flush the compressor starts afresh, so every
    further chunk of zeros compresses to the same bytes and the stream is built without compressing 2 GB."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    again = co.compress(bytes(chunk)) + co.flush(zlib.Z_FULL_FLUSH)
    crc, block = 0, bytes(chunk)
    for _ in range(n // chunk):
        crc = zlib.crc32(block, crc)
    return first + again * (n // chunk - 1) + co.flush(zlib.Z_FINISH), crc


def _write_zip(path: Path, entries: list[tuple[str, bytes | int, int, int, int]]) -> None:
    """A zip of (name, data as stored, uncompressed size, crc32, method 0 stored / 8 deflated), sizes < 4 GiB.
    Data given as an int is that many zero bytes, stored as a hole (a sparse file: no disk space)."""
    central = bytearray()
    with open(path, "wb") as f:
        for name, data, size, crc, method in entries:
            offset, nb = f.tell(), name.encode()
            length = data if isinstance(data, int) else len(data)
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, length, size, len(nb), 0) + nb)
            if isinstance(data, int):
                f.seek(data, os.SEEK_CUR)
            else:
                f.write(data)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, length, size,
                                   len(nb), 0, 0, 0, 0, 0, offset) + nb
        start = f.tell()
        f.write(central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), start, 0))


class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles as torch's own tensors do (torch._utils._rebuild_tensor_v2 over a persistent storage)."""

    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.shape, stride, False, collections.OrderedDict())


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return "storage", torch.FloatStorage, obj.key, "cpu", obj.numel
        return None


def bomb_checkpoint(path: Path, state: dict[str, torch.Tensor], *, huge: str | None = None,
                    extra: tuple[str, tuple[int, ...]] | None = None, zeros: tuple[bytes, int],
                    stored: bool = False) -> Path:
    """torch.save's zip layout, written by hand: the tensors of `state` stored, except that `huge` (a tensor of the
    layout, right shape) is a view into a BOMB_BYTES storage, or `extra` (a key outside the layout) is such a
    tensor; the storage's record is BOMB_BYTES of zeros, deflated (or `stored`: as torch.save writes it, a hole)."""
    records, sd = [], collections.OrderedDict()
    stream, crc = zeros
    big = ("", BOMB_BYTES, BOMB_BYTES, crc, 0) if stored else ("", stream, BOMB_BYTES, crc, 8)
    for i, (name, t) in enumerate(state.items()):
        if name == huge:
            sd[name] = _Tensor(_Storage(str(i), BOMB_BYTES // 4), tuple(t.shape))
            records.append((f"archive/data/{i}", *big[1:]))
        else:
            data = t.float().contiguous().numpy().tobytes()
            sd[name] = _Tensor(_Storage(str(i), t.numel()), tuple(t.shape))
            records.append((f"archive/data/{i}", data, len(data), zlib.crc32(data), 0))
    if extra is not None:
        key = str(len(state))
        sd[extra[0]] = _Tensor(_Storage(key, BOMB_BYTES // 4), extra[1])
        records.append((f"archive/data/{key}", *big[1:]))
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"epoch": 1, "state_dict": sd})
    head = [("archive/data.pkl", buf.getvalue(), len(buf.getvalue()), zlib.crc32(buf.getvalue()), 0),
            ("archive/byteorder", b"little", 6, zlib.crc32(b"little"), 0)]
    _write_zip(path, head + records + [("archive/version", b"3\n", 2, zlib.crc32(b"3\n"), 0)])
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("bombs")
    zeros = _deflated_zeros(BOMB_BYTES)
    state = model.state_dict()
    out = {
        "view": bomb_checkpoint(d / "view.pth", state, huge="get_kernel.moduleConv1.0.weight", zeros=zeros),
        "extra": bomb_checkpoint(d / "extra.pth", state, extra=("get_kernel.blob", (BOMB_BYTES // 4,)), zeros=zeros),
        # stored as torch.save stores: a 2 GB file (sparse here), sized against the layout before it is read
        "stored": bomb_checkpoint(d / "stored.pth", state, huge="get_kernel.moduleConv1.0.weight", zeros=zeros,
                                  stored=True),
    }
    # the pickle record itself deflated from 2 GB
    _write_zip(d / "pickle.pth", [("archive/data.pkl", zeros[0], BOMB_BYTES, zeros[1], 8),
                                  ("archive/version", b"3\n", 2, zlib.crc32(b"3\n"), 0)])
    out["pickle"] = d / "pickle.pth"
    assert all(p.stat().st_blocks * 512 < 32 << 20 for p in out.values())  # the layout's weights + ~2 MB
    return out


@pytest.mark.slow
@pytest.mark.parametrize("bomb, command", [
    ("view", "export"),        # a tensor of the right shape viewing a 2 GB storage
    ("view", "infer-torch"),
    ("extra", "infer-ort"),    # a 2 GB tensor under a key outside the layout
    ("pickle", "evaluate"),    # the pickle record itself deflated from 2 GB
    ("stored", "export"),      # not compressed: a 2 GB storage behind a tensor of the layout's shape
    ("stored", "calib"),
])
def test_checkpoint_that_unpacks_to_gigabytes_is_refused_before_unpacking(bomb, command, bombs, work, tmp_path):
    """A .pth declaring 2 GB (~2 MB deflated, or stored): refused in one line naming it, and the process never holds
    the 2 GB (peak RSS of the child well under it; on main it read it all before failing)."""
    cmd = COMMANDS[command](work, bombs[bomb], tmp_path / "out")
    r, peak = run_with_peak_rss(*cmd, cache=tmp_path / "cache")
    r.stdout = ""
    line = error_line(r)
    assert str(bombs[bomb]) in line and ("refused before" in line or "unexpected" in line), line
    print(f"{bomb} {command}: peak RSS {peak / 2**20:.0f} MiB")
    assert peak < PEAK_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"


@pytest.mark.slow
def test_resume_from_a_checkpoint_that_unpacks_to_gigabytes(bombs, work, tmp_path):
    """sfadacof.train's resume (last.pth with optimizer state: three layouts allowed) refuses it the same way."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pth").write_bytes(bombs["view"].read_bytes())
    r, peak = run_with_peak_rss("sfadacof.train", "--data", work["seq"], "--out", out, "--variant", VARIANT,
                                "--crop", "64", "--max-steps", "5", "--quiet", cache=tmp_path / "cache")
    line = error_line(r)
    assert str(out / "last.pth") in line and "refused before" in line and peak < PEAK_LIMIT, (line, peak)


# -- a video that changes size ------------------------------------------------------------------------------------------

def size_changing_video(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """An .mkv of MJPEG frames (each JPEG carries its own size, so one stream can change size mid-way)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = sizes[0][0], sizes[0][1], "yuvj420p"
        s.time_base = Fraction(1, 25)
        for i, (w, h) in enumerate(sizes):
            b = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(b, "JPEG", quality=95)
            p = av.Packet(b.getvalue())
            p.pts = p.dts = i
            p.time_base, p.stream = Fraction(1, 25), s
            c.mux(p)
    return path


@pytest.mark.parametrize("flags, output", [(["--scene-cut", "0.3"], "o.mp4"), ([], "o.mp4"),
                                           (["--scene-cut", "0.3"], "frames")])
def test_size_changing_video_refused_in_one_line(flags, output, work, tmp_path):
    """Frames 3.. of the video are 96x64 after 64x64: one line naming the file and the frame, exit 2, no output
    (on main: a traceback from the scene-cut difference or from the model)."""
    src = size_changing_video(tmp_path / "v.mkv", [(64, 64)] * 3 + [(96, 64)] * 3)
    line = error_line(run_in("runtime.infer", src, "-o", tmp_path / output, "--backend", "torch", "--checkpoint",
                          work["ckpt"], *flags, cache=tmp_path / "cache"))
    assert str(src) in line and "frame 3 is 96x64" in line and "64x64" in line
    assert not (tmp_path / output).exists()


# -- integer and float TIFF frames -------------------------------------------------------------------------------------

def write_tiff(path: Path, arr: np.ndarray, sample_format: int) -> Path:
    """A baseline TIFF (one strip, uncompressed, little-endian) of a 2-D array with the given SampleFormat (1
    unsigned, 2 signed, 3 float): written by hand because Pillow cannot write unsigned 32-bit."""
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<")))
    h, w = arr.shape
    data = arr.tobytes()
    tags = [(256, 4, w), (257, 4, h), (258, 3, arr.dtype.itemsize * 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 4, h), (279, 4, len(data)), (339, 3, sample_format)]
    out = b"II*\0" + struct.pack("<I", 8 + len(data)) + data + struct.pack("<H", len(tags))
    for tag, typ, val in tags:
        out += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    path.write_bytes(out + struct.pack("<I", 0))
    return path


@pytest.mark.parametrize("dtype", [np.uint32, np.uint16])
def test_unsigned_integer_tiff_frames_read_at_their_depth(dtype, work, model, tmp_path):
    """Grayscale TIFF frames of unsigned 32-bit (and 16-bit) samples are read as value / (2**bits - 1): the frame
    written equals the model run on those values (on main, 32-bit ones were divided by 65535: garbage, exit 0)."""
    full = np.iinfo(dtype).max
    gray = [f.mean(axis=2) / 255 for f in (work["frames"][0], work["frames"][2])]
    pairs = tmp_path / "pairs" / "t"
    pairs.mkdir(parents=True)
    for name, g in zip(("a.tif", "b.tif"), gray):
        write_tiff(pairs / name, np.round(g * full).astype(dtype), 1)
    r = run_in("runtime.infer", tmp_path / "pairs", "-o", tmp_path / "o", "--backend", "torch", "--checkpoint",
            work["ckpt"], cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr[-2000:]
    ref = reference(model, *(np.repeat((np.round(g * full) / full)[:, :, None], 3, axis=2) for g in gray))
    got = np.asarray(Image.open(tmp_path / "o" / "t.png")).astype(int)
    assert np.abs(got - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("dtype, sample_format, kind", [(np.int32, 2, "signed integer"), (np.int16, 2, "signed integer"),
                                                        (np.int8, 2, "signed integer"), (np.float32, 3, "floating-point")])
def test_signed_and_float_tiff_frames_refused(dtype, sample_format, kind, work, tmp_path):
    """Signed samples have no black or white level (Pillow even reads signed 8-bit as unsigned), float samples no
    range: refused in one line naming the file (on main, signed 8/16/32-bit were read as garbage, exit 0)."""
    pairs = tmp_path / "pairs" / "t"
    pairs.mkdir(parents=True)
    for name in ("a.tif", "b.tif"):
        write_tiff(pairs / name, (np.arange(W * H).reshape(H, W) % 100).astype(dtype), sample_format)
    line = error_line(run_in("runtime.infer", tmp_path / "pairs", "-o", tmp_path / "o", "--backend", "torch",
                          "--checkpoint", work["ckpt"], cache=tmp_path / "cache"))
    assert str(pairs / "a.tif") in line and f"{kind} samples ({np.dtype(dtype).itemsize * 8}-bit)" in line
    assert not (tmp_path / "o").exists()


# -- a checkpoint that is some other file -------------------------------------------------------------------------------

@pytest.mark.slow
def test_onnx_file_given_as_checkpoint_is_named(work, model, tmp_path):
    """A .pth that is an ONNX model (this checkpoint's export; the TorchScript exporter, in seconds): the line says
    what the file is, not torch's weights_only advice cut off mid-sentence."""
    from export.core import export_model

    onnx_file = tmp_path / "m.onnx"
    export_model(model, onnx_file, synthesis="onnx", exporter="torchscript")
    fake = tmp_path / "model.pth"
    fake.write_bytes(onnx_file.read_bytes())
    for cmd in (("export.to_onnx", fake, "-o", tmp_path / "x.onnx"),
                ("runtime.infer", work["pairs"], "-o", tmp_path / "o", "--backend", "torch", "--checkpoint", fake)):
        line = error_line(run(*cmd, cache=tmp_path / "cache"))
        assert f"{fake}: not a PyTorch checkpoint: it is an ONNX model" in line and "--onnx" in line, line
        assert "weights_only" not in line and "2.6" not in line


@pytest.mark.parametrize("content, said", [
    (b"", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "it is a PNG image"),
    (struct.pack("<Q", 2) + b"{}" + bytes(8), "it is a safetensors file"),
    (b"\x80\x02garbage that is no pickle", "not a readable PyTorch checkpoint ("),
])
def test_other_files_given_as_checkpoint(content, said, tmp_path):
    fake = tmp_path / "w.pth"
    fake.write_bytes(content)
    line = error_line(run_in("export.to_onnx", fake, "-o", tmp_path / "x.onnx", cache=tmp_path / "cache"))
    assert f"{fake}: " in line and said in line and "weights_only" not in line, line


# -- file names holding control characters ------------------------------------------------------------------------------

@pytest.mark.parametrize("char, escaped", [pytest.param("\n", "\\n", marks=pytest.mark.slow), ("\r", "\\r"),
                                           ("\t", "\\t"), ("\x1b", "\\x1b"), ("\u2028", "\\u2028"),
                                           ("\x85", "\\x85")])
def test_error_naming_a_file_with_control_characters_stays_one_line(char, escaped, work, tmp_path):
    """A corrupt frame named `bad<char>frame.png`: the error is one line, the character written as its escape (a real
    process's stderr for the newline, in-process for the others)."""
    pairs = tmp_path / "pairs" / "p"
    pairs.mkdir(parents=True)
    Image.fromarray(work["frames"][0]).save(pairs / "a.png")
    (pairs / f"bad{char}frame.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    line = error_line((run if char == "\n" else run_in)("runtime.infer", tmp_path / "pairs", "-o", tmp_path / "o",
                                                        "--backend", "torch", "--checkpoint", work["ckpt"],
                                                        cache=tmp_path / "cache"))
    assert f"bad{escaped}frame.png" in line and char not in line, line  # escaped, not raw (a tab or ESC does not
    # split the line, but reaches the terminal raw)


@pytest.mark.slow
def test_other_commands_and_argparse_errors_stay_one_line(tmp_path):
    """The same through export.to_onnx (a checkpoint named with a newline) and through an argparse error (an
    unknown argument holding a newline)."""
    missing = tmp_path / "two\nlines.pth"
    line = error_line(run("export.to_onnx", missing, "-o", tmp_path / "x.onnx", cache=tmp_path / "cache"))
    assert "two\\nlines.pth" in line
    line = error_line(run("runtime.infer", "a", "b", "c\nd", "-o", tmp_path / "o", cache=tmp_path / "cache"))
    assert "c\\nd" in line
