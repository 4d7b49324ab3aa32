"""`--backend auto` on a CPU chooses OpenVINO's precision by measurement (runtime/backends/cpu_choice.py): the choice
is the rule applied to the recorded figures (fed as a cache entry under this CPU's real key), a changed key or a
corrupt entry measures again (one note, no traceback), an explicit --precision measures nothing, and each real
measurement those tests make (at a tiny size) holds end to end (assert_real_tiny_measurement)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import cpu_info
from runtime.backends import cpu_choice
from runtime.backends.openvino_backend import native_bf16
from runtime.backends.registry import BackendOptions, create_backend

pytest.importorskip("openvino")
pytestmark = pytest.mark.usefixtures("single_torch_thread")

NATIVE_BF16 = native_bf16()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason="bf16 is a candidate only on a CPU with native bf16 "
                                                        "(AVX512_BF16 or AMX): with fp32 alone nothing is measured")
TINY = (64, 64)


@pytest.fixture(scope="module")
def export(ckpt_exports):
    """The session's seeded checkpoint in the standard-op form (conftest.py: exported once per session, read only)."""
    return ckpt_exports["onnx"]


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A tiny measurement (64x64, 1 warm-up, 3 calls) into this test's own cache."""
    monkeypatch.setattr(cpu_choice, "MEASURE_SIZE", TINY)
    monkeypatch.setenv("SFADACOF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)


def _key_and_path(onnx):
    cands, sha, _ = cpu_choice.candidates(BackendOptions(onnx=onnx), NATIVE_BF16)
    key = cpu_choice.cache_key(cands, sha)
    return key, cpu_choice.cache_path(key)


def _feed(path, key, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": cpu_choice.FORMAT, "key": key, "seconds": seconds,
                                "measured_at": "2026-01-01T00:00:00Z"}))


def _auto(onnx, **kw):
    with create_backend("auto", BackendOptions(onnx=onnx, **kw)) as b:
        return b.describe()


@needs_bf16
@pytest.mark.parametrize("seconds, winner", [
    ({"fp32": [0.30, 0.31, 0.29], "bf16": [0.20, 0.21, 0.19]}, "bf16"),    # bf16 a third faster
    ({"fp32": [0.20, 0.21, 0.19], "bf16": [0.30, 0.31, 0.29]}, "fp32"),    # fp32 faster
    ({"fp32": [0.204, 0.205, 0.203], "bf16": [0.200, 0.201, 0.199]}, "fp32"),  # bf16 2% faster: a tie, fp32
])
def test_choice_is_the_rule_on_the_recorded_figures(export, tiny, capsys, seconds, winner):
    """An entry with known figures under this CPU's real key: nothing is measured, the winner is the argmin of the
    medians (a tie within the 2% floor goes to the more accurate), and chosen_by gives those figures."""
    key, path = _key_and_path(export)
    _feed(path, key, seconds)
    d = _auto(export)
    m = d["chosen_by_measurement"]
    assert d["precision"] == winner == m["winner"]
    assert m["from_cache"] is True and m["cache"] == str(path) and m["measured_at"] == "2026-01-01T00:00:00Z"
    assert m["seconds_per_call"] == {k: sorted(v)[1] for k, v in seconds.items()}  # median of 3
    assert m["cpu"] == cpu_info.facts()["model"] and m["cores"] == cpu_info.available_cores()
    for k, v in seconds.items():
        assert f"{k} {sorted(v)[1]:.3f} s" in d["chosen_by"]
    assert "choosing the CPU configuration" not in capsys.readouterr().err  # not measured


def test_choose_rule_three_candidates():
    """The rule alone on three candidates, against hand-worked answers (medians, spread-derived margin)."""
    r = cpu_choice.choose({"fp32": [1.0, 1.0, 1.0], "bf16": [0.7, 0.7, 0.7], "int8": [0.5, 0.5, 0.5]})
    assert r["winner"] == "int8" and r["tie_margin"] == cpu_choice.MIN_TIE
    # int8 fastest, bf16 4% slower; spread: int8 calls 0.48..0.52 -> (0.04/2)/0.5 = 4% margin -> bf16 ties, wins
    r = cpu_choice.choose({"fp32": [1.0, 1.0, 1.0], "bf16": [0.52, 0.52, 0.52], "int8": [0.48, 0.5, 0.52]})
    assert r["fastest"] == "int8" and r["tie_margin"] == pytest.approx(0.04) and r["winner"] == "bf16"
    # noisy calls cap the margin at MAX_TIE: 10% slower fp32 still ties with the fastest, 11% does not
    noisy = [0.5, 1.0, 1.5]
    assert cpu_choice.choose({"fp32": [1.10] * 3, "int8": noisy})["winner"] == "fp32"
    assert cpu_choice.choose({"fp32": [1.11] * 3, "int8": noisy})["winner"] == "int8"


@needs_bf16
def test_changed_key_measures_again(export, tiny, monkeypatch, capsys):
    """Figures cached for this key are not used once the key changes (here: another OpenVINO version)."""
    key, path = _key_and_path(export)
    _feed(path, key, {"fp32": [9.0, 9.0, 9.0], "bf16": [8.0, 8.0, 8.0]})
    assert _auto(export)["chosen_by_measurement"]["from_cache"] is True
    import openvino as ov

    monkeypatch.setattr(ov, "__version__", "0.0.0-another")
    d = _auto(export)
    m = d["chosen_by_measurement"]
    assert m["from_cache"] is False and max(max(v) for v in m["calls_s"].values()) < 8.0  # real, new figures
    assert m["cache"] != str(path) and "choosing the CPU configuration" in capsys.readouterr().err
    assert_real_tiny_measurement(d)


@needs_bf16
@pytest.mark.parametrize("content", [b"{not j\xff", b'[{"format": "other"}]', None])
def test_corrupt_or_foreign_entry_measures_again(export, tiny, capsys, content):
    """A cut-short entry with a stray byte, JSON of the wrong shape, or another key's valid entry copied in (None:
    another machine's) at this key's path: one note naming it, then measured; the entry is replaced by a valid one."""
    key, path = _key_and_path(export)
    if content is None:
        _feed(path, {**key, "cpu": "another CPU"}, {"fp32": [1.0] * 3, "bf16": [2.0] * 3})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    d = _auto(export)
    m = d["chosen_by_measurement"]
    err = capsys.readouterr().err
    assert m["from_cache"] is False and "Traceback" not in err
    assert f"note: {path}: " in err and "measuring again" in err
    entry, problem = cpu_choice.read_entry(path, key)
    assert problem is None and set(entry["seconds"]) == {"fp32", "bf16"}
    assert_real_tiny_measurement(d)  # the measurement made here is a real one: what it must hold


def test_explicit_precision_measures_nothing(export, tiny, capsys):
    d = _auto(export, precision="fp32")
    assert d["precision"] == "fp32" and "--precision fp32" in d["chosen_by"]
    assert "chosen_by_measurement" not in d and "choosing the CPU configuration" not in capsys.readouterr().err
    assert not cpu_choice.outputs.cache_dir("cpu_choice").exists()


def assert_real_tiny_measurement(d: dict) -> None:
    """A real measurement at 64x64 (each test above that measures makes one: no test of its own measures again just
    for this): positive figures, the winner is the argmin of the medians unless a more accurate candidate ties within
    the recorded margin, and the cache holds exactly those figures."""
    m = d["chosen_by_measurement"]
    calls = m["calls_s"]
    assert set(calls) == {"fp32", "bf16"} and all(len(v) == cpu_choice.CALLS for v in calls.values())
    assert all(x > 0 for v in calls.values() for x in v)
    med = {k: float(np.median(v)) for k, v in calls.items()}
    argmin = min(med, key=med.get)
    if m["winner"] != argmin:  # only a tie may overrule the argmin, and only for the more accurate
        assert m["winner"] == "fp32" and med["fp32"] <= med[argmin] * (1 + m["tie_margin"])
    assert d["precision"] == m["winner"] and m["size"] == "64x64"
    cached = json.loads(open(m["cache"]).read())
    assert cached["seconds"] == calls and cached["key"]["size"] == list(TINY)


def test_without_native_bf16_bf16_is_not_a_candidate(export, tiny, monkeypatch):
    """A CPU without native bf16 (flags as an AVX2-only CPU's): bf16 is left out, with the reason; fp32 alone is
    run without measuring."""
    monkeypatch.setattr(cpu_info, "cpu_flags", lambda: {"avx2", "fma", "avx"})
    cands, _, notes = cpu_choice.candidates(BackendOptions(onnx=export), native_bf16())
    assert [c.name for c in cands] == ["fp32"]
    assert any("bf16: not measured: no avx512_bf16 or amx_bf16" in n for n in notes)


@pytest.mark.parametrize("numerics", ["bf16+vnni", "fp32+vnni", "fp32+novnni"])
def test_shipped_int8_is_a_candidate_only_where_its_class_was_validated(shipped_exports, monkeypatch, numerics):
    """The shipped INT8 model is offered on a CPU only when its sidecar records a full validation (every held-aside
    triplet) that met the rule as this CPU's class of INT8 arithmetic (read here straight from the JSON); elsewhere
    it is left out with a note naming the class."""
    from runtime.backends.openvino_int8 import shipped_int8_ir, sidecar_of

    xml = shipped_int8_ir()
    if xml is None:
        pytest.fail("no shipped INT8 model for the shipped weights (sfadacof/weights/*.int8.xml)")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    v = json.loads(sidecar_of(xml).read_text()).get("validations", {}).get(numerics)
    met = bool(v) and v["passed"] is True and v["max_triplets"] is None and all(
        c["min_psnr_vs_fp32"] >= 45.0 and c["worst_delta_gt"] >= -0.05 for c in v["clips"]) and len(v["clips"]) == 4
    bf16 = numerics.startswith("bf16")
    cands, _, notes = cpu_choice.candidates(BackendOptions(), bf16, numerics=numerics)
    assert [c.name for c in cands] == ["fp32"] + (["bf16"] if bf16 else []) + (["int8"] if met else [])
    if met:
        assert cands[-1].model == xml
    else:
        assert any(n.startswith(f"int8: this CPU computes the shipped INT8 model as {numerics}") for n in notes)


@pytest.mark.parametrize("numerics, offered, same_form", [("bf16+vnni", True, True), ("fp32+vnni", False, True),
                                                         ("fp32+novnni", False, True), ("bf16+vnni", False, False)])
def test_a_shipped_model_validated_on_one_class_is_offered_there_only(shipped_exports, tmp_path, monkeypatch,
                                                                      numerics, offered, same_form):
    """A shipped INT8 model whose sidecar met the rule as bf16+vnni, failed as fp32+vnni and was never validated as
    fp32+novnni (the shipped files, linked beside that sidecar): auto offers it on the first class only -- and not
    even there when those validations ran the other synthesis form than this install runs (same_form False)."""
    from runtime.backends import openvino_int8 as oi

    real = oi.SHIPPED_INT8
    if not real.is_file():
        pytest.fail("no shipped INT8 model for the shipped weights (sfadacof/weights/*.int8.xml)")
    for suffix in (".xml", ".bin"):
        (tmp_path / real.with_suffix(suffix).name).symlink_to(real.with_suffix(suffix))
    from runtime.backends.openvino_synthesis import synthesis_form_here

    rec = json.loads(oi.sidecar_of(real).read_text())
    form = synthesis_form_here() if same_form else {"kernel": "ops", "ops": "kernel"}[synthesis_form_here()]
    full = {"passed": True, "max_triplets": None, "synthesis": form, "gaps": [1, 2]}
    rec["validations"] = {"bf16+vnni": full, "fp32+vnni": {**full, "passed": False}}
    (tmp_path / oi.sidecar_of(real).name).write_text(json.dumps(rec))
    monkeypatch.setattr(oi, "SHIPPED_INT8", tmp_path / real.name)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cands, _, notes = cpu_choice.candidates(BackendOptions(), numerics.startswith("bf16"), numerics=numerics)
    assert ("int8" in [c.name for c in cands]) is offered
    if not offered and same_form:
        assert any(f"as {numerics} (" in n and "met as bf16+vnni)" in n for n in notes), notes
    if not same_form:
        assert any(n.startswith(f"int8: the shipped INT8 model met the accuracy rule as {numerics} with the synthesis")
                   for n in notes), notes


def test_validated_numerics_counts_full_validations_that_met_the_rule(tmp_path):
    """A sidecar's class counts only with passed true on every triplet of the rule's gaps with this synthesis form:
    a failed one, a sample (max_triplets), one of gap 1 alone, one of the other form or a malformed entry does not."""
    from runtime.backends.openvino_int8 import validated_numerics

    xml = tmp_path / "m.int8.xml"
    xml.write_text("<net/>")
    assert validated_numerics(xml) == []  # no sidecar
    full = {"passed": True, "max_triplets": None, "synthesis": "kernel", "gaps": [1, 2]}
    (tmp_path / "m.int8.json").write_text(json.dumps({"weights_sha256": "0" * 64, "files": {}, "validations": {
        "bf16+vnni": full, "fp32+vnni": {**full, "passed": False}, "fp32+novnni": {**full, "max_triplets": 5},
        "x": "passed"}}))
    assert validated_numerics(xml, "kernel") == ["bf16+vnni"]
    # a validation counts only for the synthesis form it ran; a record without one ran the export's ops
    assert validated_numerics(xml, "ops") == []
    (tmp_path / "m.int8.json").write_text(json.dumps({"weights_sha256": "0" * 64, "files": {}, "validations": {
        "bf16+vnni": {"passed": True, "max_triplets": None, "gaps": [1, 2]}, "fp32+vnni": full}}))
    assert validated_numerics(xml, "ops") == ["bf16+vnni"] and validated_numerics(xml, "kernel") == ["fp32+vnni"]
    # and only when it covered the rule's gaps (1 and 2): gap 1 alone, or no gaps recorded, does not count
    (tmp_path / "m.int8.json").write_text(json.dumps({"weights_sha256": "0" * 64, "files": {}, "validations": {
        "bf16+vnni": {**full, "gaps": [1]}, "fp32+vnni": {k: v for k, v in full.items() if k != "gaps"},
        "fp32+novnni": {**full, "gaps": [2, 1, 3]}}}))
    assert validated_numerics(xml, "kernel") == ["fp32+novnni"]


