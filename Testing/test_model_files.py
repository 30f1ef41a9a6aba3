"""Model files: round trip, safe loading, SHA-256 manifest, and clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from FastMRICommon.errors import ModelFileError
from FastMRICommon.model_files import (
    ManifestEntry,
    ModelFile,
    load_model_file,
    load_shipped_model,
    read_manifest,
    save_model_file,
    sha256_file,
    write_manifest_entry,
)


class TinyNet(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.layer = nn.Linear(3, width)

    def forward(self, x):
        return self.layer(x)


REGISTRY = {"TinyNet": TinyNet}


def tiny_model_file(width: int = 4) -> ModelFile:
    torch.manual_seed(0)
    return ModelFile(
        "TinyNet",
        {"width": width},
        TinyNet(width).state_dict(),
        {"protocol": {"bvalues": [0, 20, 50]}, "metrics": {"nrmse_f": 0.19}, "data": "synthetic"},
    )


def test_round_trip_rebuilds_the_same_network(tmp_path):
    original = tiny_model_file()
    digest = save_model_file(tmp_path / "tiny.pt", original)
    assert digest == sha256_file(tmp_path / "tiny.pt") and len(digest) == 64
    loaded = load_model_file(tmp_path / "tiny.pt", expected_sha256=digest)
    assert loaded.metadata == original.metadata and loaded.config == {"width": 4}
    net = loaded.build(REGISTRY)
    x = torch.randn(5, 3)
    reference = TinyNet(4)
    reference.load_state_dict(original.state_dict)
    torch.testing.assert_close(net(x), reference(x))
    assert not net.training


def test_corrupted_file_is_refused_by_its_checksum(tmp_path):
    path = tmp_path / "tiny.pt"
    digest = save_model_file(path, tiny_model_file())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt or was modified: SHA-256"):
        load_model_file(path, expected_sha256=digest)


def test_truncated_file_is_not_readable(tmp_path):
    path = tmp_path / "tiny.pt"
    save_model_file(path, tiny_model_file())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="tiny.pt is not a valid model file: it is damaged"):
        load_model_file(path)


def test_foreign_and_future_files_are_refused(tmp_path):
    torch.save(TinyNet().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match="is not a slicer-fastmri-model file"):
        load_model_file(tmp_path / "plain.pt")
    future = tiny_model_file()
    future.format_version = 99
    save_model_file(tmp_path / "future.pt", future)
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model_file(tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model_file(tmp_path / "absent.pt")


def test_pickled_code_is_never_executed(tmp_path):
    """weights_only loading refuses arbitrary objects instead of running them."""
    torch.save({"format": "slicer-fastmri-model", "payload": TinyNet()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="evil.pt is not a valid model file") as caught:
        load_model_file(tmp_path / "evil.pt")
    assert "weights_only" not in str(caught.value)  # torch's advice would be to load it unsafely


@pytest.mark.parametrize("field, value", [("config", [4]), ("state_dict", "weights"), ("architecture", 3)])
def test_fields_of_the_wrong_type_are_refused(tmp_path, field, value):
    payload = {
        "format": "slicer-fastmri-model",
        "format_version": 1,
        "architecture": "TinyNet",
        "config": {"width": 4},
        "state_dict": TinyNet().state_dict(),
        "metadata": {},
    }
    torch.save({**payload, field: value}, tmp_path / "odd.pt")
    with pytest.raises(ModelFileError, match=f"odd.pt is not a valid model file: {field} of the wrong type"):
        load_model_file(tmp_path / "odd.pt")


def test_unknown_or_bad_config_values_are_model_file_errors(tmp_path):
    model = tiny_model_file()
    model.config = {"width": 4, "depth": 3}  # e.g. written by a later version that added "depth"
    save_model_file(tmp_path / "later.pt", model)
    with pytest.raises(ModelFileError, match="config key 'depth' is unknown to architecture 'TinyNet'"):
        load_model_file(tmp_path / "later.pt").build(REGISTRY)
    model.config = {"width": "four"}
    with pytest.raises(ModelFileError, match="config .* does not fit architecture 'TinyNet'"):
        model.build(REGISTRY)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    model = tiny_model_file()
    model.config = {"width": 8}
    save_model_file(tmp_path / "mismatch.pt", model)
    with pytest.raises(ModelFileError, match="do not fit architecture 'TinyNet'"):
        load_model_file(tmp_path / "mismatch.pt").build(REGISTRY)
    model = tiny_model_file()
    model.architecture = "Unknown"
    with pytest.raises(ModelFileError, match="unknown here"):
        model.build(REGISTRY)


def test_manifest_lists_and_verifies_shipped_models(tmp_path):
    digest = save_model_file(tmp_path / "tiny.pt", tiny_model_file())
    write_manifest_entry(tmp_path, ManifestEntry("tiny.pt", digest, "tiny.md", "test model"))
    assert read_manifest(tmp_path)["tiny.pt"].sha256 == digest
    assert load_shipped_model(tmp_path, "tiny.pt").architecture == "TinyNet"
    save_model_file(tmp_path / "tiny.pt", tiny_model_file(width=5))  # replaced behind the manifest's back
    with pytest.raises(ModelFileError, match="does not match the manifest"):
        load_shipped_model(tmp_path, "tiny.pt")
    with pytest.raises(ModelFileError, match="not listed"):
        load_shipped_model(tmp_path, "other.pt")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="malformed"):
        read_manifest(tmp_path)


def test_metadata_must_be_json_like(tmp_path):
    model = tiny_model_file()
    model.metadata = {"when": object()}
    with pytest.raises(ModelFileError, match="JSON-like"):
        save_model_file(tmp_path / "bad.pt", model)
    assert not (tmp_path / "bad.pt").exists()
