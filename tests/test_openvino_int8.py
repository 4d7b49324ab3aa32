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


def test_int8_for_another_checkpoint_is_refused_in_one_line(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    other = tmp_path / "other.pth"
    other.write_bytes(changed_copy(DEFAULT_CHECKPOINT))
    with pytest.raises(UserError, match=r"--precision int8: no INT8 model ships for .*other\.pth .*"
                                        r"pass --onnx M\.int8\.xml") as e:
        create_backend("openvino", BackendOptions(checkpoint=other, precision="int8"))
    assert "\n" not in str(e.value)
