"""One file format for every trained network of the extension, and its integrity checks.

A model file is a ``torch.save`` of a plain dictionary::

    {"format": "slicer-fastmri-model", "format_version": 1,
     "architecture": "ScdnnNet",               # name in the owning Lib's registry
     "config": {...},                          # the architecture's constructor arguments
     "state_dict": {name: tensor, ...},        # the weights
     "metadata": {...}}                        # training data, protocol (e.g. b-values), metrics

It holds only tensors and JSON-like values, so it is read with ``torch.load(..., weights_only=True)``:
loading never runs code from the file. Shipped models are listed in ``<Module>/Resources/Models/<Module>/manifest.json``
with their SHA-256; a file whose hash differs from the manifest is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelFileError

FORMAT_NAME = "slicer-fastmri-model"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class ModelFile:
    """The content of a model file (see the module docstring)."""

    architecture: str
    config: dict[str, Any]
    state_dict: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def build(self, registry: Mapping[str, Callable[..., Any]]) -> Any:
        """Instantiate ``registry[architecture](**config)`` and load the weights (strictly), in eval mode."""
        if self.architecture not in registry:
            raise ModelFileError(
                f"model architecture {self.architecture!r} is unknown here (known: {', '.join(sorted(registry))})"
            )
        try:
            module = registry[self.architecture](**self.config)
        except (TypeError, ValueError) as error:  # a key the constructor does not take, a value it refuses
            unknown = re.search(r"unexpected keyword argument '(\w+)'", str(error))
            if unknown:
                raise ModelFileError(
                    f"model config key {unknown.group(1)!r} is unknown to architecture {self.architecture!r} in this "
                    "version of the extension"
                ) from error
            raise ModelFileError(
                f"model config {self.config} does not fit architecture {self.architecture!r}: {_first_line(error)}"
            ) from error
        try:
            module.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as error:  # missing, unexpected or wrongly shaped weights
            first = str(error).strip().splitlines()
            raise ModelFileError(
                f"weights do not fit architecture {self.architecture!r} with config "
                f"{self.config}: {' '.join(first[:2])[:300]}"
            ) from error
        return module.eval()


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model_file(path: str | os.PathLike, model: ModelFile) -> str:
    """Write ``model`` to ``path`` atomically (a crash never leaves half a file); return its SHA-256."""
    import torch

    try:
        json.dumps(model.config)
        json.dumps(model.metadata)
    except TypeError as error:
        raise ModelFileError(f"model config and metadata must be JSON-like: {error}") from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_NAME,
        "format_version": model.format_version,
        "architecture": model.architecture,
        "config": model.config,
        "state_dict": {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict.items()},
        "metadata": model.metadata,
    }
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a model file is for everyone to read
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return sha256_file(path)


def load_model_file(path: str | os.PathLike, expected_sha256: str | None = None) -> ModelFile:
    """Read a model file safely (``weights_only=True``); check its SHA-256 when ``expected_sha256`` is given.

    Raises :class:`ModelFileError` with a one-line reason for a missing, corrupt, foreign or too-new file. A file
    torch cannot read with ``weights_only`` (damaged, or holding Python objects besides tensors and plain values)
    is "not a valid model file": torch's own message is not passed on, as it advises loading the file unsafely.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelFileError(
                f"model file {path.name} is corrupt or was modified: SHA-256 {actual[:16]}... "
                f"does not match the manifest's {expected_sha256[:16]}..."
            )
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol: the error below says what matters
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises zip, pickle, key and runtime errors for damaged or foreign files
        raise ModelFileError(
            f"{path.name} is not a valid model file: it is damaged, or holds more than weights "
            "(it was not written by this extension)"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path.name} is not a {FORMAT_NAME} file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path.name} has format version {version}; this extension reads up to {FORMAT_VERSION}: update it"
        )
    missing = [key for key in ("architecture", "config", "state_dict", "metadata") if key not in payload]
    if missing:
        raise ModelFileError(f"{path.name} lacks {', '.join(missing)}")
    wrong = [key for key in ("config", "state_dict", "metadata") if not isinstance(payload[key], dict)]
    if wrong or not isinstance(payload["architecture"], str):
        raise ModelFileError(
            f"{path.name} is not a valid model file: {', '.join(wrong) or 'architecture'} of the wrong type"
        )
    return ModelFile(
        architecture=payload["architecture"],
        config=dict(payload["config"]),
        state_dict=dict(payload["state_dict"]),
        metadata=dict(payload["metadata"]),
        format_version=version,
    )


@dataclass(frozen=True)
class ManifestEntry:
    """One shipped model: its file name, SHA-256, model card (Markdown file name) and a one-line summary."""

    file: str
    sha256: str
    card: str
    summary: str = ""


def read_manifest(models_dir: str | os.PathLike) -> dict[str, ManifestEntry]:
    """The shipped models listed in ``models_dir/manifest.json`` (an empty dict when there is none)."""
    manifest = Path(models_dir) / MANIFEST_NAME
    if not manifest.is_file():
        return {}
    try:
        entries = json.loads(manifest.read_text())["models"]
        return {name: ManifestEntry(file=name, **fields) for name, fields in entries.items()}
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"model manifest {manifest} is malformed: {error}") from error


def write_manifest_entry(models_dir: str | os.PathLike, entry: ManifestEntry) -> None:
    """Add or replace ``entry`` in ``models_dir/manifest.json`` (sorted, stable formatting)."""
    manifest = Path(models_dir) / MANIFEST_NAME
    entries = {name: vars(e) for name, e in read_manifest(models_dir).items()}
    entries[entry.file] = {key: value for key, value in vars(entry).items() if key != "file"}
    for fields in entries.values():
        fields.pop("file", None)
    manifest.write_text(json.dumps({"models": dict(sorted(entries.items()))}, indent=2) + "\n")


def load_shipped_model(models_dir: str | os.PathLike, file_name: str) -> ModelFile:
    """Load a model listed in ``models_dir``'s manifest, refusing it when its SHA-256 differs."""
    entries = read_manifest(models_dir)
    if file_name not in entries:
        raise ModelFileError(f"{file_name} is not listed in {Path(models_dir) / MANIFEST_NAME}")
    return load_model_file(Path(models_dir) / file_name, expected_sha256=entries[file_name].sha256)
