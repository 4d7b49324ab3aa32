"""OpenVINO backend (`--backend openvino`): the standard-op export on OpenVINO's CPU plugin, fp32 or bf16.

    OpenVINOBackend(onnx_path, precision="fp32", threads=None, verify_io=True, max_shapes=2, synthesis="auto")

Without `--onnx`, the registry exports the checkpoint in the standard-op form
(export.cache.onnx_for_checkpoint(..., synthesis="onnx"), cached): OpenVINO has no use for the plugin form's
custom node. The synthesis (synthesis=):
  * "kernel": the project's C++ CPU kernel as two OpenVINO nodes put in place of the export's lowering at compile
    time (openvino_synthesis.py), fp32 whatever the precision; "auto" (the default) takes it where the kernel
    library is built (pip install builds it), else
  * "ops": the export's standard-op lowering as it is (the graph's own GatherElements);
  * "gather": an OpenVINO-native Gather(batch_dims) form (openvino_synthesis.py; opt-in, heavier at 1080p).

Compiled models: one per input shape (N, H, W), compiled on first use with static shapes and kept (the last
`max_shapes` shapes; each holds its activation buffers), so a folder of same-size pairs or a video compiles once.
Compile options: INFERENCE_NUM_THREADS = the cores this process may use, PERFORMANCE_HINT LATENCY (one stream:
one frame at a time uses every core), INFERENCE_PRECISION_HINT f32 or bf16.

bf16 (`--precision bf16`, CPUs with AVX512_BF16 or AMX only; emulated bf16 would be slower than fp32): the trunk,
the weight and occlusion heads run in bf16; the offset heads (every node that computes only alpha/beta, found
structurally from the export's named synthesis inputs, as export.fp16_graph does), and the synthesis (every node
after the synthesis inputs) stay fp32: sampling coordinates i + k*d + alpha need fp32's precision, and bf16's 8-bit
mantissa would move taps by whole pixels at 1080p. How the nodes are kept fp32, the supported way:
  * the node's rt_info gets the legacy key "precise_0". OpenVINO's Python API cannot construct the C++ attribute
    itself; its serializer (ov::pass::Serialize) converts that string key into the real attribute
    (DisablePrecisionConversion, "no conversion of this node to a lower precision"), and the IR frontend reads it
    back as that attribute. So the marked model goes through save_model/read_model once (a temporary IR, ~0.5 s);
  * the CPU plugin then keeps such nodes in their original precision (Node::keepOrigPrecision, which
    Graph::EnforceInferencePrecision skips).
  * checked, not assumed: after every bf16 compile the compiled model's runtime graph
    (CompiledModel.get_runtime_model(), rt_info runtimePrecision of each executed node) must show every
    convolution of the offset heads in f32, else the backend refuses to run (one line). Measured effect
    (tests/test_openvino_backend.py): the offsets equal the fp32 model's, not bf16-rounded ones.
INT8 (`--precision int8`): an OpenVINO IR quantized by NNCF -- the shipped one for the shipped weights
(runtime/backends/openvino_int8.py: sfadacof/weights/sf_adacof_default.int8.xml, refused unless its sidecar's
SHA-256s match), or a user's own from `python -m calib.openvino_int8` (`--onnx MODEL.int8.xml`). What NNCF left
float runs in bf16 where the CPU has native bf16, else fp32; the offset heads' last convolutions (the offsets the
synthesis reads) and the synthesis are marked fp32 as above and checked on every compiled graph (their convolutions
f32, and the model must execute int8 convolutions at all). An INT8 IR run with `--precision fp32/bf16` (the earlier
way) still runs, that hint for what stayed float; describe() says precision "int8" either way.
Interrupts: Ctrl-C during a frame arrives when the C++ call returns (with the kernel nodes, OpenVINO calls Python
back: the signals are held during infer, sfadacof.interrupts.deferred_sigint).
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sfadacof.errors import UserError, require

from .base import Backend, available_cores, cpu_flags, reported_metadata

PRECISIONS = ("fp32", "bf16", "int8")
SYNTHESIS_FORMS = ("auto", "kernel", "ops", "gather")
_SYNTHESIS_TEXT = {"kernel": "the C++ CPU kernel (plugins/adacof_cpu.cpp) as two OpenVINO nodes, fp32",
                   "ops": "standard ops (the export's lowering)",
                   "gather": "OpenVINO Gather(batch_dims=1), one per tap (openvino_synthesis.py)"}
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
INT8_RUNTIME = ("u8", "i8")  # runtime precisions of a convolution executed in int8 (its input's type)
LOWERED_RUNTIME = ("bf16", "f16", "u8", "i8")  # runtime precisions below fp32 (the synthesis must show none)
# The synthesis node's input tensors as export.core names them (NODE_INPUT_TENSORS), in plugins/onnx_node order.
OFFSET_TENSORS = ("alpha1", "beta1", "alpha2", "beta2")
# rt_info key that ov::pass::Serialize turns into DisablePrecisionConversion (see the module docstring)
_KEEP_PRECISION_KEY = "precise_0"
# what the IR frontend reads it back as: DisablePrecisionConversion (OpenVINO 2026) or the legacy
# DisableFP16Compression, whose type name is "precise" (2025)
_KEEP_PRECISION_ATTRS = ("DisablePrecisionConversion", "precise")


def import_openvino():
    return require("openvino", "--backend openvino: openvino is not installed (pip install openvino)")


def native_bf16(core=None) -> bool:
    """Whether this CPU computes bf16 natively: OpenVINO lists BF16 in OPTIMIZATION_CAPABILITIES (AVX512_BF16, AMX)
    and no oneDNN ISA cap (ONEDNN_MAX_CPU_ISA) hides those units -- OpenVINO's property ignores the cap, and under
    ONEDNN_MAX_CPU_ISA=AVX2 a bf16 compile fails (runtime/cpu_info.py). Without it bf16 is emulated, slower than
    fp32."""
    from ..cpu_info import cpu_flags, native_bf16 as flags_bf16

    if cpu_flags() and not flags_bf16():  # no /proc/cpuinfo (not Linux): OpenVINO's word alone
        return False
    ov = import_openvino()
    if isa_capped_below_bf16():
        return False
    core = core or ov.Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # an OpenVINO without the property: assume no
        return False


def isa_capped_below_bf16() -> bool:
    """Whether a oneDNN ISA cap (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA) sits below native bf16. OpenVINO's CPU
    plugin honours the cap for its kernels -- the way to run this CPU as an older one, e.g. AVX2 -- but still lists
    BF16 among its capabilities, and a bf16 compile under such a cap fails ("object is not initialized", OpenVINO
    2026.4). The levels are runtime/cpu_info.py's (one home): the cap hides both bf16 flags."""
    from ..cpu_info import effective_flags, isa_cap

    cap = isa_cap()
    return cap is not None and not (set(BF16_FLAGS) & effective_flags(set(BF16_FLAGS), cap))


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # the /proc/cpuinfo flags of native bf16 (AVX512_BF16, AMX)


def bf16_reason(precision: str) -> str:
    """Why the CPU default runs `precision`, in the CPU's own terms (its /proc/cpuinfo flags, and the ISA cap)."""
    from ..cpu_info import effective_flags, isa_cap

    have = [f for f in BF16_FLAGS if f in cpu_flags()]
    usable = [f for f in have if f in effective_flags()]
    if precision == "bf16":
        return f"bf16: this CPU has {' and '.join(usable) or 'native bf16 (OpenVINO says so)'}"
    if have and not usable:
        return (f"fp32: this CPU has {' and '.join(have)} but the ISA cap {isa_cap()} (ONEDNN_MAX_CPU_ISA) hides "
                "them, so bf16 would be emulated, slower than fp32")
    return (f"fp32: this CPU lacks {' and '.join(BF16_FLAGS)} (/proc/cpuinfo flags), so bf16 would be emulated, "
            "slower than fp32" if not have else
            f"fp32: OpenVINO reports no native bf16 here although /proc/cpuinfo lists {' and '.join(have)}")


def _synthesis_tensors() -> tuple[str, ...]:
    from export.core import NODE_INPUT_TENSORS

    return tuple(NODE_INPUT_TENSORS)


def _synthesis_output() -> str:
    from export.core import NODE_OUTPUT_TENSOR

    return NODE_OUTPUT_TENSOR


class _Graph:
    """Producer look-ups over an ov.Model's nodes by tensor name, ancestor and descendant walks."""

    def __init__(self, model) -> None:
        self.nodes = {n.get_instance_id(): n for n in model.get_ordered_ops()}
        self.producer = {}
        for node in self.nodes.values():
            for out in node.outputs():
                for name in out.get_names():
                    self.producer[name] = node

    @staticmethod
    def _reach(start, step) -> set[int]:
        """Instance ids of the nodes reachable from `start` by repeatedly following `step(node)`."""
        seen: set[int] = set()
        stack = list(start)
        while stack:
            node = stack.pop()
            if node.get_instance_id() not in seen:
                seen.add(node.get_instance_id())
                stack.extend(step(node))
        return seen

    def ancestors(self, tensors) -> set[int]:
        return self._reach((self.producer[t] for t in tensors),
                           lambda node: (i.get_source_output().get_node() for i in node.inputs()))

    def consumers_of(self, tensors) -> set[int]:
        """Nodes reading any of `tensors`, directly or through other nodes."""
        readers = (i.get_node() for t in tensors for out in self.producer[t].outputs() if t in out.get_names()
                   for i in out.get_target_inputs())
        return self._reach(readers, lambda node: (i.get_node() for out in node.outputs()
                                                  for i in out.get_target_inputs()))


def fp32_regions(model) -> dict[str, set[int]]:
    """Instance ids of the nodes that must stay fp32 under bf16: "offset_heads" (nodes computing only the
    alpha/beta offsets: ancestors of the offset tensors that are no ancestors of the frames, weights or occlusion)
    and "synthesis" (nodes downstream of the synthesis inputs that feed none of them). UserError when the graph
    lacks the export's named synthesis inputs (not an export of export.core)."""
    g = _Graph(model)
    names = _synthesis_tensors()
    missing = [t for t in names if t not in g.producer]
    if missing:
        raise UserError(f"bf16 needs the export's named synthesis inputs to keep the offsets fp32; this graph has "
                        f"no tensor {', '.join(missing)} (export it with export.to_onnx --synthesis onnx)")
    others = [t for t in names if t not in OFFSET_TENSORS]
    offsets = g.ancestors(OFFSET_TENSORS) - g.ancestors(others)
    synthesis = g.consumers_of(names) - g.ancestors(names)
    return {"offset_heads": offsets, "synthesis": synthesis}


def keep_fp32(model, ids: set[int]):
    """A copy of `model` (read back from a temporary IR) whose nodes `ids` carry DisablePrecisionConversion."""
    ov = import_openvino()
    for node in model.get_ordered_ops():
        if node.get_instance_id() in ids:
            node.get_rt_info()[_KEEP_PRECISION_KEY] = ""
    with tempfile.TemporaryDirectory(prefix="sfadacof-ov-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        # read into memory, so nothing maps the temporary files once they are gone
        weights = ov.Tensor(np.fromfile(xml.with_suffix(".bin"), dtype=np.uint8))
        marked = ov.Core().read_model(xml.read_text(), weights)
    kept = sum(1 for n in marked.get_ordered_ops() if any(k.startswith(_KEEP_PRECISION_ATTRS)
                                                          for k in n.get_rt_info().keys()))
    if kept < len(ids):
        raise UserError(f"this OpenVINO ({ov.__version__}) does not carry the fp32 hint through its IR "
                        f"({kept} of {len(ids)} nodes marked); use --precision fp32")
    return marked


def runtime_precisions(compiled) -> list[tuple[str, str, list[str]]]:
    """(layer type, runtime precision, original layer names) of every node the compiled model executes."""
    out = []
    for node in compiled.get_runtime_model().get_ordered_ops():
        ri = node.get_rt_info()
        out.append((ri["layerType"].astype(str), ri["runtimePrecision"].astype(str),
                    ri["originalLayersNames"].astype(str).split(",")))
    return out


class OpenVINOBackend(Backend):
    """A standard-op SF-AdaCoF export on OpenVINO's CPU plugin."""

    name = "openvino"

    @property
    def is_ir(self) -> bool:
        """An OpenVINO IR (.xml, e.g. calib.openvino_int8's INT8 model) rather than an ONNX export."""
        return self.onnx_path.suffix.lower() == ".xml"

    def __init__(self, onnx_path: str | os.PathLike, precision: str = "fp32", threads: int | None = None,
                 verify_io: bool = True, max_shapes: int = 2, synthesis: str = "auto") -> None:
        ov = import_openvino()
        if precision not in PRECISIONS:
            raise UserError(f"--backend openvino --precision {precision}: choose {', '.join(PRECISIONS)}")
        self.onnx_path = Path(onnx_path)
        if not self.onnx_path.is_file():
            raise UserError(f"{self.onnx_path}: {'OpenVINO IR' if self.is_ir else 'ONNX model'} not found")
        if not self.is_ir:
            from .ort_backend import inspect_graph

            try:
                custom_op, fp16_graph = inspect_graph(self.onnx_path)
            except Exception as e:  # protobuf DecodeError and friends: not an ONNX file
                raise UserError(f"{self.onnx_path}: not a readable ONNX model ({_first_line(e)})") from None
            if custom_op:
                raise UserError(f"{self.onnx_path}: the plugin form (custom AdaCoFSynthesis node) does not run on "
                                "OpenVINO; give the standard-op export (export.to_onnx --synthesis onnx), or omit "
                                "--onnx")
            if fp16_graph:
                raise UserError(f"{self.onnx_path}: an fp16 graph; OpenVINO takes the fp32 export and lowers "
                                "precision itself (--precision bf16)")
        self.core = ov.Core()
        if precision == "bf16" and not native_bf16(self.core):
            raise UserError("--backend openvino --precision bf16: this CPU has no native bf16 (AVX512_BF16 or AMX); "
                            "OpenVINO would emulate it, slower than fp32: use --precision fp32")
        if precision == "int8" and not self.is_ir:
            raise UserError(f"{self.onnx_path}: --precision int8 runs an INT8 OpenVINO IR (.xml from "
                            "python -m calib.openvino_int8), not an ONNX export")
        self.precision = precision
        # what stays float in an INT8 model runs in bf16 where the CPU computes it natively
        self.float_precision = ("bf16" if native_bf16(self.core) else "fp32") if precision == "int8" else precision
        self.threads = threads or available_cores()
        self.max_shapes = max(1, max_shapes)
        try:
            model = self.core.read_model(str(self.onnx_path))
        except Exception as e:
            raise UserError(f"{self.onnx_path}: OpenVINO cannot read it ({_first_line(e)})") from None
        meta = ir_metadata(model) if self.is_ir else _onnx_metadata(self.onnx_path)
        self.sidecar = None
        if self.is_ir:
            from .openvino_int8 import check_int8_ir

            # an IR with a sidecar (the shipped one) runs only while its files and weights match it
            self.sidecar = check_int8_ir(self.onnx_path, meta.get("checkpoint_sha256"))
        if verify_io:
            problem = _io_problem(model, meta)
            if problem:
                raise UserError(f"{self.onnx_path}: not an SF-AdaCoF graph: {problem}")
        self.metadata = meta
        # The synthesis form (module docstring). The kernel nodes go into a clone at compile time (_request), so
        # self.model keeps the export's ops: calib.openvino_int8 quantizes and saves it, and the fp32 marks of
        # keep_fp32 below (which round-trip the model through an IR) must see the plain graph.
        if synthesis not in SYNTHESIS_FORMS:
            raise UserError(f"OpenVINO synthesis {synthesis!r}: choose {', '.join(SYNTHESIS_FORMS)}")
        from .openvino_synthesis import kernel_library, replace_synthesis

        self._kd = int(meta.get("kernel_size", 0) or 0), int(meta.get("dilation", 1) or 1)
        self.synthesis = _SYNTHESIS_TEXT["ops"]
        if meta.get("synthesis") == "openvino-gather":  # an IR written from this backend's model (calib.openvino_int8)
            self.synthesis = _SYNTHESIS_TEXT["gather"]
        self.synthesis_form = "ops"
        self._kernel_errors: list = []
        if synthesis == "gather":
            k, d = self._kd
            if k > 0 and replace_synthesis(model, _synthesis_tensors(), _synthesis_output(), k, d, form="gather"):
                self.synthesis, self.synthesis_form = _SYNTHESIS_TEXT["gather"], "gather"
        elif synthesis in ("auto", "kernel"):
            library = kernel_library()
            if library is None and synthesis == "kernel":
                raise UserError("OpenVINO synthesis 'kernel': the C++ CPU kernel is not built "
                                "(python -m plugins.build, or pip install .)")
            names = {n for node in model.get_ordered_ops() for o in node.outputs() for n in o.get_names()}
            if library is not None and self._kd[0] > 0 and \
                    set(_synthesis_tensors()) | {_synthesis_output()} <= names:
                self.synthesis, self.synthesis_form = _SYNTHESIS_TEXT["kernel"], "kernel"
                self.kernel_library = library
            elif synthesis == "kernel":
                raise UserError(f"{self.onnx_path}: OpenVINO synthesis 'kernel': the graph lacks the export's named "
                                "synthesis tensors")
        self.kept_fp32: dict[str, int] = {}
        self._offset_convs: set[str] = set()
        self._synthesis_nodes: set[str] = set()  # int8: checked for a lowered precision after every compile
        if precision == "bf16":
            regions = fp32_regions(model)
            self.kept_fp32 = {k: len(v) for k, v in regions.items()}
            self._offset_convs = {n.get_friendly_name() for n in model.get_ordered_ops()
                                  if n.get_instance_id() in regions["offset_heads"]
                                  and n.get_type_name() == "Convolution"}
            model = keep_fp32(model, regions["offset_heads"] | regions["synthesis"])
        self.int8 = any(n.get_type_name() == "FakeQuantize" for n in model.get_ordered_ops())
        if precision == "int8":
            if not self.int8:
                raise UserError(f"{self.onnx_path}: --precision int8 but the IR is not quantized (no FakeQuantize)")
            from .openvino_int8 import offset_outputs

            regions = fp32_regions(model)
            keep = offset_outputs(model)
            self.kept_fp32 = {"offset_outputs": len(keep), "synthesis": len(regions["synthesis"])}
            self._offset_convs = {n.get_friendly_name() for n in model.get_ordered_ops()
                                  if n.get_instance_id() in keep and n.get_type_name() == "Convolution"}
            self._synthesis_nodes = {n.get_friendly_name() for n in model.get_ordered_ops()
                                     if n.get_instance_id() in regions["synthesis"]}
            if self.float_precision == "bf16":
                model = keep_fp32(model, keep | regions["synthesis"])
        self.model = model
        self.input_names = [i.get_any_name() for i in model.inputs]
        self._compiled: OrderedDict[tuple, tuple] = OrderedDict()

    def config(self) -> dict:
        cfg = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[self.float_precision], "INFERENCE_NUM_THREADS": self.threads,
               "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if self.synthesis_form == "kernel":
            # OpenVINO pins the thread that runs infer to one core while it runs; the kernel nodes' threads are
            # started from it and would inherit that one core: measured 0.22 s against 0.12 s a 960x512 frame for
            # the two nodes on 2 cores, the rest of the graph unchanged (0.42 s either way, int8 on the Xeon)
            cfg["ENABLE_CPU_PINNING"] = False
        return cfg

    def _request(self, shape: tuple[int, ...]):
        key = tuple(shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key][1]
        while len(self._compiled) >= self.max_shapes:
            self._compiled.popitem(last=False)  # drop the oldest shape's compiled model and its buffers
        self.model.reshape({name: list(shape) for name in self.input_names})
        model = self.model
        if self.synthesis_form == "kernel":
            from .openvino_synthesis import replace_synthesis

            model = self.model.clone()
            replace_synthesis(model, _synthesis_tensors(), _synthesis_output(), *self._kd, form="kernel",
                              threads=self.threads, errors=self._kernel_errors)
        try:
            compiled = self.core.compile_model(model, "CPU", self.config())
        except Exception as e:
            raise UserError(f"{self.onnx_path}: OpenVINO cannot compile it for {shape} ({_first_line(e)})") from None
        if self.precision in ("bf16", "int8"):
            self._check_offsets_fp32(compiled)
        self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key][1]

    def _check_offsets_fp32(self, compiled) -> None:
        """Every executed convolution of the offset heads (int8: their last ones) must run in f32, and an INT8
        model must execute int8 convolutions (see the module docstring)."""
        executed = runtime_precisions(compiled)
        lowered = {(name, prec) for layer, prec, names in executed if layer == "Convolution" and prec != "f32"
                   for name in names if name in self._offset_convs}
        bad = sorted({name for name, _ in lowered})
        seen = {name for layer, _, names in executed for name in names} & self._offset_convs
        if bad or not seen:
            precs = "/".join(sorted({p for _, p in lowered})) or "bf16"
            raise UserError(f"OpenVINO ran offset-head convolutions in {precs} ({', '.join(bad) or 'none found'}); "
                            "the offsets must stay fp32: use --precision fp32")
        low = sorted({name for _, prec, names in executed if prec in LOWERED_RUNTIME
                      for name in names if name in self._synthesis_nodes})
        # the kernel nodes run as the plugin's "Reference" nodes (the only ones in this graph): in f32, or refuse
        low += sorted({f"the kernel node ({prec})" for layer, prec, _ in executed
                       if self.synthesis_form == "kernel" and layer == "Reference" and prec != "f32"})
        if low:
            raise UserError(f"OpenVINO ran synthesis nodes below fp32 ({', '.join(low[:3])}); the synthesis must stay "
                            "fp32: use --precision fp32")
        if self.precision == "int8" and not any(layer == "Convolution" and prec in INT8_RUNTIME
                                                for layer, prec, _ in executed):
            raise UserError(f"{self.onnx_path}: OpenVINO runs no convolution of this INT8 model in int8 here; "
                            "use --precision bf16 or fp32")

    def runtime_precisions(self, shape: tuple[int, ...]) -> list[tuple[str, str, list[str]]]:
        """What the compiled model for `shape` executes, in which precision (tests and reports)."""
        self._request(shape)
        return runtime_precisions(self._compiled[tuple(shape)][0])

    def infer(self, frame0: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        if frame0.shape != frame2.shape:
            raise UserError(f"frames differ in shape: {frame0.shape} vs {frame2.shape}")
        if frame0.ndim != 4 or frame0.shape[1] != 3:
            raise UserError(f"frames must be N x 3 x H x W, got {frame0.shape}")
        request = self._request(frame0.shape)
        feed = {0: np.ascontiguousarray(frame0, dtype=np.float32), 1: np.ascontiguousarray(frame2, dtype=np.float32)}
        if self.synthesis_form != "kernel":
            request.infer(feed)
        else:  # the kernel nodes call back into Python (openvino_synthesis.py)
            from .openvino_synthesis import infer_with_kernel

            infer_with_kernel(request, feed, self._kernel_errors)
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def describe(self) -> dict:
        import openvino as ov

        d = {"backend": self.name, "onnx": str(self.onnx_path), "openvino": ov.__version__, "device": "CPU",
             "threads": self.threads, "precision": "int8" if self.int8 else self.precision,
             "synthesis": self.synthesis, "inference_precision_hint": _OV_PRECISION[self.float_precision]}
        if self.synthesis_form == "kernel":
            from plugins.cpu_op import simd_path

            d["synthesis_kernel"] = {"library": self.kernel_library, "path": simd_path(), "threads": self.threads}
        if self.int8:
            d["int8"] = self.metadata.get("int8", "FakeQuantize nodes in the graph")
            if self.sidecar is not None:
                from ..cpu_info import int8_numerics
                from .openvino_int8 import validated_numerics_of

                d["int8_sidecar"] = {k: self.sidecar[k] for k in ("weights_sha256", "ignored_scope")
                                     if k in self.sidecar}
                # whether the accuracy rule was shown for the way this CPU computes it (calib.shipped_int8)
                d["int8_sidecar"]["validated_as"] = validated_numerics_of(self.sidecar, self.synthesis_form)
                d["int8_sidecar"]["this_cpu_computes_as"] = int8_numerics()
        if self.precision in ("bf16", "int8"):
            d["kept_fp32"] = {**self.kept_fp32, "how": "DisablePrecisionConversion rt_info, checked on the "
                                                       "compiled runtime graph"}
        d.update(reported_metadata(self.metadata))
        return d

    def close(self) -> None:
        self._compiled.clear()
        self.model = None


IR_METADATA_KEY = "sfadacof"  # the IR's rt_info section holding the export's metadata


def ir_metadata(model) -> dict[str, str]:
    """The export metadata an IR carries in rt_info[IR_METADATA_KEY] (written by calib.openvino_int8)."""
    if not model.has_rt_info([IR_METADATA_KEY]):
        return {}
    section = model.get_rt_info()[IR_METADATA_KEY]
    try:
        items = section.astype(dict)
    except Exception:  # older bindings: an RTMap-like object
        items = {k: section[k] for k in section.keys()}
    return {str(k): (v.astype(str) if hasattr(v, "astype") else str(v)) for k, v in items.items()}


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _io_problem(model, meta: dict) -> str | None:
    """Two float N x 3 x H x W inputs, one output of that form, and the export's metadata."""
    ins, outs = model.inputs, model.outputs
    if len(ins) != 2 or len(outs) != 1:
        return f"expected 2 inputs (frame0, frame2) and 1 output, found {len(ins)} inputs and {len(outs)} outputs"
    for role, port in (("input", ins[0]), ("input", ins[1]), ("output", outs[0])):
        et = port.get_element_type()
        if et.get_type_name() not in ("f32", "f16"):
            try:
                name = f"{et.get_type_name()} ({np.dtype(et.to_dtype()).name})"
            except Exception:  # a type numpy has no name for
                name = et.get_type_name()
            return f"{role} {port.get_any_name()} is {name}, expected float32 frames"
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or (shape[1].is_static and shape[1].get_length() != 3):
            return f"{role} {port.get_any_name()} has shape {shape}, expected N x 3 x H x W"
    if "variant" not in meta:
        return "no SF-AdaCoF metadata (variant, checkpoint_sha256 ...): not a graph written by export.to_onnx"
    return None


def _first_line(e: Exception) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]
