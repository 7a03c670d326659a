"""Our pipeline in community-1's layout, made of two checkpoints, converted without checks (tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import pipeline_sources  # tests/

from converter.pipeline_build import build_pipeline
from mlx_segmentation.pipeline import SpeakerDiarization
from mlx_segmentation.pipeline_loading import load_pipeline_parts


def community_1(folder: Path, segmentation: Path, embedding: Path) -> SpeakerDiarization:
    """The pipeline folder (`pipeline_sources.make_community_1`) and its conversion written under `folder`, loaded."""
    source = pipeline_sources.make_community_1(folder / "source", segmentation, embedding)
    build_pipeline(source, folder / "pipeline", check=None, log=lambda message: None)
    parts = load_pipeline_parts(folder / "pipeline")
    return SpeakerDiarization(parts.segmentation, parts.embedding, parts.config, parts.plda)
