"""Train any AdaCoF-family variant with the recipe of docs/MODEL.md, resumably.

    python -m sfadacof.train --data clip.mp4 other.mp4*0.5 vimeo/sequences --val held_out.mp4 --out runs/x

Loss 1*Charbonnier + 0.01*g_Spatial + 0.005*g_Occlusion; Adamax(beta=(0.9, 0.999), eps=1e-8); lr halved every
`--lr-step` epochs; random crops, h/v flips and temporal reversal (p = 0.5 each). An "epoch" is one pass over a
triplet folder, or `--steps-per-epoch` steps (needed for videos, whose triplets overlap heavily).

Beyond the spec (off by default): `--synthetic F` makes a fraction F of each batch from real frames warped by a known
smooth motion (sfadacof/synthetic.py) and adds `--flow-weight` times the error of the kernels' expected displacement
against that motion. It gives the offsets a direct signal; on a CPU budget the spec's photometric loss alone left
the model at frame averaging (see sfadacof/weights/README.md for the measured effect).

Resuming: `OUT/last.pth` is rewritten atomically every `--save-every` steps and at each epoch end, in the authors'
format ({'epoch', 'state_dict'}, so their code loads it) plus `optimizer`, `scheduler`, `step`, `rng`, `args` keys,
all tensors and plain containers, so resuming loads it with torch.load(weights_only=True): a last.pth holding any
other Python object is refused, never unpickled (it could run code).
The batch of step s depends only on (seed, s) (see data.TripletSampler), so a run killed at any point and
restarted with the same command continues the same loss curve; `OUT/log.jsonl` is cut back to the resumed step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cli_args


def build_parser() -> argparse.ArgumentParser:
    p = cli_args.ArgumentParser(prog="python -m sfadacof.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=None,
                   help="training sources: video files (PATH, PATH@START:END frame span, PATH*0.5 downscaled), "
                        "Vimeo-style triplet folders, or folders of sequential frames")
    p.add_argument("--val", nargs="*", default=[], help="held-out sources for validation PSNR each epoch")
    p.add_argument("--val-gaps", default="1", help="frame gaps of the validation triplets, e.g. 1,2")
    p.add_argument("--out", required=True, help="output folder (last.pth, best.pth, log.jsonl)")
    p.add_argument("--variant", default="sf_adacof", help="model variant (sf_adacof, adacof)")
    p.add_argument("--kernel-size", type=cli_args.positive_int, default=5, help="the synthesis kernel size K")
    p.add_argument("--dilation", type=cli_args.positive_int, default=1, help="the synthesis kernel's dilation")
    p.add_argument("--gaps", default="1,2,3", help="frame gaps for video/sequence triplets (t, t+g, t+2g)")
    p.add_argument("--crop", default="256", help="training crop, N or WIDTHxHEIGHT (spec: 256)")
    p.add_argument("--batch", type=cli_args.positive_int, default=4, help="triplets per step")
    p.add_argument("--epochs", type=cli_args.positive_int, default=50, help="epochs to train")
    p.add_argument("--steps-per-epoch", type=cli_args.positive_int, default=None,
                   help="define an epoch as N steps (default: triplets / batch)")
    p.add_argument("--motion-candidates", type=cli_args.positive_int, default=1,
                   help="draw M random crops per sample and keep the one with the most motion (1 = uniform)")
    p.add_argument("--synthetic", type=cli_args.closed_fraction, default=0.0,
                   help="fraction of each batch made of synthetic-motion triplets with a flow loss on their known "
                        "motion (see sfadacof/synthetic.py); 0 = the spec's recipe")
    p.add_argument("--flow-weight", type=cli_args.nonnegative_float, default=0.01,
                   help="weight of the flow loss (pixels) on synthetic triplets")
    p.add_argument("--synthetic-max-motion", type=cli_args.positive_float, default=6.0,
                   help="largest half-interval motion of synthetic triplets, in pixels")
    p.add_argument("--lr", type=cli_args.positive_float, default=1e-3, help="Adamax learning rate")
    p.add_argument("--lr-step", type=cli_args.positive_int, default=20, help="halve the lr every N epochs")
    p.add_argument("--lr-gamma", type=cli_args.positive_float, default=0.5,
                   help="lr factor every --lr-step epochs")
    p.add_argument("--init", choices=("default", "average"), default="default",
                   help="'average': start near frame averaging (see init_near_average)")
    p.add_argument("--init-from", default=None, help="start from these weights (fine-tune; not a resume)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops, batches and initial weights")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                   help="mixed precision for the U-Net: auto = bf16/fp16 on CUDA, off on CPU; bf16 also on CPU "
                        "(the synthesis op and the losses stay fp32)")
    p.add_argument("--device", type=cli_args.auto_device, default="auto",
                   help="auto (cuda where torch sees a GPU, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=cli_args.positive_int, default=None, help="torch CPU threads")
    p.add_argument("--val-per-source", type=cli_args.positive_int, default=8,
                   help="evenly spaced triplets per validation source")
    p.add_argument("--val-crop", default="448x256",
                   help="centre crop for validation, WIDTHxHEIGHT or 'full' (WxH as every size flag; it was HxW "
                        "until the size flags were unified)")
    p.add_argument("--save-every", type=cli_args.positive_int, default=100,
                   help="also write last.pth every N steps")
    p.add_argument("--log-every", type=cli_args.positive_int, default=10,
                   help="print a line every N steps when not on a terminal")
    p.add_argument("--max-steps", type=cli_args.positive_int, default=None,
                   help="stop after this global step (for tests)")
    p.add_argument("--minutes", type=cli_args.positive_float, default=None,
                   help="stop by itself after this many minutes of training (validating and saving at the stop)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pth exists")
    p.add_argument("--resume", default=None, help="resume from this checkpoint (default: OUT/last.pth if present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    return p


# --help answers here, before the heavy imports below (torch: 1-3 s on a loaded machine)
cli_args.help_first(__name__, build_parser)

import numpy as np
import torch
from torch import Tensor

from .checkpoint import TRAINING_STATE_LAYOUTS, check_finite, layout_bytes, load_checkpoint, safe_torch_load, save_checkpoint
from .data import Source, TripletSampler, center_crop, iter_eval_triplets, open_source, parse_source_spec, to_tensor
from .errors import UserError, cli_main
from .outputs import atomic_write_text, check_outputs, output_folder
from .sizes import parse_size
from .metrics import psnr
from .models import AdaCoFNet, KernelMaps, charbonnier_smoothness, pad_to_multiple
from .synthetic import SyntheticMotionSampler, flow_loss

LAMBDA_SPATIAL = 0.01
LAMBDA_OCCLUSION = 0.005


def charbonnier(x: Tensor, y: Tensor) -> Tensor:
    return torch.mean(torch.sqrt((x - y) ** 2 + 1e-6))


def forward_train(model: AdaCoFNet, f0: Tensor, f2: Tensor, amp_dtype: torch.dtype | None = None
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """(frame1, g_Spatial, g_Occlusion) as model.forward_with_regularisers, with the U-Net optionally under autocast."""
    return forward_train_maps(model, f0, f2, amp_dtype)[:3]


def forward_train_maps(model: AdaCoFNet, f0: Tensor, f2: Tensor, amp_dtype: torch.dtype | None = None
                       ) -> tuple[Tensor, Tensor, Tensor, KernelMaps]:
    """forward_train plus the kernel maps (for the synthetic-motion flow loss).

    The synthesis op and the regularisers always run in fp32: its offsets are pixel positions (fp16 cannot hold
    a 700-pixel index plus a fraction) and its backward sums K*K products."""
    h, w = f0.shape[2:]
    p0, p2 = pad_to_multiple(f0), pad_to_multiple(f2)
    with torch.autocast(device_type=f0.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        maps = model.estimate(p0, p2)
    m = KernelMaps(*(t.float() for t in maps.as_tuple()))
    frame1 = model.synthesize(p0, p2, m)[:, :, :h, :w]
    g_spatial = sum(charbonnier_smoothness(torch.mean(wt * x, dim=1, keepdim=True))
                    for wt, x in ((m.weight1, m.alpha1), (m.weight1, m.beta1), (m.weight2, m.alpha2),
                                  (m.weight2, m.beta2)))
    return frame1, g_spatial, charbonnier_smoothness(m.occlusion), m


def init_near_average(model: AdaCoFNet, scale: float = 0.1, center_logit: float = 2.0) -> None:
    """Start near frame averaging: shrunken, zero-bias offset heads (offsets ~0), occlusion ~0.5, and weight heads
    with a mild preference for the centre tap (logit 2: p = 0.24 for K = 5, the rest spread over the 5x5 window).
    The output starts as a lightly blurred (f0 + f2) / 2. The centre logit must stay small: at logit 5 the softmax
    saturated on the centre tap within 200 steps (p > 0.999), the other taps got no gradient, and the model sat at
    exactly frame averaging for 400 steps without learning motion. Last layers are scaled, not zeroed, so
    gradients still reach the U-Net from the first step."""
    k = model.kernel_size
    ge = model.get_kernel
    with torch.no_grad():
        # He init for every conv: PyTorch's default conv init shrinks the signal ~6x in variance per conv+ReLU, so
        # after the U-Net the heads see mostly biases and the output barely depends on the frames at first.
        for mod in ge.modules():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                torch.nn.init.zeros_(mod.bias)
        for name in ("moduleAlpha1", "moduleBeta1", "moduleAlpha2", "moduleBeta2", "moduleOcclusion"):
            conv = getattr(ge, name)[7]
            conv.weight.mul_(scale)
            conv.bias.zero_()
        for name in ("moduleWeight1", "moduleWeight2"):
            conv = getattr(ge, name)[7]
            conv.weight.mul_(scale)
            conv.bias.zero_()
            if k % 2 == 1 and model.dilation >= 1:
                c = (k - 1) // 2
                conv.bias[c * k + c] = center_logit


def amp_dtype_for(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the U-Net. 'auto' is bf16 (or fp16) on CUDA and off on CPU; 'bf16' also works on CPU,
    where oneDNN's bf16 convolutions made a training step 1.4x faster on an AVX512-BF16 EPYC (1 thread, 4x96x96)."""
    if mode == "off":
        return None
    if device.type != "cuda":
        if mode == "fp16":
            raise UserError("--amp fp16 needs a CUDA device (use bf16 on CPU)")
        return torch.bfloat16 if mode == "bf16" else None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


@torch.no_grad()
def validate(model: AdaCoFNet, triplets: list[tuple[str, np.ndarray]], device: torch.device) -> dict[str, float]:
    """Mean PSNR of the model (clamped to [0, 1]) and of frame averaging over the held-out triplets."""
    was_training = model.training
    model.eval()
    model_psnr, avg_psnr = [], []
    for _, arr in triplets:
        t = to_tensor(arr).to(device)  # (3 frames, 3, H, W)
        f0, f1, f2 = t[0:1], t[1:2], t[2:3]
        out = model(f0, f2).clamp(0, 1)
        model_psnr.append(psnr(out, f1))
        avg_psnr.append(psnr((f0 + f2) / 2, f1))
    model.train(was_training)
    return {"val_psnr": float(np.mean(model_psnr)), "val_avg_psnr": float(np.mean(avg_psnr)),
            "val_n": len(triplets)}


def collect_val(sources: list[Source], per_source: int, crop: tuple[int, int] | None
                ) -> list[tuple[str, np.ndarray]]:
    out = []
    for s in sources:
        for i, tri in iter_eval_triplets(s, per_source):
            out.append((f"{s.name}#{i}", np.stack(center_crop(tri, crop))))
    return out


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rewrite_log(path: Path, keep_until_step: int) -> None:
    """Drop log records after `keep_until_step` (they belong to the part of the run that was lost), atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if rec.get("step", 0) <= keep_until_step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def crop_hw(text: str, flag: str, full: bool = False) -> tuple[int, int] | None:
    """A crop flag (N, WIDTHxHEIGHT, or 'full' where allowed) as (height, width), the order of the arrays."""
    size = parse_size(text, flag, minimum=1, square=True, full=full)
    return None if size is None else (size[1], size[0])


def device_unavailable(name: str) -> bool:
    return name.startswith("cuda") and not torch.cuda.is_available()


def export_half(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Write the weights of a training checkpoint as an fp16 authors'-format file (what ships as the default)."""
    ck = load_checkpoint(src)
    save_checkpoint(dst, ck.model, epoch=ck.epoch or 0, half=True)


def parse_gaps(text: str, flag: str) -> tuple[int, ...]:
    try:
        gaps = tuple(int(g) for g in text.split(","))
    except ValueError:
        raise UserError(f"bad {flag} {text!r}: want e.g. 1,2,3") from None
    if not gaps or min(gaps) < 1:
        raise UserError(f"bad {flag} {text!r}: gaps must be positive")
    return gaps


RUN_FILES = ("last.pth", "best.pth", "log.jsonl")


def written_by_train(path: Path) -> bool:
    """A file of RUN_FILES that a training run wrote: a checkpoint whose pickle names the optimizer state and step
    (read from the zip archive without unpickling anything), or a log whose first line is a JSON record of a step."""
    import zipfile

    try:
        if path.suffix == ".pth":
            with zipfile.ZipFile(path) as z:
                pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
                data = z.read(pkl)
            return b"optimizer" in data and b"step" in data
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return first == "" or "step" in json.loads(first)
    except (OSError, StopIteration, ValueError, TypeError, zipfile.BadZipFile, UnicodeDecodeError):
        return False


def train(argv: list[str] | None = None, sources: list[Source] | None = None,
          val_sources: list[Source] | None = None) -> dict:
    """Train from the command line `argv`. A caller that has its frames in memory (sfadacof.gpu_train) passes
    `sources` / `val_sources` instead of --data / --val."""
    args = build_parser().parse_args(argv)
    args.device = cli_args.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if sources is None and not args.data:
        raise UserError("--data is required: at least one training source")
    gaps = parse_gaps(args.gaps, "--gaps")
    val_gaps = parse_gaps(args.val_gaps, "--val-gaps")
    crop = crop_hw(args.crop, "--crop")
    if crop is None or min(crop) < 32 or crop[0] % 32 or crop[1] % 32:
        raise UserError(f"--crop must be a multiple of 32 (got {args.crop})")
    if args.batch < 1 or args.epochs < 1:
        raise UserError("--batch and --epochs must be >= 1")
    resume_path = Path(args.resume) if args.resume else Path(args.out) / "last.pth"
    if args.resume and not resume_path.is_file():
        raise UserError(f"{resume_path}: checkpoint to resume from not found")
    if device_unavailable(args.device):
        raise UserError(f"--device {args.device}: this torch build or machine has no CUDA")
    device = torch.device(args.device)
    out = Path(args.out)
    # OUT/last.pth is read back on resume by design; every other input must stay outside OUT, and the files written
    # there may replace only a training run's own (a user's best.pth in OUT is refused, not overwritten)
    # (OUT/last.pth resumed from is this run's input: load_checkpoint judges it, with the precise reason)
    resuming = not args.no_resume and resume_path == out / "last.pth" and resume_path.is_file()
    check_outputs([parse_source_spec(s)[0] for s in (args.data or []) + args.val] + [args.init_from],
                  [output_folder("--out", out, [f for f in RUN_FILES if not (resuming and f == "last.pth")],
                                 ours=written_by_train)])
    out.mkdir(parents=True, exist_ok=True)

    if sources is None:
        sources = [open_source(s, gaps) for s in args.data]
    for s in sources:
        h, w = s.frame_size()
        if h < crop[0] or w < crop[1]:
            raise UserError(f"{s.name}: frames {w}x{h} are smaller than the crop {crop[1]}x{crop[0]}")
    if val_sources is None:
        val_sources = [open_source(s, val_gaps) for s in args.val]
    val_set = collect_val(val_sources, args.val_per_source, crop_hw(args.val_crop, "--val-crop", full=True))
    n_triplets = sum(len(s) for s in sources)
    steps_per_epoch = args.steps_per_epoch or max(1, n_triplets // args.batch)
    total_steps = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    sampler = TripletSampler(sources, crop, seed=args.seed, motion_candidates=args.motion_candidates)
    if not 0.0 <= args.synthetic <= 1.0:
        raise UserError(f"--synthetic must be a fraction in [0, 1] (got {args.synthetic})")
    n_syn = int(round(args.batch * args.synthetic))
    synth = None
    if n_syn:
        big = (2 * crop[0], 2 * crop[1])
        usable = [s for s in sources if s.frame_size()[0] >= big[0] and s.frame_size()[1] >= big[1]]
        if not usable:
            raise UserError(f"--synthetic needs sources of at least {big[0]}x{big[1]} (twice the crop)")
        synth = SyntheticMotionSampler(TripletSampler(usable, big, seed=args.seed + 1), args.synthetic_max_motion,
                                       seed=args.seed)

    torch.manual_seed(args.seed)
    model = AdaCoFNet(args.variant, args.kernel_size, args.dilation).to(device)
    if args.init == "average":
        init_near_average(model)
    if args.init_from:
        src = load_checkpoint(args.init_from, args.variant, args.kernel_size, args.dilation)
        model.load_state_dict(src.model.state_dict())
    model.train()
    optimizer = torch.optim.Adamax(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_step, gamma=args.lr_gamma)
    amp_dtype = amp_dtype_for(args.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    step, best = 0, -math.inf
    if not args.no_resume and resume_path.is_file():
        state = safe_torch_load(resume_path, max_data_bytes=TRAINING_STATE_LAYOUTS * layout_bytes(model))
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            check_finite(resume_path, state["state_dict"])
        try:
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state.get("scaler", {})) if state.get("scaler") else None
            set_rng_state(state["rng"])
            step, best = int(state["step"]), float(state.get("best", -math.inf))
        except (KeyError, RuntimeError, OSError, EOFError, TypeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise UserError(f"{resume_path}: cannot resume from it ({type(e).__name__}: {first[:150]})") from None
        rewrite_log(out / "log.jsonl", step)
        if not args.quiet:
            print(f"resumed from {resume_path} at step {step} (epoch {step // steps_per_epoch})", file=sys.stderr)

    def save(path: Path, epoch: int) -> None:
        save_checkpoint(path, model, epoch=epoch, extra={
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None, "rng": rng_state(), "step": step,
            "best": best, "args": vars(args), "variant": model.variant, "kernel_size": model.kernel_size,
            "dilation": model.dilation})

    from tqdm import tqdm  # local: only the CLI path needs it

    log = open(out / "log.jsonl", "a")
    bar = tqdm(total=total_steps, initial=step, disable=None if not args.quiet else True, dynamic_ncols=True)
    last_val: dict[str, float] = {}
    t_start = time.time()
    losses: list[float] = []
    deadline = t_start + 60 * args.minutes if args.minutes else math.inf
    stopped = "steps"

    def run_validation(epoch: int) -> None:
        nonlocal last_val, best
        last_val = validate(model, val_set, device)
        vrec = {"step": step, "epoch": epoch, **last_val}
        log.write(json.dumps(vrec) + "\n")
        if not args.quiet:
            print(json.dumps(vrec), file=sys.stderr, flush=True)
        if last_val["val_psnr"] > best:
            best = last_val["val_psnr"]
            save(out / "best.pth", epoch)

    def make_batch(s: int):
        """The batch of step s (a pure function of seed and s, so it can be made ahead in a thread)."""
        f0, f1, f2, _ = sampler.sample(s, args.batch - n_syn)
        f0, f1, f2 = f0.to(device), f1.to(device), f2.to(device)
        if synth is None:
            return f0, f1, f2, None, None
        s0, s1, s2, motion, valid = synth.sample(s, n_syn, device)
        return torch.cat([f0, s0]), torch.cat([f1, s1]), torch.cat([f2, s2]), motion, valid

    # The next batch is cut (and its synthetic warps run) while this step trains: on a GPU the CPU-side sampling
    # would otherwise be a large part of each step.
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(make_batch, step) if step < total_steps else None
    try:
        while step < total_steps:
            f0, f1, f2, motion, valid = pending.result()
            if step + 1 < total_steps:
                pending = prefetch.submit(make_batch, step + 1)
            t0 = time.time()
            pred, g_spatial, g_occ, maps = forward_train_maps(model, f0, f2, amp_dtype)
            charb = charbonnier(pred, f1)
            loss = charb + LAMBDA_SPATIAL * g_spatial + LAMBDA_OCCLUSION * g_occ
            flow = None
            if synth is not None:
                syn_maps = KernelMaps(*(t[-n_syn:] for t in maps.as_tuple()))
                flow = flow_loss(syn_maps, motion, valid, model.kernel_size, model.dilation)
                loss = loss + args.flow_weight * flow
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            rec = {"step": step, "epoch": (step - 1) // steps_per_epoch, "loss": loss.item(),
                   "charb": charb.item(), "g_spatial": float(g_spatial.detach()), "g_occlusion": g_occ.item(),
                   "lr": optimizer.param_groups[0]["lr"], "sec": round(time.time() - t0, 4)}
            if flow is not None:
                rec["flow_px"] = flow.item()
            losses.append(rec["loss"])
            log.write(json.dumps(rec) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", **({"val": f"{last_val['val_psnr']:.2f}"} if last_val else {}))
            if bar.disable and not args.quiet and step % args.log_every == 0:
                print(json.dumps(rec), file=sys.stderr, flush=True)
            epoch_end = step % steps_per_epoch == 0
            if epoch_end:
                scheduler.step()
                if val_set:
                    run_validation(step // steps_per_epoch)
            out_of_time = time.time() >= deadline
            if out_of_time and not epoch_end and val_set:
                run_validation(step // steps_per_epoch)  # the steps since the last epoch count too
            if epoch_end or out_of_time or step % args.save_every == 0 or step == total_steps:
                log.flush()
                save(out / "last.pth", step // steps_per_epoch)
            if out_of_time:
                stopped = "time"
                break
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        bar.close()
        log.close()
    return {"step": step, "losses": losses, "best_val_psnr": best, "last_val": last_val,
            "wall_s": time.time() - t_start, "stopped_by": stopped, "val_n": len(val_set)}


@cli_main
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--export"]:
        if len(argv) != 3:
            raise UserError("usage: python -m sfadacof.train --export TRAINING_CKPT OUT.pth")
        export_half(argv[1], argv[2])
        return
    train(argv)


if __name__ == "__main__":
    main()
