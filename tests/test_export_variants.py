"""Every variant exports (both synthesis forms from one trace) and runs in ONNX Runtime within 1e-4 of the PyTorch
model on real frames at an odd size, batch 2, with large two-sided offsets; the custom node carries the model's K
and dilation (K = 3, dilation 2 included).

The sweep traces with the TorchScript exporter (~5 s per variant on 2 cores, against 20-50 s for the dynamo
exporter): the export code after the trace (node tidy-up, lowering, metadata, checks) is the same for both, the
dynamo exporter is tested on sf_adacof in test_export.py (and through the registry in test_ort_backend.py), and
test_export.py checks that the two exporters give the same numbers. SFADACOF_TEST_EXPORTER=dynamo runs this sweep
with the dynamo exporter instead."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper

from export.core import export_model
from plugins.onnx_node import DOMAIN, OP_TYPE
from runtime.backends.ort_backend import OrtBackend

from tests.helpers import large_motion_model, offset_range, real_pair, torch_forward

TOL = 1e-4
EXPORTER = os.environ.get("SFADACOF_TEST_EXPORTER", "torchscript")

CASES = [("sf_adacof", 5, 1), ("adacof", 5, 1), ("rwtd", 5, 1), ("rwtdcp", 5, 1), ("noshare", 5, 1), ("cp", 5, 1),
         ("rwtd", 3, 2)]


def test_the_sweep_covers_every_variant_and_a_dilated_kernel():
    """The sweep below is the proof that every variant exports: it must name each of sfadacof.models.VARIANTS (a
    variant added there without a case here fails), with K=5 d=1 for each and one K=3 dilation-2 case."""
    from sfadacof.models import VARIANTS

    assert sorted(v for v, k, d in CASES if (k, d) == (5, 1)) == sorted(VARIANTS)
    assert [(k, d) for _, k, d in CASES if (k, d) != (5, 1)] == [(3, 2)]


# each case exports (TorchScript, ~5 s on 2 cores) and runs both forms: the slow lane
@pytest.mark.slow
@pytest.mark.parametrize("variant,k,d", CASES, ids=[f"{v}-K{k}d{d}" for v, k, d in CASES])
def test_variant_exports_and_matches_pytorch(tmp_path, variant, k, d):
    model = large_motion_model(variant, seed=11, kernel_size=k, dilation=d)
    infos = export_model(model, tmp_path / "p.onnx", synthesis="plugin", also={"onnx": tmp_path / "s.onnx"},
                         exporter=EXPORTER, checkpoint_sha256="0" * 64)
    f0, f2 = real_pair(45, 37, batch=2)
    lo, hi = offset_range(model, f0, f2)
    assert lo < -3 and hi > 3
    ref = torch_forward(model, f0, f2)
    for info in infos:
        m = onnx.load(str(info.path), load_external_data=False)
        meta = {p.key: p.value for p in m.metadata_props}
        assert (meta["variant"], meta["kernel_size"], meta["dilation"]) == (variant, str(k), str(d))
        custom = [n for n in m.graph.node if n.domain == DOMAIN]
        if info.synthesis == "plugin":
            assert [n.op_type for n in custom] == [OP_TYPE]
            attrs = {a.name: helper.get_attribute_value(a) for a in custom[0].attribute}
            assert (attrs["kernel_size"], attrs["dilation"]) == (k, d)
        else:
            assert custom == [] and "GridSample" not in {n.op_type for n in m.graph.node}
        with OrtBackend(info.path) as backend:
            out = backend.infer(f0, f2)
        err = float(np.abs(out - ref).max())
        assert err <= TOL, f"{variant} K={k} d={d} {info.synthesis}: max |ORT - PyTorch| = {err}"
