"""The model folder's `manifest.json`: where every tensor came from, with hashes."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKS_FILE = "checks.json"
CARD_FILE = "README.md"


class SourceRecord(BaseModel):
    """The PyTorch checkpoint a model was converted from."""

    model_config = ConfigDict(extra="forbid")

    file_name: str
    size: int
    sha256: str
    architecture: str  # e.g. pyannote.audio.models.segmentation.PyanNet
    versions: dict[str, str]  # as recorded in the checkpoint (torch, pyannote.audio, lightning)


class TensorRecord(BaseModel):
    """One output tensor: the source keys it was made from, by which rule, and its hash."""

    model_config = ConfigDict(extra="forbid")

    source_keys: list[str]
    rule: str
    transform: str
    shape: list[int]
    dtype: str
    sha256: str  # of the tensor's bytes as stored in model.safetensors


class ChecksSummary(BaseModel):
    """The outcome of the parity checks, tied to the exact weights they ran on."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    weights_sha256: str
    summary: str


class ReportOutcome(BaseModel):
    """The part of `checks.json` that the manifest's summary must agree with (the rest is the checks' own)."""

    model_config = ConfigDict(extra="ignore")

    passed: bool
    weights_sha256: str
    source_sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    converter_version: str
    created: datetime
    source: SourceRecord
    dtype: str
    model_type: str  # the family (config.json's discriminator)
    # What the family's conversion does beyond its rules, e.g. PyanNet {"sincnet_filters": "precomputed"}
    conversion: dict[str, str] = {}
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str
    tensors: dict[str, TensorRecord]
    checks: ChecksSummary | None = None
    files: dict[str, str] = {}  # sha256 of every other file in the folder, recorded when the folder is sealed


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
