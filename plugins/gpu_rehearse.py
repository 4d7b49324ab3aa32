"""`python -m plugins.gpu_check --rehearse`: the device run rehearsed on this machine, without a GPU (issue 22).

A GPU machine is lent rarely, for minutes, with no network and no TensorRT, to a checkout at another absolute path;
the first call there must work. So, here:
  1. build what the device needs for sm_90 into build/gpu-device (gpu_plan.build_for_device) unless it is there
     and current: the kernel file takes minutes per architecture, too long for the device's time;
  2. stand in for the device: a fresh venv holding only plugins/device_image.txt (the device image's packages the
     project touches; torch as its CPU build), the checkout copied as the device tool copies it (tracked and
     untracked-not-ignored files) plus the carried paths only, to a temporary absolute path, no network
     (PIP_NO_INDEX, a dead proxy), no GPU (CUDA_VISIBLE_DEVICES="");
  3. run the device command's gpu_check there (--stand-in: steps that need a GPU report "not run: no GPU", the rest
     run: the build check, the plugin's methods in the harness, the GPU tests' collection, the carried libraries'
     loading, the end-to-end subprocess's imports), and check its report;
  4. print the device call (command, carry, timeout_s), what it carries against the 64 MiB limit, and the device
     part's estimated wall time: the stand-in's measured seconds plus GPU_SECONDS, which must stay <= 400 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _libs, gpu_plan

REPO = gpu_plan.REPO
IMAGE = REPO / "plugins" / "device_image.txt"
CONSTRAINTS = REPO / "constraints-cpu.txt"
VENVS = REPO / "build" / "rehearse"

# The one device call (plugins/README.md "GPU check" quotes it; tests/test_gpu_check.py holds them equal).
COMMAND = "export PYTHONUNBUFFERED=1; nvidia-smi -L; python3 -m plugins.gpu_check 2>&1 | tee $OUT/gpu_check.log"
CARRY = ("build/gpu-device", ".authors")
TIMEOUT_S = 450
MAX_DEVICE_S = 400  # leaves the call's timeout room, and the session's 15 device minutes room for the start
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on the working tree plus the carried paths
# Device seconds of GPU work per step, on top of the CPU-side seconds the stand-in measures for the same step (the
# stand-in runs each step's CPU side: imports, collection, the harness's host checks). Estimates from what each step
# launches; the sanitizer's is the loosest (memcheck instruments every access), so it runs last under its own timeout.
GPU_SECONDS = {
    "startup": 10,     # CUDA context, device name
    "harness": 15,     # >= 4 enqueue runs at small sizes, each captured in a CUDA graph and replayed
    "gpu_tests": 60,   # tests/test_plugin_gpu.py's parametrised kernels against the PyTorch op, small sizes
    "kernel": 60,      # bandwidth figures; 3 accuracy runs at 1080p; 2 sizes x 2 K x 3 dtypes x kernels, ~0.3 s each
                       # plus their inputs (up to ~25 GB of maps at 4K, K = 11)
    "end_to_end": 45,  # the FP16 subprocess (import, cuDNN warm-up, 33 frames), fp32 reference 1.5 s, anchor 1.5 s
    "sanitizer": 120,  # memcheck over the harness
}
NO_NETWORK = {"PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1", "HF_HUB_OFFLINE": "1",
              **{k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                                                     "ALL_PROXY", "all_proxy")}, "no_proxy": "", "NO_PROXY": ""}


class RehearsalError(Exception):
    """One line: what is missing or wrong (exit 2)."""


def read_image(path: Path = IMAGE) -> dict[str, list[str]]:
    """device_image.txt -> {"install": [...], "gpu-only": [...], "absent": [...]} (comments and blanks dropped)."""
    sections: dict[str, list[str]] = {"install": [], "gpu-only": [], "absent": []}
    current = "install"
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            if current not in sections:
                raise RehearsalError(f"{path}: unknown section {line}")
            continue
        sections[current].append(line)
    return sections


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no SFADACOF_PLUGIN_DIR, no pip configuration from this shell: what a bare machine has."""
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TERM") if k in os.environ}
    return {**keep, "PYTHONNOUSERSITE": "1", **extra}


def venv_for(image: Path = IMAGE, python: str = sys.executable) -> Path:
    """A venv holding only the image's packages, cached under build/rehearse by the hash of the image file, the CPU
    constraints and the interpreter (never in ~/.cache; pip's cache is off)."""
    key = hashlib.sha256(image.read_bytes() + CONSTRAINTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = VENVS / f"venv-{key}"
    if (venv / "READY").is_file():
        return venv
    VENVS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"venv-{key}.", dir=VENVS))
    try:
        subprocess.run([python, "-m", "venv", "--clear", str(tmp)], check=True)
        specs = tmp / "device_image.req"
        specs.write_text("\n".join(read_image(image)["install"]) + "\n")
        print(f"rehearse: installing {image.name}'s packages into a fresh venv (torch: its CPU build)", flush=True)
        t0 = time.monotonic()
        pip = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir",
                              "--only-binary=:all:", "-c", str(CONSTRAINTS), "-r", str(specs)],
                             env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                                  "PIP_NO_CACHE_DIR": "1", "PYTHONNOUSERSITE": "1"},
                             capture_output=True, text=True)
        if pip.returncode != 0:
            print(pip.stdout[-3000:] + pip.stderr[-3000:], file=sys.stderr)
            raise RehearsalError(f"{image}: pip could not install the device image's packages "
                                 f"(exit {pip.returncode})")
        (tmp / "READY").write_text(f"installed in {time.monotonic() - t0:.0f} s\n")
        os.rename(tmp, venv)  # python -m works from the renamed folder (its scripts' shebangs are not used)
        for old in VENVS.glob("venv-*/READY"):  # one venv kept: those made here for an older image are stale
            if old.parent != venv:
                shutil.rmtree(old.parent, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return venv


def check_venv(venv: Path, image: dict[str, list[str]]) -> None:
    """The stand-in's interpreter imports none of the image's absent names (from outside any checkout)."""
    probe = ("import importlib.util, json, sys; "
             "print(json.dumps([n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None]))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe, *image["absent"]], capture_output=True,
                         text=True, cwd="/", env=_clean_env(), check=True).stdout
    present = json.loads(out)
    if present:
        raise RehearsalError(f"{venv}: the stand-in imports {', '.join(present)}, which the device image lacks")


def checkout_files(repo: Path = REPO) -> list[str]:
    """What the device tool sends: tracked and untracked-not-ignored files (relative paths that exist)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "-co", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RehearsalError(f"{repo}: not a git checkout ({type(e).__name__}): the rehearsal copies what git "
                             "would send") from None
    return [f for f in out.decode().split("\0") if f and (repo / f).is_file()]


def stage(dest: Path, repo: Path = REPO) -> tuple[int, int]:
    """Copy the checkout and the carried paths to dest: (bytes of the checkout, bytes carried)."""
    tree = 0
    for rel in checkout_files(repo):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)
        tree += (dest / rel).stat().st_size
    carried = 0
    for rel in CARRY:
        src = repo / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, symlinks=True)
            carried += sum(f.stat().st_size for f in (dest / rel).rglob("*") if f.is_file())
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
            carried += (dest / rel).stat().st_size
    return tree, carried


def check_harness_links_inside(build_dir: Path) -> None:
    """The carried harness finds libsfadacof_cpu beside itself ($ORIGIN), not in the folder it was built in."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return
    out = subprocess.run([ldd, str(build_dir / gpu_plan.HARNESS)], capture_output=True, text=True).stdout
    cpu = _libs.library_filename(_libs.CPU_LIBRARY)
    line = next((ln for ln in out.splitlines() if cpu in ln), "")
    if str(build_dir / cpu) not in line:
        raise RehearsalError(f"{build_dir / gpu_plan.HARNESS}: {cpu} resolves to {line.strip() or 'nothing'}, "
                             f"not beside the carried harness (build with $ORIGIN)")


def device_call() -> str:
    return (f"command: {COMMAND}\ncarry:   {json.dumps(list(CARRY))}\ntimeout_s: {TIMEOUT_S}")


def ensure_build(args) -> None:
    problem = gpu_plan.build_problem(args.build_dir, gpu_plan.DEVICE_ARCH)
    if problem is None:
        print(f"rehearse: {args.build_dir} holds a current sm_{gpu_plan.DEVICE_ARCH} build", flush=True)
        return
    print(f"rehearse: {problem}; building it here", flush=True)
    if not (args.tensorrt_include / "NvInferRuntime.h").is_file():
        raise RehearsalError(f"{args.tensorrt_include}: no TensorRT 10.x headers (NvInferRuntime.h) to build the "
                             "plugin and its harness with (pass --tensorrt-include DIR)")
    if shutil.which("nvcc") is None:
        raise RehearsalError("nvcc not found on PATH: the sm_90 libraries are built here, with CUDA 13's nvcc")
    t0 = time.monotonic()
    rc = gpu_plan.build_for_device(args.build_dir, gpu_plan.DEVICE_ARCH, args.tensorrt_include, args.jobs)
    if rc != 0:
        raise RehearsalError(f"building {args.build_dir} failed (exit {rc})")
    print(f"rehearse: built in {time.monotonic() - t0:.0f} s", flush=True)


def rehearse(args) -> int:
    try:
        return _rehearse(args)
    except RehearsalError as e:
        print(f"gpu_check --rehearse: {e}", file=sys.stderr)
        return 2


def _rehearse(args) -> int:
    if args.build_dir != gpu_plan.DEFAULT_BUILD.resolve():
        raise RehearsalError(f"--build-dir {args.build_dir}: the device call carries {CARRY[0]}; rehearse that")
    image = read_image()
    ensure_build(args)
    venv = venv_for()
    check_venv(venv, image)
    root = Path(tempfile.mkdtemp(prefix="sfadacof-device-"))
    try:
        return _run_stand_in(root, venv)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_stand_in(root: Path, venv: Path) -> int:
    checkout, out, home = root / "checkout", root / "OUT", root / "home"
    for d in (checkout, out, home):
        d.mkdir()
    tree, carried = stage(checkout)
    total = tree + carried
    print(f"rehearse: stand-in checkout at {checkout} (built at {REPO}): {tree / 2**20:.1f} MiB of files + "
          f"{carried / 2**20:.1f} MiB carried = {total / 2**20:.1f} MiB (limit {CARRY_LIMIT // 2**20} MiB)", flush=True)
    check_harness_links_inside(checkout / CARRY[0])
    env = _clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(home), OUT=str(out),
                     SFADACOF_CACHE=str(root / "cache"), CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1",
                     **NO_NETWORK)
    cmd = ["python3", "-m", "plugins.gpu_check", "--stand-in"]
    print("rehearse: +", " ".join(cmd), f"(cwd {checkout}, venv {venv.name})", flush=True)
    t0 = time.monotonic()
    rc, log = gpu_plan.run_group(cmd, 900, cwd=checkout, env=env)
    wall = time.monotonic() - t0
    print(log[-9000:], flush=True)
    reports = sorted(out.glob("*-stand-in.json"))
    if not reports:
        raise RehearsalError(f"the stand-in's gpu_check wrote no report (exit {rc})")
    report = json.loads(reports[-1].read_text())
    steps = report["steps"]
    bad = []
    if rc != 0:
        bad.append(f"the stand-in's gpu_check exited {rc}")
    for name in gpu_plan.STEPS:
        status = steps.get(name, {}).get("status")
        want = "passed" if name == "build" else gpu_plan.NOT_RUN
        print(f"  {name:<11} {status}   ({steps.get(name, {}).get('seconds', '?')} s here)")
        if status != want:
            bad.append(f"step {name}: {status!r}, expected {want!r}")
    bad += [f"report: {p}" for p in report.get("problems", ["no problems list"])]
    sass = (report.get("kernel") or {}).get("sass") or {}
    if "error" in sass:  # cuobjdump is a system tool of the device image; this machine may lack it
        print(f"note: kernel.sass not measured in the stand-in: {sass['error'].split(' (')[0]}")
    elif sass:
        print(f"kernel.sass of the carried plugin library: {len(sass.get('kernels', []))} kernels, "
              f"problems: {sass.get('problems') or 'none'}")
    estimate = wall + sum(GPU_SECONDS.values())
    print(f"estimated device wall time: {estimate:.0f} s (limit {MAX_DEVICE_S} s) = {wall:.0f} s measured in the "
          f"stand-in (CPU side, one core) + {sum(GPU_SECONDS.values())} s of GPU work "
          f"({', '.join(f'{k} {v}' for k, v in GPU_SECONDS.items())})")
    if estimate > MAX_DEVICE_S:
        bad.append(f"estimated device wall time {estimate:.0f} s > {MAX_DEVICE_S} s")
    if total > CARRY_LIMIT:
        bad.append(f"{total / 2**20:.1f} MiB travels > {CARRY_LIMIT // 2**20} MiB")
    if not (REPO / CARRY[1]).exists():
        print(f"note: {CARRY[1]} is absent: the authors' anchor will say so (not carried; nothing else needs it)")
    print(f"carried: {carried / 2**20:.1f} MiB ({', '.join(CARRY)}); travels in all: {total / 2**20:.1f} MiB")
    print("device call (the device tool's run):")
    print(device_call())
    for b in bad:
        print("rehearsal problem:", b)
    print("rehearsal: passed" if not bad else "rehearsal: FAILED")
    return 0 if not bad else 1
