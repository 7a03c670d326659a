"""The numpy stages of pyannote.audio 4.0.7's `SpeakerDiarization` around clustering.

Per-window (chunk) arrays are pyannote's: binarized segmentations (chunks, frames per chunk, local
speakers), as a powerset model's decoded outputs are; `chunks` places the windows in time and
`frames` is the model's receptive field (frame step and duration). In `apply`'s order:
`set_num_speakers`; `speaker_count` (if it is 0 everywhere there is nobody to embed); the
`embedding_masks` each embedding is extracted under; clustering (`clustering.py`); then
`diarization_from_clusters`: `reconstruct` per frame the `count` most active clusters, binarize
them into speaker turns labelled SPEAKER_00, SPEAKER_01, ... and order the centroids as the labels.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple, TextIO

import numpy as np

from .binarize import BinarizeParams, binarize
from .clustering import Clusters
from .columns import reduce_columns
from .timeline import Region, SlidingWindow
from .windows import OverlapAdd


def set_num_speakers(
    num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None
) -> tuple[int | None, int, float]:
    """(num_speakers, min_speakers, max_speakers), `num_speakers` overriding both bounds; no upper bound is
    `np.inf`, and equal bounds fix the number. pyannote takes 0 for "not given"; here it is refused."""
    for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    min_speakers = num_speakers or min_speakers or 1
    max_speakers = num_speakers or max_speakers or np.inf
    if min_speakers > max_speakers:
        raise ValueError(
            f"min_speakers must be smaller than (or equal to) max_speakers "
            f"(here: min_speakers={min_speakers:g} and max_speakers={max_speakers:g})."
        )
    if min_speakers == max_speakers:
        num_speakers = min_speakers
    return num_speakers, min_speakers, max_speakers


@dataclass(frozen=True)
class FrameScores:
    """(frames, columns) values, row i on frame i of `frames` (a 2-d pyannote.core `SlidingWindowFeature`)."""

    data: np.ndarray
    frames: SlidingWindow


def aggregate(
    window_scores: np.ndarray, chunks: SlidingWindow, frames: SlidingWindow, *, skip_average: bool
) -> FrameScores:
    """`Inference.aggregate(hamming=False, missing=0.0)` of (chunks, frames per chunk, columns) scores."""
    _, frames_per_chunk, num_columns = window_scores.shape
    overlap_add = OverlapAdd(chunks, frames, frames_per_chunk, num_columns)
    overlap_add.add(window_scores)
    return FrameScores(overlap_add.result(missing=0.0, skip_average=skip_average), overlap_add.frames)


def speaker_count(binarized: np.ndarray, chunks: SlidingWindow, frames: SlidingWindow) -> FrameScores:
    """(frames, 1) number of speakers active at once: per frame, the rounded average over the windows
    covering it of their number of active local speakers."""
    count = aggregate(reduce_columns(np.add, binarized), chunks, frames, skip_average=False)
    return FrameScores(np.rint(count.data).astype(np.uint8), count.frames)


def embedding_masks(binarized: np.ndarray, exclude_overlap: bool = False, min_num_frames: int = -1) -> np.ndarray:
    """(chunks, local speakers, frames per chunk) float32 masks under which each embedding is extracted.

    With `exclude_overlap`, frames where several speakers are active are left out, unless fewer than
    `min_num_frames` + 1 frames would be left (see `min_num_frames`).
    """
    masks = np.nan_to_num(binarized, nan=0.0).astype(np.float32, copy=False)
    if not exclude_overlap:
        return masks.transpose(0, 2, 1)
    # 0/1 values: where fewer than two speakers are active (NaN counts as overlap), the mask; 0 elsewhere
    clean_masks = masks * (reduce_columns(np.add, binarized) < 2)
    use_clean = np.sum(clean_masks, axis=1, keepdims=True) > min_num_frames
    return np.where(use_clean, clean_masks, masks).transpose(0, 2, 1)


def min_num_frames(frames_per_chunk: int, chunk_duration: float, sample_rate: int, min_num_samples: int) -> int:
    """Frames of a chunk covering the fewest samples the embedding model accepts, rounded up."""
    return math.ceil(frames_per_chunk * min_num_samples / (chunk_duration * sample_rate))


def to_diarization(segmentations: np.ndarray, chunks: SlidingWindow, count: FrameScores) -> FrameScores:
    """(frames, clusters) 0/1 diarization: per frame, the `count` clusters with the highest summed
    activity (more columns, all zero, if `count` exceeds the number of clusters)."""
    return top_speakers(aggregate(segmentations, chunks, count.frames, skip_average=True).data, count)


def top_speakers(activations: np.ndarray, count: FrameScores) -> FrameScores:
    """`to_diarization` from the (frames, clusters) summed activity: per frame, the `count` highest."""
    num_speakers = activations.shape[1]
    max_speakers_per_frame = np.max(count.data)
    if num_speakers < max_speakers_per_frame:
        activations = np.pad(activations, ((0, 0), (0, max_speakers_per_frame - num_speakers)))
    sorted_speakers = np.argsort(-activations, axis=-1)  # numpy's default sort, for pyannote's order of ties
    rank_is_active = np.arange(activations.shape[1]) < count.data.astype(np.int64)
    binary = np.zeros_like(activations)
    np.put_along_axis(binary, sorted_speakers, rank_is_active.astype(binary.dtype), axis=-1)
    return FrameScores(binary, count.frames)


def clustered_segmentations(segmentations: np.ndarray, hard_clusters: np.ndarray) -> np.ndarray:
    """(chunks, frames, clusters): per chunk and cluster, the max over the cluster's local speakers (-2: none),
    NaN where a chunk has none of the cluster's speakers."""
    num_chunks, num_frames, _ = segmentations.shape
    clustered = np.full((num_chunks, num_frames, np.max(hard_clusters) + 1), np.nan)
    for k in range(clustered.shape[2]):
        members = hard_clusters == k  # (chunks, local speakers)
        values = reduce_columns(np.maximum, np.where(members[:, None, :], segmentations, -np.inf))[..., 0]
        has_members = members.any(axis=1)
        clustered[has_members, :, k] = values[has_members]
    return clustered


def reconstruct(
    segmentations: np.ndarray, chunks: SlidingWindow, hard_clusters: np.ndarray, count: FrameScores
) -> FrameScores:
    """`to_diarization` of the `clustered_segmentations`."""
    return to_diarization(clustered_segmentations(segmentations, hard_clusters), chunks, count)


class Track(NamedTuple):
    """One turn of pyannote.core's `Annotation`: its region, track name and label (a cluster index)."""

    region: Region
    track: str
    label: int


def track_name(index: int) -> str:
    """pyannote.core's `string_generator`'s `index`-th name: A ... Z, AA ... ZZ, AAA ..."""
    length = 1
    while index >= 26**length:
        index -= 26**length
        length += 1
    letters = ""
    for _ in range(length):
        index, letter = divmod(index, 26)
        letters = chr(ord("A") + letter) + letters
    return letters


def to_annotation(discrete: FrameScores, min_duration_off: float = 0.0) -> list[Track]:
    """Each column's turns (`Binarize(onset=0.5, offset=0.5, min_duration_off=...)`), in `Annotation.itertracks`
    order: by region, then by track name (ties of identical regions order by name, as strings)."""
    params = BinarizeParams(onset=0.5, offset=0.5, min_duration_on=0.0, min_duration_off=min_duration_off)
    regions = {k: binarize(column, discrete.frames, params) for k, column in enumerate(discrete.data.T)}
    if min_duration_off > 0.0:  # `Annotation.support` names the tracks anew, label by label
        turns = [(region, label) for label in sorted(regions) for region in regions[label]]
        tracks = [Track(region, track_name(i), label) for i, (region, label) in enumerate(turns)]
    else:
        tracks = [Track(region, track_name(k), k) for k in regions for region in regions[k]]
    return sorted(tracks, key=lambda t: (t.region.start, t.region.end, t.track))


@dataclass(frozen=True)
class Turn:
    """A speaker's turn, in seconds."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Diarization:
    """Speaker turns (overlapping where speakers overlap), exclusive turns (one speaker at a time) and one
    embedding per speaker, in `labels` order (as pyannote's `DiarizeOutput`)."""

    turns: list[Turn]
    exclusive_turns: list[Turn]
    speaker_embeddings: np.ndarray

    @property
    def labels(self) -> list[str]:
        return sorted({turn.speaker for turn in self.turns})

    @property
    def speaker_diarization(self) -> list[Turn]:
        """pyannote's name for `turns`."""
        return self.turns

    @property
    def exclusive_speaker_diarization(self) -> list[Turn]:
        """pyannote's name for `exclusive_turns`."""
        return self.exclusive_turns

    def to_rttm(self, uri: str, exclusive: bool = False) -> str:
        """The RTTM text `write_rttm` writes."""
        text = io.StringIO()
        self.write_rttm(text, uri, exclusive)
        return text.getvalue()

    def write_rttm(self, file: TextIO, uri: str, exclusive: bool = False) -> None:
        """One `SPEAKER` line per turn, as pyannote.core's `Annotation.write_rttm`."""
        for turn in self.exclusive_turns if exclusive else self.turns:
            file.write(f"SPEAKER {uri} 1 {turn.start:.3f} {turn.duration:.3f} <NA> <NA> {turn.speaker} <NA> <NA>\n")


def speaker_label(index: int) -> str:
    return f"SPEAKER_{index:02d}"


def diarization_from_clusters(
    segmentations: np.ndarray,
    chunks: SlidingWindow,
    count: FrameScores,
    clusters: Clusters,
    min_speakers: int = 1,
    max_speakers: float = np.inf,
    min_duration_off: float = 0.0,
    binarized: np.ndarray | None = None,
) -> Diarization:
    """`SpeakerDiarization.apply` after clustering: speakers per frame capped at `max_speakers`, local
    speakers never active (in `binarized`, `segmentations` if None) dropped, then turns, exclusive turns and
    the centroids in label order. Multilabel models' `segmentations` are scores, `binarized` thresholded."""
    num_different_speakers = np.max(clusters.hard) + 1
    if num_different_speakers < min_speakers or num_different_speakers > max_speakers:
        warnings.warn(
            f"The detected number of speakers ({num_different_speakers}) is outside the given bounds "
            f"[{min_speakers}, {max_speakers}]. This can happen if the audio is too short to contain "
            f"{min_speakers} or more speakers. Try to lower the desired minimal number of speakers."
        )
    count = FrameScores(np.minimum(count.data, max_speakers).astype(np.int8), count.frames)
    hard_clusters = clusters.hard.copy()
    binarized = segmentations if binarized is None else binarized
    hard_clusters[np.sum(binarized, axis=1) == 0] = -2  # local speakers never active join no cluster
    # both diarizations rank the same summed activity (pyannote aggregates it once for each)
    clustered = clustered_segmentations(segmentations, hard_clusters)
    activations = aggregate(clustered, chunks, count.frames, skip_average=True).data
    discrete = top_speakers(activations, count)
    tracks = to_annotation(discrete, min_duration_off)
    one_at_a_time = FrameScores(np.minimum(count.data, 1).astype(np.int8), count.frames)
    exclusive = top_speakers(activations, one_at_a_time)
    exclusive_tracks = to_annotation(exclusive, min_duration_off)

    mapping = {k: speaker_label(i) for i, k in enumerate(sorted({track.label for track in tracks}))}
    inverse_mapping = {label: k for k, label in mapping.items()}
    labels = sorted(mapping.values())
    centroids = clusters.centroids
    # the count can ask for more speakers than there are clusters: zero embeddings for the extra ones (pyannote
    # pads to one row per label; one row per cluster index as well gives its result wherever it has one)
    rows = max([len(labels), *(k + 1 for k in mapping)])
    if rows > len(centroids):
        centroids = np.pad(centroids, ((0, rows - len(centroids)), (0, 0)))
    return Diarization(
        turns=[Turn(t.region.start, t.region.end, mapping[t.label]) for t in tracks],
        exclusive_turns=[Turn(t.region.start, t.region.end, mapping[t.label]) for t in exclusive_tracks],
        speaker_embeddings=centroids[[inverse_mapping[label] for label in labels]],
    )
