"""The shipped INT8 OpenVINO model (runtime/backends/openvino_int8.py): which weights it runs for, the sidecar's
SHA-256 checks (against hashlib on the files, not the code's own hashing), one-line refusals, and the shipped model
itself -- its hashes, what runs in int8 and what stays fp32 in the compiled graph, and its output on a small real
triplet against fp32 PyTorch and the ground truth (the accuracy rule)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest

from runtime.backends import openvino_int8 as oi
from runtime.backends.registry import BackendOptions, create_backend
from sfadacof.checkpoint import DEFAULT_CHECKPOINT
from sfadacof.errors import UserError

pytestmark = pytest.mark.usefixtures("single_torch_thread")  # see conftest.py


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_ir(folder, weights_sha: str):
    """An IR pair of arbitrary bytes with a sidecar naming their hashes (the check reads nothing else)."""
    folder.mkdir(parents=True, exist_ok=True)
    xml, binf = folder / "m.int8.xml", folder / "m.int8.bin"
    xml.write_bytes(b"<net/>\n")
    binf.write_bytes(bytes(range(256)) * 4)
    (folder / "m.int8.json").write_text(json.dumps({"weights_sha256": weights_sha,
                                                    "files": {xml.name: sha(xml), binf.name: sha(binf)}}))
    return xml, binf


def changed_copy(path) -> bytes:
    """The file's bytes with one bit flipped near its end."""
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    return bytes(data)


def test_sidecar_check_refuses_changed_files_and_other_weights(tmp_path):
    xml, binf = fake_ir(tmp_path, "a" * 64)
    assert oi.check_int8_ir(xml, "a" * 64)["weights_sha256"] == "a" * 64
    assert oi.check_int8_ir(xml)["files"][binf.name] == sha(binf)
    with pytest.raises(UserError, match=r"belongs to weights aaaaaaaaaaaa, not bbbbbbbbbbbb"):
        oi.check_int8_ir(xml, "b" * 64)
    data = bytearray(binf.read_bytes())
    data[100] ^= 1  # one bit of the weights
    binf.write_bytes(bytes(data))
    oi._sha_cache.clear()
    with pytest.raises(UserError, match=r"m\.int8\.bin: SHA-256 differs from its sidecar m\.int8\.json") as e:
        oi.check_int8_ir(xml, "a" * 64)
    assert "\n" not in str(e.value)
    # a sidecar that leaves a file out, or names one that is not beside it
    other = fake_ir(tmp_path / "b", "a" * 64)[0]
    rec = json.loads((tmp_path / "b" / "m.int8.json").read_text())
    del rec["files"]["m.int8.bin"]
    (tmp_path / "b" / "m.int8.json").write_text(json.dumps(rec))
    with pytest.raises(UserError, match=r"records no SHA-256 for m\.int8\.bin"):
        oi.check_int8_ir(other)
    rec["files"]["../x.bin"] = "0" * 64
    (tmp_path / "b" / "m.int8.json").write_text(json.dumps(rec))
    with pytest.raises(UserError, match=r"lists \.\./x\.bin, which is not beside it"):
        oi.check_int8_ir(other)
    (tmp_path / "b" / "m.int8.json").write_text("{not json")
    with pytest.raises(UserError, match=r"m\.int8\.json: not a readable sidecar"):
        oi.check_int8_ir(other)
    assert oi.check_int8_ir(tmp_path / "none.xml") is None  # no sidecar: a user's own IR
    (tmp_path / "r.int8.json").write_text(json.dumps({"command": "python -m calib.openvino_int8 ..."}))
    assert oi.check_int8_ir(tmp_path / "r.int8.xml") is None  # calib.openvino_int8's report beside it: no sidecar


def test_the_shipped_ir_without_its_sidecar_is_refused(tmp_path, monkeypatch):
    xml, _ = fake_ir(tmp_path, "a" * 64)
    (tmp_path / "m.int8.json").unlink()
    monkeypatch.setattr(oi, "SHIPPED_INT8", xml)
    with pytest.raises(UserError, match=r"the shipped INT8 model has no sidecar m\.int8\.json"):
        oi.check_int8_ir(xml)


def test_shipped_ir_is_offered_for_the_shipped_weights_only(tmp_path, monkeypatch):
    xml, _ = fake_ir(tmp_path / "w", sha(DEFAULT_CHECKPOINT))
    monkeypatch.setattr(oi, "SHIPPED_INT8", xml)
    copy = tmp_path / "copy.pth"
    shutil.copyfile(DEFAULT_CHECKPOINT, copy)
    other = tmp_path / "other.pth"
    other.write_bytes(changed_copy(DEFAULT_CHECKPOINT))
    assert oi.shipped_int8_ir(None) == xml
    assert oi.shipped_int8_ir(copy) == xml  # the same bytes under another name
    assert oi.shipped_int8_ir(other) is None
    monkeypatch.setattr(oi, "SHIPPED_INT8", tmp_path / "absent.int8.xml")
    assert oi.shipped_int8_ir(None) is None


def test_int8_without_a_shipped_model_is_refused_in_one_line(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(oi, "SHIPPED_INT8", tmp_path / "absent.int8.xml")
    with pytest.raises(UserError, match=r"--precision int8: no INT8 model ships with this package; make one with "
                                        r"python -m calib\.shipped_int8 -o OUT") as e:
        create_backend("openvino", BackendOptions(precision="int8"))
    assert "\n" not in str(e.value)


def test_int8_for_another_checkpoint_is_refused_in_one_line(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    other = tmp_path / "other.pth"
    other.write_bytes(changed_copy(DEFAULT_CHECKPOINT))
    with pytest.raises(UserError, match=r"--precision int8: no INT8 model ships for .*other\.pth .*"
                                        r"pass --onnx M\.int8\.xml") as e:
        create_backend("openvino", BackendOptions(checkpoint=other, precision="int8"))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# The shipped INT8 model (calib.shipped_int8: its ignored scope, NNCF, calibrated on the training footage)

OFFSET_LAST = ("moduleAlpha1.7", "moduleBeta1.7", "moduleAlpha2.7", "moduleBeta2.7")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@pytest.fixture(scope="module")
def int8_ir():
    """The shipped INT8 model (oi.SHIPPED_INT8: the shipped weights' standard-op export quantized by NNCF with
    calib.shipped_int8's ignored scope -- synthesis, the offset heads' last convolutions, KEEP_FLOAT) and the shipped
    weights' torch model: (xml, torch model). The tests below check what its compiled graph executes, i.e. the model
    users run. It used to be a fresh quantization of the same export with the same scope here (16-23 s of NNCF,
    whose time goes into matching patterns over the 3000-node graph, whatever the calibration data): what that added,
    that the scope the code computes today is the one such an IR gets, is
    test_the_shipped_ir_has_the_scope_the_code_computes; quantize() itself runs in test_openvino_backend.py's
    calib.openvino_int8 command test."""
    from sfadacof.checkpoint import load_checkpoint

    assert oi.SHIPPED_INT8.is_file(), oi.SHIPPED_INT8
    return oi.SHIPPED_INT8, load_checkpoint(None).model


@pytest.mark.slow
def test_the_shipped_ir_has_the_scope_the_code_computes(shipped_exports):
    """calib.shipped_int8.ignored_nodes on the shipped weights' fp32 export (what calib.shipped_int8 -o quantizes):
    the scope it computes now is the one the shipped IR's sidecar records, and the convolutions it names are exactly
    KEEP_FLOAT's and the four offset heads' last ones (by their weights' parameter names, read here off the graph)."""
    pytest.importorskip("openvino")
    from calib.shipped_int8 import KEEP_FLOAT, ignored_nodes
    from runtime.backends.openvino_backend import OpenVINOBackend

    with OpenVINOBackend(shipped_exports["onnx"], precision="fp32") as fp32:
        names, scope = ignored_nodes(fp32.model, KEEP_FLOAT)
        named = {n.input_value(1).get_node().get_friendly_name() for n in fp32.model.get_ordered_ops()
                 if n.get_type_name() == "Convolution" and n.get_friendly_name() in set(names)}
    recorded = json.loads(oi.sidecar_of(oi.SHIPPED_INT8).read_text())["ignored_scope"]
    # the synthesis' node count follows how the export spells the synthesis; that it stays f32 in the compiled IR is
    # checked on what runs (test_int8_runs_int8_keeps_offsets_and_synthesis_fp32's gathers)
    assert {**scope["fp32_always"], "synthesis_nodes": None} == {**recorded["fp32_always"], "synthesis_nodes": None}
    assert {k: v for k, v in scope.items() if k != "fp32_always"} == \
        {k: v for k, v in recorded.items() if k != "fp32_always"}
    assert scope["fp32_always"]["synthesis_nodes"] > 0 and scope["convolutions"] >= 120
    assert named == {f"model.{m}.weight" for m in KEEP_FLOAT} | {f"model.get_kernel.{m}.weight" for m in OFFSET_LAST}


@pytest.mark.slow
def test_int8_runs_int8_keeps_offsets_and_synthesis_fp32(cpu_op, int8_ir):
    """--precision int8 with --onnx: the compiled graph executes most convolutions in int8 (u8/i8 runtime
    precision), the four offset heads' last convolutions (found here by their weights' parameter names) in f32 and
    the synthesis (the kernel node) in f32; on a real bikes pair (frames 40/42, 224x128, not calibrated on) it is
    >= 45 dB from fp32 PyTorch."""
    import openvino as ov

    from tests.helpers import real_pair, torch_forward

    xml, torch_model = int8_ir
    model = ov.Core().read_model(str(xml))
    last = {n.get_friendly_name() for n in model.get_ordered_ops() if n.get_type_name() == "Convolution"
            and n.input_value(1).get_node().get_friendly_name().removesuffix(".weight").endswith(OFFSET_LAST)}
    assert len(last) == 4
    f0, f2 = real_pair(224, 128)
    chosen = create_backend("openvino", BackendOptions(precision="int8", onnx=xml))
    try:
        desc = chosen.describe()
        out = chosen.infer(f0, f2)
        executed = chosen.inner.runtime_precisions(f0.shape)
    finally:
        chosen.close()
    assert desc["precision"] == "int8" and desc["int8_sidecar"]["weights_sha256"] == sha(DEFAULT_CHECKPOINT)
    from calib.shipped_int8 import KEEP_FLOAT

    kept = {n.get_friendly_name() for n in model.get_ordered_ops() if n.get_type_name() == "Convolution"
            and n.input_value(1).get_node().get_friendly_name().removeprefix("model.").removesuffix(".weight")
            in KEEP_FLOAT}
    convs = [(p, names) for layer, p, names in executed if layer == "Convolution"]
    int8 = [p for p, _ in convs if p in ("u8", "i8")]
    assert len(convs) >= 120 and len(kept) >= 20
    assert len(int8) == len(convs) - len(kept) - 4, (len(int8), len(convs), len(kept))  # all the others run int8
    assert {p for p, names in convs if kept & set(names)} <= {"bf16", "f32"}
    head = [p for p, names in convs if last & set(names)]
    assert head == ["f32"] * 4
    # the synthesis: the two kernel nodes (direction 1; direction 2 and the blend), f32
    assert [p for layer, p, _ in executed if layer == "Reference"] == ["f32"] * 2
    assert psnr(np.clip(out, 0, 1), np.clip(torch_forward(torch_model, f0, f2), 0, 1)) >= 45.0


@pytest.mark.slow
def test_int8_refused_when_its_files_change(int8_ir, tmp_path):
    """A copy of the IR with one bit of its weights flipped, or a sidecar naming other weights, is refused by the
    backend itself (one line), before anything compiles."""
    from runtime.backends.openvino_backend import OpenVINOBackend

    xml = int8_ir[0]
    copy = tmp_path / xml.name  # under its own names: the sidecar lists the files beside it by name
    for suffix in (".xml", ".bin", ".json"):
        shutil.copyfile(xml.with_suffix(suffix), copy.with_suffix(suffix))
    side, binf = oi.sidecar_of(copy), copy.with_suffix(".bin")
    rec = json.loads(side.read_text())
    OpenVINOBackend(copy, precision="int8").close()  # the faithful copy runs
    side.write_text(json.dumps({**rec, "weights_sha256": "c" * 64}))
    with pytest.raises(UserError, match=r"belongs to weights cccccccccccc, not "):
        OpenVINOBackend(copy, precision="int8")
    side.write_text(json.dumps(rec))
    binf.write_bytes(changed_copy(binf))
    oi._sha_cache.clear()
    with pytest.raises(UserError, match=rf"{binf.name.replace('.', '[.]')}: SHA-256 differs from its sidecar"):
        OpenVINOBackend(copy, precision="int8")


@pytest.mark.slow
def test_guard_refuses_int8_whose_offsets_would_run_in_bf16(int8_ir, monkeypatch):
    """The guard after every compile: without the fp32 marks (as an OpenVINO that dropped them would give), the
    offset heads' last convolutions follow the bf16 hint and the backend refuses in one line."""
    from runtime.backends import openvino_backend as ovb

    if not ovb.native_bf16():
        pytest.skip("the float parts run fp32 on a CPU without native bf16: nothing to lower")
    monkeypatch.setattr(ovb, "keep_fp32", lambda model, ids: model)
    f0 = np.zeros((1, 3, 64, 64), np.float32)
    with ovb.OpenVINOBackend(int8_ir[0], precision="int8", threads=1) as b:
        with pytest.raises(UserError, match=r"ran offset-head convolutions in bf16 \(.+\); the offsets must stay fp32"):
            b.infer(f0, f0)


def test_an_isa_cap_below_bf16_means_no_bf16(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 (how this CPU is run as an AVX2-only one): OpenVINO still lists BF16 among its
    capabilities but cannot compile bf16 under the cap, so native_bf16() says no and the CPU default is fp32; an
    AVX-512 BF16 cap leaves bf16 to the CPU."""
    pytest.importorskip("openvino")
    from runtime.backends import openvino_backend as ovb
    from runtime.backends.registry import openvino_default_precision

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert ovb.native_bf16() is False and openvino_default_precision() == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert not ovb.isa_capped_below_bf16()


def test_shipped_ir_matches_its_sidecar_and_the_shipped_weights():
    """The shipped INT8 model: hashlib on its files against the sidecar; the sidecar and the IR's own metadata name
    the shipped weights; the sidecar records a validation on every held-aside clip at the rule's gaps (263 gap-1 and
    255 gap-2 triplets) as each class of INT8 arithmetic, each "passed" the rule on its figures -- and, with the
    kernel synthesis, the two fp32 classes met it and bf16+vnni did not (carphone frame 5, -0.0507 dB), so auto
    offers it on CPUs without native bf16 only."""
    pytest.importorskip("openvino")
    import openvino as ov

    from runtime.backends.openvino_backend import ir_metadata

    xml = oi.SHIPPED_INT8
    assert xml.is_file() and oi.shipped_int8_ir(None) == xml
    rec = json.loads(oi.sidecar_of(xml).read_text())
    assert rec["files"] == {xml.name: sha(xml), xml.with_suffix(".bin").name: sha(xml.with_suffix(".bin"))}
    assert rec["weights_sha256"] == sha(DEFAULT_CHECKPOINT)
    assert ir_metadata(ov.Core().read_model(str(xml)))["checkpoint_sha256"] == sha(DEFAULT_CHECKPOINT)
    assert sorted(rec["ignored_scope"]["fp32_always"]["offset_heads_last_convolutions"]) == \
        sorted(f"get_kernel.{m}" for m in OFFSET_LAST)
    # validated as every class of INT8 arithmetic: a CPU with native bf16 (float parts bf16), one with VNNI and no
    # bf16, and an AVX2-only one (float parts fp32, int8 sums through VPMADDUBSW); each class's "passed" is the rule
    # on its recorded figures, and it met the rule where bf16 is native (where --backend auto offers it)
    assert set(rec["validations"]) == {"bf16+vnni", "fp32+vnni", "fp32+novnni"}
    for cls, v in rec["validations"].items():
        assert v["numerics"] == cls and v["max_triplets"] is None
        assert {c["clip"] for c in v["clips"]} == {"bikes[30:76]", "bikes[137:187]", "bikes[187:242]",
                                                   "carphone_pristine[0:120]"}
        assert v["gaps"] == list(oi.RULE_GAPS) and v["synthesis"] == "kernel"
        assert sum(c["triplets"] for c in v["clips"]) == 263 + 255
        assert v["passed"] is all(c["min_psnr_vs_fp32"] >= 45.0 and c["worst_delta_gt"] >= -0.05 for c in v["clips"])
    assert oi.validated_numerics(xml, "kernel") == ["fp32+novnni", "fp32+vnni"]
    assert oi.validated_numerics(xml, "ops") == []  # validated with the kernel synthesis only


@pytest.mark.slow
def test_validation_runs_each_other_class_in_a_child_under_its_cap(tmp_path, monkeypatch):
    """calib.shipped_int8's validation of several classes of INT8 arithmetic (on carphone, 2 triplets: a look at the
    mechanism): this process's class here, another one
    (fp32+novnni, as an AVX2-only CPU computes; on such a CPU, fp32+vnni's cap, which it lacks, is not asked for) in
    a child run with that ISA cap, which reads eager PyTorch's outputs from the reference cache this process filled
    (equal ground-truth figures); a sample (max_triplets) never counts as the rule."""
    pytest.importorskip("openvino")
    from calib import shipped_int8
    from runtime.cpu_info import cpu_flags, int8_numerics
    from sfadacof.split import footage_path, load_split

    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    here = int8_numerics()
    if here == "fp32+novnni":
        pytest.skip(f"this CPU computes as fp32+novnni ({sorted(cpu_flags() & {'avx2', 'avx512f'})}): no class "
                    "below it to run in a child")
    # two of the classes numerics_caps() would give: this one, and the AVX2 one in a child (one child, not every one)
    monkeypatch.setattr(shipped_int8, "numerics_caps", lambda: {here: None, "fp32+novnni": "AVX2"})
    vs = shipped_int8.validate_every_class(oi.SHIPPED_INT8, footage_path(None, load_split()), (1,), 2,
                                           tmp_path / "ref", ["carphone"])  # 2 small triplets: the mechanism
    assert list(vs) == [here, "fp32+novnni"]
    assert vs[here]["isa_cap"] is None and vs["fp32+novnni"]["isa_cap"] == "AVX2"
    assert vs["fp32+novnni"]["numerics"] == "fp32+novnni" and vs["fp32+novnni"]["backend"][
        "inference_precision_hint"] == "f32"
    rows = {c: [(r["frame"], r["psnr_gt_fp32"]) for clip in v["clips"] for r in clip["rows"]] for c, v in vs.items()}
    assert rows[here] == rows["fp32+novnni"] and len(rows[here]) == 2  # the same references, read from the cache
    assert len(list((tmp_path / "ref").glob("*.npy"))) == 2
    for v in vs.values():
        assert v["max_triplets"] == 2 and v["clips_wanted"] == ["carphone"] and v["passed"] is False
        assert [c["clip"] for c in v["clips"]] == ["carphone_pristine[0:120]"]
        assert all(c["min_psnr_vs_fp32"] >= 45.0 for c in v["clips"])
