"""The pipeline folder's `manifest.json`: what a speaker-diarization pipeline was converted from, with hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .manifest import MANIFEST_FILE

PIPELINE_MANIFEST_FILE = MANIFEST_FILE  # at the top of the pipeline folder; each model folder holds its own


class SourceFile(BaseModel):
    """One file of the pyannote pipeline folder, by its path relative to that folder."""

    model_config = ConfigDict(extra="forbid")

    size: int
    sha256: str


class PipelineSource(BaseModel):
    """The pyannote pipeline folder: its config.yaml and every file it names."""

    model_config = ConfigDict(extra="forbid")

    config_sha256: str  # of config.yaml
    files: dict[str, SourceFile]  # config.yaml, the two checkpoints and (for VBx) the two PLDA .npz files


class PipelineChecks(BaseModel):
    """The outcome of the pipeline's own checks (the models' checks are in their own manifests)."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    summary: str


class PipelineManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    kind: Literal["speaker-diarization"] = "speaker-diarization"
    converter_version: str
    created: datetime
    source: PipelineSource
    checks: PipelineChecks | None = None  # None: the pipeline checks did not run
    # sha256 of every file in the folder but this one, sub-folders' files included ("embedding/model.safetensors")
    files: dict[str, str] = {}
