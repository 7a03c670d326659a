"""Speaker diarization of whole recordings: pyannote.audio 4.0.7's `SpeakerDiarization.apply`, in MLX.

Two passes over the audio. The first runs the segmentation model on windows of its duration every
`segmentation_step` of it (the last zero-padded) and keeps each window's per-speaker activity; the
second re-reads the audio window by window and extracts one embedding per (window, local speaker)
under `embedding_masks`. Then `diarization.py`'s and `clustering.py`'s numpy stages, in `apply`'s order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from . import fbank
from .audio import AudioSource, open_audio
from .clustering import AgglomerativeClustering, VBxClustering
from .diarization import (
    Diarization,
    diarization_from_clusters,
    embedding_masks,
    min_num_frames,
    set_num_speakers,
    speaker_count,
)
from .inference import model_windows, window_outputs
from .parts import Parts
from .pipeline_config import AgglomerativeParams, DiarizationConfig
from .plda import PLDA
from .pyannet import PyanNet
from .timeline import SlidingWindow
from .wespeaker import WeSpeakerResNet34
from .windows import WindowBatch, slide

# progress(stage, windows): `windows` more windows done in stage "segmentation" or "embeddings"
Progress = Callable[[str, int], None]
# hook(step, artefact), as pyannote's: "segmentation" (`Segmentations`), "speaker_counting" (`FrameScores`),
# "embeddings" ((windows, local speakers, dimension)) and "clusters" (`Clusters`), each when computed
Hook = Callable[[str, Any], None]


@dataclass
class Segmentations:
    """Per-window local speaker activity, as `get_segmentations` returns it, and its binarized version."""

    scores: np.ndarray  # (windows, frames per window, local speakers): 0/1 for powerset models
    binarized: np.ndarray  # the same, thresholded for multilabel models
    chunks: SlidingWindow  # where the windows sit
    frames: SlidingWindow  # the model's frames (receptive field)


def binarize_windows(scores: np.ndarray, threshold: float) -> np.ndarray:
    """pyannote's `binarize(scores, onset=threshold, initial_state=False)` of (windows, frames, speakers) scores:
    on above the threshold, off below it, unchanged on it (off before any frame is above or below)."""
    scores = np.nan_to_num(scores)
    state = np.zeros((scores.shape[0], scores.shape[2]), dtype=bool)
    binarized = np.zeros(scores.shape, dtype=np.float64)
    for f in range(scores.shape[1]):
        frame = scores[:, f]
        state = np.where(frame > threshold, True, np.where(frame < threshold, False, state))
        binarized[:, f] = state
    return binarized


def segment_windows(
    model: PyanNet, source: AudioSource, config: DiarizationConfig, progress: Progress | None = None
) -> Segmentations:
    """Per-window outputs of `model` (`Inference(skip_aggregation=True)`), binarized for multilabel models."""
    spec = model.specifications
    if not spec.powerset and config.segmentation_threshold is None:
        raise ValueError("a multilabel segmentation model needs segmentation_threshold")
    sliding = model_windows(model, source, config.segmentation_step * spec.duration)
    kept = []
    for batch, speakers in window_outputs(model, source, sliding, batch_size=config.segmentation_batch_size):
        kept.append(speakers)
        if progress is not None:
            progress("segmentation", batch.count)
    scores = np.concatenate(kept)
    binarized = scores if spec.powerset else binarize_windows(scores, config.segmentation_threshold)
    frames = SlidingWindow(start=model.frames.start, duration=model.frames.duration, step=model.frames.step)
    return Segmentations(scores, binarized, sliding.chunks, frames)


def embed_windows(
    model: WeSpeakerResNet34,
    source: AudioSource,
    segmentation: PyanNet,
    masks: np.ndarray,
    config: DiarizationConfig,
    progress: Progress | None = None,
) -> np.ndarray:
    """(windows, local speakers, dimension) embeddings, one per mask of (windows, local speakers, frames).

    pyannote embeds each (window, speaker) pair from its own copy of the window, `embedding_batch_size`
    copies per ResNet forward; the ResNet does not depend on the mask, so here each window goes through
    it once with all its speakers' masks, `embedding_batch_size` windows per forward: the same ResNet
    batch (an hour on an H100: 9.8 s and 1.6 GiB, against 10.9 s and 0.85 GiB at a third of it;
    pyannote 1.6 GiB; benchmarks/results/h100_nov27_diarization_batches.json).
    """
    num_windows = len(masks)
    sliding = model_windows(segmentation, source, config.segmentation_step * segmentation.specifications.duration)
    done = 0
    # one for every forward: one part in flight across batches too (an hour on an H100 peaked at 2,237 MiB, against
    # 2,287 to 3,169 MiB with a Parts per forward; benchmarks/embedding_parts.py)
    parts = Parts()

    def forward(batch: WindowBatch) -> mx.array:
        nonlocal done
        weights = mx.array(masks[done : done + batch.count])
        done += batch.count
        return model(sliding.windows(batch), weights, parts=parts).astype(mx.float32)

    embeddings = []
    for batch, outputs in slide(sliding, source.blocks(), forward, config.embedding_batch_size):
        embeddings.append(outputs)
        if progress is not None:
            progress("embeddings", batch.count)
    embeddings = np.concatenate(embeddings)
    if len(embeddings) != num_windows:
        raise RuntimeError(f"the audio changed between passes: {len(embeddings)} windows, then {num_windows}")
    return embeddings


class SpeakerDiarization:
    """Who spoke when: call it on a file or an array, as `detect_speech`; returns a `Diarization`."""

    def __init__(
        self,
        segmentation: PyanNet,
        embedding: WeSpeakerResNet34,
        config: DiarizationConfig,
        plda: PLDA | None = None,
    ):
        if segmentation.config.sample_rate != embedding.config.sample_rate:
            raise ValueError("the segmentation and embedding models expect different sample rates")
        self.segmentation = segmentation
        self.embedding = embedding
        self.config = config
        params = config.clustering
        if isinstance(params, AgglomerativeParams):
            self.clustering = AgglomerativeClustering(
                threshold=params.threshold, method=params.method, min_cluster_size=params.min_cluster_size
            )
        else:
            if plda is None:
                raise ValueError("VBx clustering needs the pipeline's PLDA")
            self.clustering = VBxClustering(plda, threshold=params.threshold, Fa=params.Fa, Fb=params.Fb)

    def __call__(
        self,
        audio: str | Path | np.ndarray,
        *,
        sample_rate: int | None = None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        progress: Progress | None = None,
        hook: Hook | None = None,
    ) -> Diarization:
        """Diarize a file (any format soundfile reads, any rate) or an array (with `sample_rate`)."""
        hook = hook or (lambda step, artefact: None)
        num_speakers, min_speakers, max_speakers = set_num_speakers(num_speakers, min_speakers, max_speakers)
        rate = self.segmentation.config.sample_rate
        segmentations = segment_windows(
            self.segmentation, open_audio(audio, rate, source_rate=sample_rate), self.config, progress
        )
        hook("segmentation", segmentations)
        binarized, chunks = segmentations.binarized, segmentations.chunks
        count = speaker_count(binarized, chunks, segmentations.frames)
        hook("speaker_counting", count)
        if np.nanmax(count.data) == 0:
            return Diarization([], [], np.zeros((0, self.embedding.dimension)))

        masks = self.masks(binarized, chunks)
        embeddings = embed_windows(
            self.embedding,
            open_audio(audio, rate, source_rate=sample_rate),
            self.segmentation,
            masks,
            self.config,
            progress,
        )
        hook("embeddings", embeddings)
        clusters = self.clustering(embeddings, binarized, num_speakers, min_speakers, max_speakers)
        hook("clusters", clusters)
        return diarization_from_clusters(
            segmentations.scores,
            chunks,
            count,
            clusters,
            min_speakers,
            max_speakers,
            self.config.min_duration_off,
            binarized=binarized,
        )

    def masks(self, binarized: np.ndarray, chunks: SlidingWindow) -> np.ndarray:
        """Each (window, local speaker)'s frame weights, overlap excluded if the config says so."""
        if not self.config.embedding_exclude_overlap:
            return embedding_masks(binarized)
        rate = self.embedding.config.sample_rate
        # pyannote's `min_num_samples`: the fewest its model runs on without raising, one fbank frame (not the
        # two pooled frames `WeSpeakerResNet34.min_num_samples` asks for a finite standard deviation)
        one_frame, _, _ = fbank.frame_sizes(self.embedding.config.fbank, rate)
        fewest = min_num_frames(binarized.shape[1], chunks.duration, rate, one_frame)
        return embedding_masks(binarized, exclude_overlap=True, min_num_frames=fewest)
