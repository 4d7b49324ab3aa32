"""Export an AdaCoFNet to ONNX: frame0, frame2 (N, 3, H, W) float32 RGB in [0, 1] -> frame1 (N, 3, H, W).

The graph does everything the PyTorch model does, so a runtime only feeds frames:
  reflect pad bottom/right to a multiple of 32 -> kernel estimation -> synthesis -> crop back to H x W.
Batch, height and width are dynamic (any H, W >= 32).

Synthesis forms (`synthesis=`):
  * "plugin": one fused custom node `sfadacof::AdaCoFSynthesis` (contract in plugins/onnx_node.py: 9 inputs, the
    padded frames, six K*K-channel maps and the occlusion map; attributes kernel_size, dilation, plugin_version,
    plugin_namespace), the node TensorRT's parser hands to the plugin and ONNX Runtime to runtime/backends/ort_custom_op.py.
  * "onnx": the same graph with that node replaced by standard ops (export/standard_synthesis.py). Both forms come
    from one trace, so their trunks are identical node for node.

Exporters (`exporter=`; "auto", the default, picks the first of these that this torch offers):
  * "torchscript" (the legacy tracer, deprecated in torch 2.9 but present through 2.13): the custom node comes from
    a torch.autograd.Function's `symbolic`. Its graph then goes through onnxscript's optimizer (constant folding and
    shape inference, the pass the dynamo exporter ends with: Constant nodes become initializers, dead Casts go) and
    the output gets the input's static channel count. ~6.5 s for both forms against 29 s for dynamo (the shipped
    model, 2-core Xeon, load ~2; 24-39 s against 135-290 s, alternating, at load 11-20): torch.export and its
    decompositions are ~80% of dynamo's time, its own optimizer pass ~4%, so no dynamo flag comes close.
    The result is dynamo's graph where it computes: the same float nodes (130 Conv, 15 Resize with the same
    modes, Softmax, Sigmoid, the custom node with the same attributes), the same weights under the same names,
    the same graph inputs/outputs (names, dtypes, dynamic batch/height/width), opset and domains; only the int64
    shape arithmetic that feeds the Pad amounts and the crop is spelled with more nodes (Gather/Unsqueeze/Transpose
    where dynamo has Shape(start, end)/Squeeze: 344 against 322 nodes), and node names are the tracer's scopes
    (/get_kernel/moduleConv1/...), which calib reads as it reads dynamo's name_scopes. ONNX Runtime gives
    bit-identical outputs for the two (max |diff| 0 at 448x256 and 960x540, both forms); tests/test_export.py
    checks structure and numbers.
  * "dynamo" (torch.export based; the default exporter of torch.onnx.export since torch 2.9): the custom node comes
    from torch.onnx.ops.symbolic (torch >= 2.8), which places an arbitrary-domain node in the graph; dynamic H/W are
    torch.export Dims, so shape arithmetic (the pad amounts, the crop) is symbolic, not traced constants. Used by
    "auto" once a torch no longer has the TorchScript exporter.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugins.onnx_node import DOMAIN, DOMAIN_VERSION, INPUT_NAMES, OP_TYPE, make_attributes
from sfadacof import __version__ as SFADACOF_VERSION
from sfadacof.models import SIZE_MULTIPLE, AdaCoFNet
from sfadacof.outputs import atomic_path
from sfadacof.progress import heartbeat
from sfadacof.synthesis import kernel_pad, synthesis_forward

from .standard_synthesis import lower_synthesis_nodes

from .options import DEFAULT_OPSET, EXPORTERS, MAX_OPSET, MIN_OPSET, SYNTHESIS_FORMS  # noqa: F401 (re-exported)

# Trace size: NOT a multiple of 32 in either dimension, so every shape expression of the pad and the crop is
# exercised while tracing (a multiple-of-32 sample would let the legacy tracer drop the pad as a no-op).
TRACE_SIZE = (37, 45)
# Names given to the fused node's input tensors in the exported graph (readable, and stable across exporters:
# `polygraphy run --onnx-outputs weight1 ...` works on any export).
NODE_INPUT_TENSORS = ("frame0_padded", "frame2_padded") + INPUT_NAMES[2:]
NODE_OUTPUT_TENSOR = "frame1_padded"
# Per-node debug metadata of the dynamo exporter that holds absolute source paths and FX dumps: dropped so the
# file does not depend on where it was built (name scopes, which calib reads, are kept).
_DROP_NODE_METADATA = ("pkg.torch.onnx.stack_trace", "pkg.torch.onnx.fx_node")


def has_dynamo_exporter() -> bool:
    return hasattr(torch.onnx, "ops") and hasattr(torch.onnx.ops, "symbolic") and \
        importlib.util.find_spec("onnxscript") is not None


def has_torchscript_exporter() -> bool:
    """The legacy exporter (torch.onnx.utils) and onnxscript's optimizer, which its graph goes through."""
    return importlib.util.find_spec("torch.onnx.utils") is not None and \
        importlib.util.find_spec("onnxscript") is not None


def resolve_exporter(exporter: str | None) -> str:
    if exporter in (None, "auto"):
        # torchscript first: ~5x faster for the same computing graph (see the module doc)
        if has_torchscript_exporter():
            return "torchscript"
        return "dynamo" if has_dynamo_exporter() else "torchscript"
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose auto, {', '.join(EXPORTERS)}")
    if exporter == "dynamo" and not has_dynamo_exporter():
        raise ValueError("the dynamo exporter needs torch >= 2.8 (torch.onnx.ops.symbolic) and onnxscript; "
                         "use --exporter torchscript")
    return exporter


def pad_reflect_to_multiple(x: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """sfadacof.models.pad_to_multiple without its early return, so the pad is always in the graph (a no-op pad of
    0 rows when H is already a multiple): the amounts are shape expressions, valid for every H, W."""
    h, w = x.shape[2], x.shape[3]
    return F.pad(x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple), mode="reflect")


def _reference_fused(f0: Tensor, f2: Tensor, w1: Tensor, a1: Tensor, b1: Tensor, w2: Tensor, a2: Tensor, b2: Tensor,
                     occ: Tensor, kernel_size: int, dilation: int) -> Tensor:
    """The fused node's value computed with the reference op (model form: unpadded frame, shift -kernel_pad)."""
    shift = -kernel_pad(kernel_size, dilation)
    o1 = synthesis_forward(f0, w1, a1, b1, kernel_size, dilation, shift)
    o2 = synthesis_forward(f2, w2, a2, b2, kernel_size, dilation, shift)
    return occ * o1 + (1 - occ) * o2


class _TorchScriptNode(torch.autograd.Function):
    """Legacy exporter: forward is the reference (the tracer runs it for shapes), `symbolic` emits the custom node."""

    @staticmethod
    def forward(ctx, f0, f2, w1, a1, b1, w2, a2, b2, occ, kernel_size: int, dilation: int):  # noqa: D102
        return _reference_fused(f0, f2, w1, a1, b1, w2, a2, b2, occ, kernel_size, dilation)

    @staticmethod
    def symbolic(g, f0, f2, w1, a1, b1, w2, a2, b2, occ, kernel_size: int, dilation: int):  # noqa: D102
        attrs = make_attributes(kernel_size, dilation)
        # The TorchScript graph API spells attribute types as name suffixes: _i int, _s string.
        kw = {f"{k}_{'s' if isinstance(v, str) else 'i'}": v for k, v in attrs.items()}
        out = g.op(f"{DOMAIN}::{OP_TYPE}", f0, f2, w1, a1, b1, w2, a2, b2, occ, **kw)
        out.setType(f0.type())  # same dtype and (symbolic) shape as the padded frame
        return out


class ExportGraph(nn.Module):
    """What the ONNX graph computes; run eagerly it equals AdaCoFNet.forward (tests check it)."""

    def __init__(self, model: AdaCoFNet, exporter: str = "dynamo") -> None:
        super().__init__()
        self.model = model  # attribute name shows in weight names: model.get_kernel.moduleConv1.0.weight
        self.exporter = exporter

    def synthesis(self, f0: Tensor, f2: Tensor, maps: tuple[Tensor, ...]) -> Tensor:
        k, d = self.model.kernel_size, self.model.dilation
        if torch.onnx.is_in_onnx_export():
            if self.exporter == "dynamo":
                return torch.onnx.ops.symbolic(f"{DOMAIN}::{OP_TYPE}", (f0, f2, *maps), make_attributes(k, d),
                                               dtype=f0.dtype, shape=f0.shape, version=DOMAIN_VERSION)
            return _TorchScriptNode.apply(f0, f2, *maps, k, d)
        return _reference_fused(f0, f2, *maps, k, d)

    def forward(self, frame0: Tensor, frame2: Tensor) -> Tensor:
        h, w = frame0.shape[2], frame0.shape[3]
        f0, f2 = pad_reflect_to_multiple(frame0), pad_reflect_to_multiple(frame2)
        maps = self.model.estimate(f0, f2).as_tuple()
        return self.synthesis(f0, f2, maps)[:, :, :h, :w]


@dataclass
class ExportInfo:
    """What was exported; `metadata` is also written into the file's metadata_props."""

    path: Path
    synthesis: str
    exporter: str
    opset: int
    seconds: float
    size_bytes: int
    nodes: int
    op_counts: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _trace(model: AdaCoFNet, exporter: str, opset: int) -> onnx.ModelProto:
    wrapper = ExportGraph(model.eval(), exporter).eval()
    x0 = torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(0))
    x2 = torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings (shape -> Python int conversions in the reference op, which is not what gets exported)
        # and the legacy exporter's deprecation notice: expected and not actionable by a user.
        warnings.simplefilter("ignore")
        # The dynamo exporter logs a warning per torchvision op it cannot register when torchvision is absent.
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
        if exporter == "dynamo":
            dim = torch.export.Dim
            batch, height, width = dim("batch", min=1), dim("height", min=32), dim("width", min=32)
            shapes = {"frame0": {0: batch, 2: height, 3: width}, "frame2": {0: batch, 2: height, 3: width}}
            program = torch.onnx.export(wrapper, (x0, x2), dynamo=True, input_names=["frame0", "frame2"],
                                        output_names=["frame1"], dynamic_shapes=shapes, opset_version=opset,
                                        verbose=False)
            return program.model_proto
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.onnx"
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(wrapper, (x0, x2), str(path), dynamo=False, input_names=["frame0", "frame2"],
                              output_names=["frame1"], opset_version=opset,
                              dynamic_axes={"frame0": axes, "frame2": axes, "frame1": axes},
                              custom_opsets={DOMAIN: DOMAIN_VERSION},
                              # keep the autograd.Function as one PythonOp so `symbolic` replaces it whole
                              autograd_inlining=False)
            return _optimize_torchscript(onnx.load(str(path)))


def _optimize_torchscript(model: onnx.ModelProto) -> onnx.ModelProto:
    """The TorchScript trace brought to the dynamo exporter's form: onnxscript's optimizer (the pass torch.onnx's
    dynamo path ends with: constants folded into initializers, shapes inferred into value_info, dead nodes removed),
    and the output typed N x 3 x H x W like the input (the tracer leaves the crop's channel dimension symbolic)."""
    if importlib.util.find_spec("onnxscript") is None:  # an install without it: the raw trace, valid as it is
        return model
    import onnxscript.optimizer

    model = onnxscript.optimizer.optimize(model)
    frame0 = next(i for i in model.graph.input if i.name == "frame0")
    model.graph.output[0].type.CopyFrom(frame0.type)
    return model


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if x == old else x for x in node.input]
        node.output[:] = [new if x == old else x for x in node.output]
    for coll in (graph.value_info, graph.output):
        for v in coll:
            if v.name == old:
                v.name = new


def _tidy(model: onnx.ModelProto) -> None:
    """Stable names for the synthesis node and its tensors; no machine-specific node metadata."""
    graph = model.graph
    nodes = [n for n in graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN]
    if len(nodes) != 1:
        raise RuntimeError(f"expected exactly one {DOMAIN}::{OP_TYPE} node after tracing, found {len(nodes)}")
    node = nodes[0]
    # Graph inputs keep their names (frame0/frame2 feed the pads); only intermediate tensors are renamed, and only
    # ones the graph does not already use.
    used = {x for n in graph.node for x in list(n.input) + list(n.output)} | {i.name for i in graph.input}
    for old, new in zip(list(node.input) + [node.output[0]], NODE_INPUT_TENSORS + (NODE_OUTPUT_TENSOR,)):
        if old != new and new not in used and old not in {i.name for i in graph.input}:
            _rename_tensor(graph, old, new)
    node.name = OP_TYPE
    for n in graph.node:
        keep = [p for p in n.metadata_props if p.key not in _DROP_NODE_METADATA]
        del n.metadata_props[:]
        n.metadata_props.extend(keep)


def export_metadata(variant: str, kernel_size: int, dilation: int, synthesis: str, exporter: str, opset: int,
                    checkpoint_sha256: str | None, checkpoint_name: str | None, epoch: int | None) -> dict[str, str]:
    return {
        "variant": variant,
        "kernel_size": str(kernel_size),
        "dilation": str(dilation),
        "synthesis": synthesis,
        "checkpoint_sha256": checkpoint_sha256 or "unknown",
        "checkpoint_file": checkpoint_name or "unknown",
        "checkpoint_epoch": "unknown" if epoch is None else str(epoch),
        "opset": str(opset),
        "sfadacof_version": SFADACOF_VERSION,
        "exporter": exporter,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "custom_op": f"{DOMAIN}::{OP_TYPE} v{DOMAIN_VERSION}" if synthesis == "plugin" else "none",
        "inputs": "frame0, frame2: float32 N x 3 x H x W, RGB in [0, 1], H, W >= 32 (padded to 32 in the graph)",
        "outputs": "frame1: float32 N x 3 x H x W, not clamped",
    }


def atomic_save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Serialize to a temp file in the destination directory, fsync, then rename over `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(model.SerializeToString())
        f.flush()
        os.fsync(f.fileno())


def export_model(model: AdaCoFNet, out: str | os.PathLike, *, synthesis: str = "plugin",
                 exporter: str | None = "auto", opset: int = DEFAULT_OPSET, checkpoint_sha256: str | None = None,
                 checkpoint_name: str | None = None, epoch: int | None = None,
                 also: dict[str, str | os.PathLike] | None = None) -> list[ExportInfo]:
    """Trace `model` once and write the `synthesis` form to `out` (and, via `also` = {form: path}, other forms from
    the same trace). Every file passes onnx.checker's full check before it is written, atomically."""
    if synthesis not in SYNTHESIS_FORMS:
        raise ValueError(f"unknown synthesis form {synthesis!r}; choose {', '.join(SYNTHESIS_FORMS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset {opset} not supported; choose {MIN_OPSET}..{MAX_OPSET}")
    exporter = resolve_exporter(exporter)
    targets = {synthesis: Path(out)}
    for form, p in (also or {}).items():
        if form not in SYNTHESIS_FORMS:
            raise ValueError(f"unknown synthesis form {form!r}")
        targets[form] = Path(p)
    # the exporter reports nothing itself (5-60 s on 2 cores, quiet to busy): lines from a heartbeat thread meanwhile
    with heartbeat(f"exporting ONNX ({', '.join(targets)} synthesis)") as phase:
        phase(f"tracing with the {exporter} exporter")
        t0 = time.perf_counter()
        traced = _trace(model, exporter, opset)
        _tidy(traced)
        trace_seconds = time.perf_counter() - t0
        infos = []
        for form, path in targets.items():
            phase(f"checking and writing {path.name}")
            infos.append(_write_form(model, traced, form, path, exporter, opset, checkpoint_sha256,
                                     checkpoint_name, epoch, trace_seconds))
    return infos


def _write_form(model: AdaCoFNet, traced, form: str, path: Path, exporter: str, opset: int,
                checkpoint_sha256: str | None, checkpoint_name: str | None, epoch: int | None,
                trace_seconds: float) -> ExportInfo:
    t1 = time.perf_counter()
    m = onnx.ModelProto()
    m.CopyFrom(traced)
    if form == "onnx":
        lower_synthesis_nodes(m)
    meta = export_metadata(model.variant, model.kernel_size, model.dilation, form, exporter, opset,
                           checkpoint_sha256, checkpoint_name, epoch)
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, meta)
    m.producer_name, m.producer_version = "sfadacof", SFADACOF_VERSION
    m.doc_string = (f"SF-AdaCoF family frame interpolation ({model.variant}, K={model.kernel_size}, "
                    f"dilation={model.dilation}), synthesis form '{form}'.")
    # Full check: structure plus shape inference over the whole graph (the custom node has no schema; the
    # checker accepts nodes of unknown domains and infers around them).
    onnx.checker.check_model(m, full_check=True)
    atomic_save_onnx(m, path)
    counts: dict[str, int] = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        counts[key] = counts.get(key, 0) + 1
    return ExportInfo(path=path, synthesis=form, exporter=exporter, opset=opset,
                      seconds=trace_seconds + time.perf_counter() - t1, size_bytes=path.stat().st_size,
                      nodes=len(m.graph.node), op_counts=dict(sorted(counts.items())), metadata=meta)
