"""`pipeline.json`: the parameters of a speaker-diarization pipeline, as pyannote.audio's config.yaml gives them."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PIPELINE_CONFIG_FILE = "pipeline.json"
SEGMENTATION_FOLDER = "segmentation"  # the converted segmentation model folder, inside the pipeline folder
EMBEDDING_FOLDER = "embedding"  # the converted embedding model folder
PLDA_FILE = "plda.safetensors"  # VBx's PLDA: mean1, mean2, lda (xvec_transform.npz) and mu, tr, psi (plda.npz)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def finite(cls, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class AgglomerativeParams(Strict):
    """pyannote's `AgglomerativeClustering` (speaker-diarization-3.1)."""

    name: Literal["AgglomerativeClustering"] = "AgglomerativeClustering"
    method: Literal["average", "centroid", "complete", "median", "single", "ward", "weighted"] = "centroid"
    min_cluster_size: int = Field(12, ge=1, le=1_000_000)
    threshold: float = Field(0.7045654963945799, ge=0.0, le=2.0)


class VBxParams(Strict):
    """pyannote's `VBxClustering` (speaker-diarization-community-1); needs the pipeline's PLDA."""

    name: Literal["VBxClustering"] = "VBxClustering"
    threshold: float = Field(0.6, ge=0.0, le=2.0)
    Fa: float = Field(0.07, gt=0.0, le=1e6)
    Fb: float = Field(0.8, gt=0.0, le=1e6)


ClusteringParams = Annotated[AgglomerativeParams | VBxParams, Field(discriminator="name")]


class DiarizationConfig(Strict):
    """pyannote.audio 4.0.7's `SpeakerDiarization` arguments and parameters that change its output."""

    clustering: ClusteringParams
    segmentation_step: float = Field(0.1, gt=0.0, le=1.0)  # a fraction of the segmentation window
    segmentation_threshold: float | None = Field(None, gt=0.0, lt=1.0)  # multilabel models only
    min_duration_off: float = Field(0.0, ge=0.0, le=3600.0)
    embedding_exclude_overlap: bool = False
    segmentation_batch_size: int = Field(32, ge=1, le=65536)
    embedding_batch_size: int = Field(32, ge=1, le=65536)
