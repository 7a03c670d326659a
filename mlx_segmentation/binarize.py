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
    timestamps = frames.middles(len(scores))
    active = _hysteresis(np.asarray(scores), params.onset, params.offset)
    changes = np.flatnonzero(active[1:] != active[:-1]) + 1
    edges = timestamps[changes].tolist()
    if active[0]:
        edges.insert(0, float(timestamps[0]))
    if active[-1]:
        edges.append(float(timestamps[-1]))
    regions = [Region(start, end) for start, end in zip(edges[0::2], edges[1::2], strict=True)]
    regions = [r for r in regions if r.duration > SEGMENT_PRECISION]  # pyannote drops empty segments
    if params.min_duration_off > 0.0:
        regions = _fill_gaps(regions, params.min_duration_off)
    if params.min_duration_on > 0.0:
        regions = [r for r in regions if r.duration >= params.min_duration_on]
    return regions


def _hysteresis(scores: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Per frame, whether a region is open: from the first frame's `> onset`, each later frame above onset
    opens one and each below offset closes one (pyannote's loop over frames, as array operations)."""
    if onset < offset:  # a frame may be both above onset and below offset: the state toggles, frame by frame
        active = np.empty(len(scores), dtype=bool)
        active[0] = scores[0] > onset
        for i in range(1, len(scores)):
            active[i] = not scores[i] < offset if active[i - 1] else scores[i] > onset
        return active
    state = np.where(scores > onset, 1, np.where(scores < offset, 0, -1))  # open, close, or keep the state
    state[0] = scores[0] > onset
    last_decided = np.maximum.accumulate(np.where(state >= 0, np.arange(len(scores)), 0))
    return state[last_decided] == 1


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
