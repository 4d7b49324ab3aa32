"""Calibration and Q/DQ insertion with ONNX Runtime's static quantizer.

Two steps, so the custom synthesis node never has to run inside the calibrator:
  1. `calibrate()`: ONNX Runtime's calibrator (MinMax / Entropy / Percentile) runs the *calibration subgraph* (the
     ancestors of every Conv, see graph.calibration_subgraph) on the calibration pairs and returns tensor ranges.
  2. `quantize()`: `quantize_static(..., QuantFormat.QDQ)` on the *full* graph with those ranges passed as its
     calibration cache, so it never runs the graph; only the chosen Conv nodes get Q/DQ.

Settings chosen for TensorRT's explicit quantization (the INT8 graph is meant for `runtime.build_engine --int8`):
int8 activations and weights, both symmetric (zero point 0); per-output-channel weight scales (axis 0); Q/DQ on the
Conv inputs only (TensorRT fuses DQ->Conv(->ReLU)->Q itself, a Q/DQ on the Conv output would pin the fusion
boundary); the bias left float (TensorRT refuses int32 DequantizeLinear and quantizes the bias itself).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, MinMaxCalibrater, QuantFormat,
                                      QuantType, TensorsData, quantize_static, save_tensors_data)
from onnxruntime.quantization.calibrate import EntropyCalibrater, PercentileCalibrater

from export.graph import frame_inputs
from sfadacof.outputs import atomic_path

from .options import METHOD_NAMES, PLACEMENTS  # noqa: F401 (PLACEMENTS re-exported)
from .graph import calibration_subgraph, consumers_by_tensor, nodes_for_groups

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


class PairReader(CalibrationDataReader):
    """Feeds (frame0, frame2) NCHW float32 pairs to the calibrator, one pair per run."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], input_names: tuple[str, str]) -> None:
        self.pairs = pairs
        self.names = input_names
        self._it = iter(self.pairs)

    def get_next(self):
        p = next(self._it, None)
        return None if p is None else {self.names[0]: p[0], self.names[1]: p[1]}

    def rewind(self) -> None:
        self._it = iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


def input_names(model: onnx.ModelProto) -> tuple[str, str]:
    names = frame_inputs(model)
    if len(names) != 2:
        raise ValueError(f"expected two graph inputs (frame0, frame2), found {names}")
    return names[0], names[1]


CALIBRATED_OPS = ["Conv", "Relu"]  # Conv inputs (and, for --placement ort-cpu, Conv/ReLU outputs)


def _near_constant(lo: float, hi: float, bins: int) -> bool:
    """True when ORT's histogram of |x| over [min|x|, max|x|] cannot get `bins` distinct float32 edges (numpy
    raises): values within a few float32 steps of each other, e.g. a head output of an undertrained model."""
    a_lo = 0.0 if lo <= 0.0 <= hi else min(abs(lo), abs(hi))
    a_hi = max(abs(lo), abs(hi))
    return a_hi > 0 and (a_hi - a_lo) < 4 * bins * float(np.spacing(np.float32(a_hi)))


def _run_calibrator(calibrator, reader: PairReader, skip: set[str] = frozenset()) -> TensorsData:
    if skip:
        select = calibrator.select_tensors_to_calibrate

        def select_without_skipped(model):
            tensors, value_infos = select(model)
            return tensors - skip, value_infos

        calibrator.select_tensors_to_calibrate = select_without_skipped
    calibrator.augment_graph()
    calibrator.create_inference_session()
    calibrator.collect_data(reader)
    return calibrator.compute_data()


def calibrate(model: onnx.ModelProto, pairs: list[tuple[np.ndarray, np.ndarray]], method: str = "minmax",
              percentile: float = 99.999) -> TensorsData:
    """Ranges of every Conv input/output (and ReLU output) tensor over the calibration pairs.

    MinMax: ORT's MinMaxCalibrater, symmetric ranges. Entropy / Percentile: ORT's histogram calibrators, after a
    MinMax pass that finds the near-constant tensors their float32 histogram cannot bin (see _near_constant);
    those keep their MinMax range (a histogram of a constant has nothing to clip) and the rest get the
    histogram method's range."""
    sub = calibration_subgraph(model)
    reader = PairReader(pairs, input_names(model))
    with tempfile.TemporaryDirectory(prefix="calib.") as tmp:
        sub_path = Path(tmp) / "calibration_subgraph.onnx"
        onnx.save(sub, sub_path)
        # Plain (min, max): the quantizer makes the scale symmetric itself (ActivationSymmetric), and the true
        # minimum is what tells a near-constant tensor apart.
        mm = _run_calibrator(MinMaxCalibrater(sub_path, CALIBRATED_OPS, str(Path(tmp) / "aug_minmax.onnx"),
                                              symmetric=False), reader)
        if method == "minmax":
            return mm
        reader.rewind()
        if method == "entropy":
            bins = 128
            cal = EntropyCalibrater(sub_path, CALIBRATED_OPS, str(Path(tmp) / "aug_hist.onnx"), symmetric=True,
                                    num_bins=bins, num_quantized_bins=128)
        else:
            bins = 2048
            cal = PercentileCalibrater(sub_path, CALIBRATED_OPS, str(Path(tmp) / "aug_hist.onnx"), symmetric=True,
                                       num_bins=bins, percentile=percentile)
        skip = {name for name, td in mm.data.items()
                if _near_constant(*(float(np.asarray(v).ravel()[0]) for v in td.range_value), bins)}
        hist = _run_calibrator(cal, reader, skip)
        data = {name: mm.data[name] for name in skip}
        data.update(hist.data)
        return TensorsData(METHODS[method], data)


assert tuple(METHODS) == METHOD_NAMES


def quantize(model_path: Path, out_path: Path, ranges: TensorsData, groups: tuple[str, ...],
             per_channel: bool = True, placement: str = "tensorrt", metadata: dict[str, str] | None = None
             ) -> list[str]:
    """Write the Q/DQ model (atomically) quantizing the Convs of `groups`; return the quantized Conv names.

    placement "tensorrt" (default): see the module doc. "ort-cpu": for ONNX Runtime's CPU kernels, which only run
    int8 when a Conv is wrapped DQ->Conv->Q (QLinearConv): Conv outputs and the ReLUs after them are quantized
    too, activations asymmetric uint8 (the u8s8 VNNI path). Not a TensorRT graph (uint8, zero points)."""
    model = onnx.load(model_path)
    nodes = nodes_for_groups(model, groups)
    convs = list(nodes)
    if placement == "ort-cpu":
        consumers = consumers_by_tensor(model)
        chosen = set(nodes)
        nodes = nodes + [c.name for n in model.graph.node if n.name in chosen
                         for c in consumers.get(n.output[0], []) if c.op_type == "Relu"]
    # quantize_static picks nothing by extension, but keep ".onnx" so tools reading the temp file see a model
    with atomic_path(out_path, suffix=".onnx") as tmp_path, tempfile.TemporaryDirectory(prefix="calib.") as tmp:
        tmp_out = str(tmp_path)
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        if not nodes:
            # Nothing chosen: the FP32 graph itself (quantize_static treats an empty list as "all nodes").
            onnx.save(model, tmp_out)
        elif placement == "ort-cpu":
            _quiet_ort_quantizer()
            quantize_static(
                model_path, tmp_out, calibration_data_reader=None, calibration_cache_path=cache,
                quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "Relu"], nodes_to_quantize=nodes,
                per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=ranges.calibration_method, extra_options={"WeightSymmetric": True})
            q = onnx.load(tmp_out)
            _set_metadata(q, metadata)
            onnx.save(q, tmp_out)
        else:
            _quiet_ort_quantizer()
            quantize_static(
                model_path, tmp_out, calibration_data_reader=None, calibration_cache_path=cache,
                quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"], nodes_to_quantize=nodes,
                per_channel=per_channel, reduce_range=False,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=ranges.calibration_method,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "OpTypesToExcludeOutputQuantization": ["Conv"], "QuantizeBias": False},
            )
            q = onnx.load(tmp_out)
            float_consumers_read_float(q, set(nodes))
            _set_metadata(q, metadata)
            onnx.save(q, tmp_out)
    return convs


def float_consumers_read_float(model: onnx.ModelProto, quantized: set[str]) -> int:
    """Rewire nodes that are not quantized Convs to read the original float tensor instead of a Q->DQ output.

    ORT's quantizer points every consumer of a quantized tensor at its DequantizeLinear, so the skip additions,
    the feature-difference Sub and the Concats would also see int8-rounded values although only the Convs were
    chosen. TensorRT accepts either form; this keeps the choice exact: only the chosen Convs read quantized data.
    Returns the number of inputs rewired."""
    producers = {o: n for n in model.graph.node for o in n.output}
    source = {}  # DQ output -> float tensor that its Q read
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            q = producers.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                source[n.output[0]] = q.input[0]
    count = 0
    for n in model.graph.node:
        if n.op_type == "Conv" and n.name in quantized:
            continue
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, t in enumerate(n.input):
            if t in source:
                n.input[i] = source[t]
                count += 1
    graph_outputs = {o.name for o in model.graph.output}
    if graph_outputs & set(source):
        raise RuntimeError("a graph output was quantized; only Conv inputs should be")
    return count


def _set_metadata(model: onnx.ModelProto, metadata: dict[str, str] | None) -> None:
    """Add (or replace) metadata_props; the FP32 graph's (variant, checkpoint hash, ...) are kept."""
    for key, value in (metadata or {}).items():
        for p in model.metadata_props:
            if p.key == key:
                p.value = str(value)
                break
        else:
            model.metadata_props.add(key=key, value=str(value))


def _quiet_ort_quantizer() -> None:
    # quantize_static warns that the model was not pre-processed; quant_pre_process would run ORT's optimizer,
    # which renames and fuses nodes (losing the module names the layer groups are keyed on) for no accuracy gain
    # on a Conv-only quantization, so it is skipped on purpose.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
