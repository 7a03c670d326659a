"""Whole-model checks of a speaker-embedding model: embeddings against the references (cosine with
float32, max |diff| with float64), and the order of pairwise similarities between speakers."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch
from pydantic import BaseModel

from mlx_segmentation.wespeaker import WeSpeakerResNet34

from .audio import single_speaker_segments
from .gates import Gates

MIN_COSINE = 0.9999  # per embedding, against the float32 reference (issue #7's gate)
SEGMENT = 2.0  # seconds per ranking segment
SEGMENTS_PER_SPEAKER = 3


class EmbeddingCheck(BaseModel):
    input: str
    shape: list[int]
    max_abs_vs_float64: float
    reference_float32_error: float  # max |pyannote float32 - pyannote float64|
    tolerance: float  # max_abs_vs_float64's gate: the dtype's exactness factor times reference_float32_error
    max_abs_vs_float32: float
    min_cosine: float  # over embeddings, against the float32 reference
    passed: bool


class RankingCheck(BaseModel):
    segments: list[str]  # "speaker start-end"
    pairs: int
    same_order: bool
    largest_similarity_difference: float  # max |cos_mlx - cos_pytorch| over pairs
    passed: bool


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def full_model_check(
    name: str,
    model: WeSpeakerResNet34,
    ref32,
    ref64,
    waveforms: np.ndarray,
    weights: np.ndarray | None,
    gates: Gates,
) -> EmbeddingCheck:
    """Embeddings against float32 (cosine >= MIN_COSINE) and float64 (max |diff| within the gates, as a
    segmentation model's outputs: a float32 conversion no further from float64 than pyannote's own float32)."""
    w32 = None if weights is None else torch.from_numpy(weights)
    with torch.inference_mode():
        out32 = ref32(torch.from_numpy(waveforms)[:, None], weights=w32).double().numpy()
        out64 = ref64(
            torch.from_numpy(waveforms).double()[:, None], weights=None if w32 is None else w32.double()
        ).numpy()
    ours = np.array(
        model(mx.array(waveforms), None if weights is None else mx.array(weights)).astype(mx.float32)
    ).astype(np.float64)
    cosine = float(cosines(ours, out32).min())
    error, reference_error = float(np.abs(ours - out64).max()), float(np.abs(out32 - out64).max())
    tolerance = gates.tolerance(reference_error)
    return EmbeddingCheck(
        input=name,
        shape=list(ours.shape),
        max_abs_vs_float64=error,
        reference_float32_error=reference_error,
        tolerance=tolerance,
        max_abs_vs_float32=float(np.abs(ours - out32).max()),
        min_cosine=cosine,
        passed=cosine >= MIN_COSINE and error <= tolerance,
    )


def ranking_check(model: WeSpeakerResNet34, ref32) -> RankingCheck:
    segments, labels = single_speaker_segments(SEGMENT, SEGMENTS_PER_SPEAKER)
    with torch.inference_mode():
        theirs = ref32(torch.from_numpy(segments)[:, None]).double().numpy()
    ours = np.array(model(mx.array(segments)).astype(mx.float32)).astype(np.float64)
    pairs = np.triu_indices(len(segments), k=1)

    def similarities(e: np.ndarray) -> np.ndarray:
        unit = e / np.linalg.norm(e, axis=-1, keepdims=True)
        return (unit @ unit.T)[pairs]

    s_ours, s_theirs = similarities(ours), similarities(theirs)
    same = bool((np.argsort(s_ours, kind="stable") == np.argsort(s_theirs, kind="stable")).all())
    return RankingCheck(
        segments=labels,
        pairs=len(s_ours),
        same_order=same,
        largest_similarity_difference=float(np.abs(s_ours - s_theirs).max()),
        passed=same,
    )
