"""ONNX Runtime backend (`--backend ort`): runs an export of export.to_onnx, either form.

    OrtBackend(onnx_path, providers=None, threads=None, device="cpu", optimization="all", verify_io=True)

Without a graph, the registry exports the checkpoint through export.cache.onnx_for_checkpoint (cached).
Plugin-form graphs (the custom `sfadacof::AdaCoFSynthesis` node) get the node from runtime.backends.ort_custom_op
(the C++ CPU kernel through onnxruntime-extensions); standard-op graphs need nothing extra.

Session options, chosen for the small shared CPU machines this runs on (2 cores here):
  * intra_op_num_threads = the cores this process may use (sched_getaffinity), inter_op = 1: the graph is one
    chain of large convolutions, so parallelism inside each op is all there is; a second inter-op pool would only
    compete with it for the same cores.
  * execution mode sequential; graph optimisation level ORT_ENABLE_ALL (constant folding, Conv+Relu fusion,
    layout transforms for the convolutions: measured fastest on this graph);
  * allow_spinning off: ORT's worker threads otherwise busy-wait between ops, which on a shared 2-core machine
    steals the cycles the other thread (and other processes) need;
  * the CPU memory arena and memory-pattern planning stay on (fixed shapes within a run reuse buffers).
CUDA: device="cuda" (or providers naming CUDAExecutionProvider) needs onnxruntime-gpu; a plugin-form graph on CUDA
runs the custom node on the CPU (ORT copies its inputs over), so prefer the onnx form or TensorRT there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sfadacof.errors import UserError, require

from .base import Backend, available_cores, reported_metadata

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _import_ort():
    return require("onnxruntime", "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA)")


def inspect_graph(model_path: Path) -> tuple[bool, bool]:
    """(has the custom AdaCoFSynthesis node, is an fp16 graph), read without loading external weights."""
    import onnx

    from export.fp16_graph import is_fp16_graph

    m = onnx.load(str(model_path), load_external_data=False)
    return bool(custom_nodes(m)), is_fp16_graph(m)


def custom_nodes(m) -> list:
    from plugins.onnx_node import DOMAIN, OP_TYPE

    return [n for n in m.graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN]


def check_custom_node_attributes(model_path: Path) -> None:
    """Refuse, before the session runs, a synthesis node whose attributes cannot be right: kernel_size and dilation
    must be positive integers and agree with the model's metadata (written by export.core)."""
    import onnx

    m = onnx.load(str(model_path), load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    for node in custom_nodes(m):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for name in ("kernel_size", "dilation"):
            v = attrs.get(name)
            if not isinstance(v, int) or v < 1:
                raise UserError(f"{model_path}: AdaCoFSynthesis node {node.name!r}: attribute {name} must be a "
                                f"positive integer, found {v!r}")
            if name in meta and meta[name].isdigit() and int(meta[name]) != v:
                raise UserError(f"{model_path}: AdaCoFSynthesis node {node.name!r}: {name} {v} differs from the "
                                f"model's {name} {meta[name]} (metadata); the graph is malformed")


_FLOAT_TYPES = ("tensor(float)", "tensor(float16)")


def io_contract_problem(session) -> str | None:
    """What makes a session's graph not an SF-AdaCoF frame interpolator (None if its IO fits): two float inputs and
    one float output, each N x 3 x H x W, and the metadata export.core writes (an unrelated graph with the same IO
    shapes would otherwise run and write garbage)."""
    ins, outs = session.get_inputs(), session.get_outputs()
    if len(ins) != 2 or len(outs) != 1:
        return (f"expected 2 inputs (frame0, frame2) and 1 output, found {len(ins)} inputs "
                f"({', '.join(i.name for i in ins)}) and {len(outs)} outputs")
    for role, t in (("input", ins[0]), ("input", ins[1]), ("output", outs[0])):
        if t.type not in _FLOAT_TYPES:
            return f"{role} {t.name} is {t.type}, expected float32/float16 frames"
        shape = list(t.shape or [])
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            return f"{role} {t.name} has shape {shape}, expected N x 3 x H x W"
    meta = session.get_modelmeta()
    if "variant" not in meta.custom_metadata_map and meta.producer_name != "sfadacof":
        return ("no SF-AdaCoF metadata (variant, checkpoint_sha256 ...): not a graph written by export.to_onnx, "
                "export.fp16_graph or calib")
    return None


def _resolve_providers(ort, providers: list | None, device: str) -> list:
    available = ort.get_available_providers()
    if providers:
        missing = [p for p in providers if (p[0] if isinstance(p, tuple) else p) not in available]
        if missing:
            raise UserError(f"ONNX Runtime providers not available here: {missing} (available: {available})")
        return list(providers)
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise UserError(f"--device {device}: this onnxruntime has no CUDAExecutionProvider "
                            f"(install onnxruntime-gpu instead of onnxruntime; available: {', '.join(available)})")
        dev_id = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
    if device != "cpu":
        raise UserError(f"--device {device}: choose cpu or cuda[:N]")
    return ["CPUExecutionProvider"]


def make_session_options(ort, threads: int | None, optimization: str, custom_op: bool):
    if optimization not in OPTIMIZATION_LEVELS:
        raise UserError(f"optimization level {optimization!r}: choose {', '.join(OPTIMIZATION_LEVELS)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or available_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT's warnings about unused initializers etc. are not the user's concern
    if custom_op:
        from .ort_custom_op import add_to_session_options, set_threads

        set_threads(so.intra_op_num_threads)
        add_to_session_options(so)
    return so


class OrtBackend(Backend):
    """An exported SF-AdaCoF graph in an ONNX Runtime session."""

    name = "ort"

    def __init__(self, onnx_path: str | os.PathLike, providers: list | None = None, threads: int | None = None,
                 device: str = "cpu", optimization: str = "all", verify_io: bool = True) -> None:
        ort = _import_ort()
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise UserError(f"{self.onnx_path}: ONNX model not found")
        try:
            self.custom_op, self.fp16_graph = inspect_graph(self.onnx_path)
        except Exception as e:  # protobuf DecodeError and friends: not an ONNX file
            raise UserError(f"{self.onnx_path}: not a readable ONNX model ({_first_line(e)})") from None
        self.providers = _resolve_providers(ort, providers, device)
        self.threads = threads or available_cores()
        self.optimization = optimization
        if self.custom_op:
            check_custom_node_attributes(self.onnx_path)
        so = make_session_options(ort, self.threads, optimization, self.custom_op)
        try:
            self.session = ort.InferenceSession(str(self.onnx_path), so, providers=self.providers)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise UserError(f"{self.onnx_path}: ONNX Runtime cannot load it ({_first_line(e)})") from None
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        if verify_io:
            problem = io_contract_problem(self.session)
            if problem:
                raise UserError(f"{self.onnx_path}: not an SF-AdaCoF graph: {problem}")
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.output_name = self.session.get_outputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        if frame0.shape != frame2.shape:
            raise UserError(f"frames differ in shape: {frame0.shape} vs {frame2.shape}")
        feed = {self.input_names[0]: np.ascontiguousarray(frame0, dtype=self.input_dtype),
                self.input_names[1]: np.ascontiguousarray(frame2, dtype=self.input_dtype)}
        out = self.run([self.output_name], feed)[0]
        return out.astype(np.float32, copy=False)

    def run(self, output_names, feed: dict) -> list:
        """session.run; with the custom op, through ort_custom_op.run_session, so that Ctrl-C and op errors
        end as KeyboardInterrupt / one-line UserError instead of aborting inside C++."""
        if not self.custom_op:
            return self.session.run(output_names, feed)
        from .ort_custom_op import CustomOpError, run_session

        try:
            return run_session(self.session, output_names, feed)
        except CustomOpError as e:
            raise UserError(f"{self.onnx_path}: {e}") from None

    def describe(self) -> dict:
        import onnxruntime as ort

        meta = self.metadata
        d = {"backend": self.name, "onnx": str(self.onnx_path), "onnxruntime": ort.__version__,
             "providers": [p[0] if isinstance(p, tuple) else p for p in self.session.get_providers()],
             "threads": self.threads, "optimization": self.optimization,
             "precision": "fp16" if self.fp16_graph or self.input_dtype == np.float16 else "fp32",
             "synthesis": meta.get("synthesis", "plugin" if self.custom_op else "onnx"),
             "custom_op": "C++ CPU kernel via onnxruntime-extensions" if self.custom_op else None}
        d.update(reported_metadata(meta))
        return d

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]
