"""Hysteresis thresholding of a score into regions, with pyannote.audio's `Binarize` semantics."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .config import Specifications
from .timeline import SEGMENT_PRECISION, Region, SlidingWindow


class BinarizeParams(BaseModel):
    """onset/offset thresholds; regions shorter than min_duration_on are removed, gaps shorter than
    min_duration_off are filled."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    onset: float = Field(ge=0.0, le=1.0)
    offset: float = Field(ge=0.0, le=1.0)
    min_duration_on: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    min_duration_off: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)


# pyannote's VoiceActivityDetection defaults: the published values for pyannote/segmentation
# (multilabel), and 0.5 / 0.5 / 0 / 0 for powerset models.
MULTILABEL_SPEECH = BinarizeParams(onset=0.767, offset=0.377, min_duration_on=0.136, min_duration_off=0.067)
POWERSET_SPEECH = BinarizeParams(onset=0.5, offset=0.5, min_duration_on=0.0, min_duration_off=0.0)


def default_speech_params(spec: Specifications) -> BinarizeParams:
    return POWERSET_SPEECH if spec.powerset else MULTILABEL_SPEECH


def binarize(scores: np.ndarray, frames: SlidingWindow, params: BinarizeParams) -> list[Region]:
    """Regions where `scores` (one value per frame) rises above onset and stays above offset."""
    if len(scores) == 0:
        return []
    timestamps = [frames.middle(i) for i in range(len(scores))]
    regions: list[Region] = []
    start, active = timestamps[0], bool(scores[0] > params.onset)
    t = timestamps[0]
    for t, y in zip(timestamps[1:], scores[1:]):
        if active and y < params.offset:
            regions.append(Region(start, t))
            start, active = t, False
        elif not active and y > params.onset:
            start, active = t, True
    if active:
        regions.append(Region(start, t))
    regions = [r for r in regions if r.duration > SEGMENT_PRECISION]  # pyannote drops empty segments
    if params.min_duration_off > 0.0:
        regions = _fill_gaps(regions, params.min_duration_off)
    if params.min_duration_on > 0.0:
        regions = [r for r in regions if r.duration >= params.min_duration_on]
    return regions


def _fill_gaps(regions: list[Region], collar: float) -> list[Region]:
    """Merge regions separated by less than `collar` seconds (pyannote.core's Timeline.support)."""
    merged: list[Region] = []
    for region in sorted(regions, key=lambda r: (r.start, r.end)):
        if merged:
            gap = region.start - merged[-1].end
            if gap <= SEGMENT_PRECISION or gap < collar:
                merged[-1] = Region(min(merged[-1].start, region.start), max(merged[-1].end, region.end))
                continue
        merged.append(region)
    return merged
