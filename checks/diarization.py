"""Pipeline parity: our `SpeakerDiarization` against pyannote.audio 4.0.7's, stage by stage and end to end.

Both pipelines run on sample.wav with the folder's parameters; pyannote's is built from the same
checkpoints (read by the converter's safe reader) and the source PLDA files. pyannote's intermediates
come from its `hook`, ours from our pipeline's: each stage is compared, and the stages after
embedding are also run on pyannote's own inputs, where they must give pyannote's result exactly.
"""

from __future__ import annotations

import copy
import io
import platform
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from mlx_segmentation.clustering import Clusters
from mlx_segmentation.diarization import Diarization, FrameScores, diarization_from_clusters, set_num_speakers
from mlx_segmentation.pipeline import SpeakerDiarization
from mlx_segmentation.pipeline_config import AgglomerativeParams, DiarizationConfig
from mlx_segmentation.pipeline_loading import load_pipeline_parts
from mlx_segmentation.timeline import SlidingWindow

from . import reference
from .audio import read_mono, sample_wav
from .reference import Checkpoint
from .report import environment_versions

# Gates of the diarization issue. Segmentation and count may differ where a powerset argmax is a float32
# near-tie (MLX against PyTorch); everything downstream of them is compared exactly or by DER.
MAX_SEGMENTATION_DIFFERING = 1e-4  # fraction of binarized (window, frame, local speaker) values
MAX_COUNT_DIFFERING = 1e-3  # fraction of frames
MIN_EMBEDDING_COSINE = 0.9999  # per (window, local speaker), and per speaker after matching labels
MAX_DER = 0.001  # pyannote.metrics DiarizationErrorRate, collar 0, overlap scored, pyannote's output as reference


class DiarizationCheck(BaseModel):
    """One recording through both pipelines."""

    recording: str
    duration: float  # seconds
    clustering: str
    windows: int
    segmentation_differing: int  # binarized (window, frame, local speaker) values
    segmentation_values: int
    count_differing: int  # frames whose speaker count differs
    count_frames: int
    embeddings_compared: int  # (window, local speaker) pairs embedded on both sides (NaN on neither)
    nan_embeddings_equal: bool  # NaN (too few frames to embed) on the same pairs
    min_embedding_cosine: float
    clusters_on_their_embeddings_equal: bool  # our clustering of pyannote's embeddings and segmentation
    partition_equal: bool  # our end-to-end clusters against pyannote's, up to the clusters' names
    reconstruction_on_their_clusters_equal: bool  # our turns (and exclusive turns) from pyannote's clusters: RTTM
    der_vs_pyannote: float
    exclusive_der_vs_pyannote: float
    rttm_identical: bool
    speakers: int
    reference_speakers: int
    min_speaker_embedding_cosine: float | None  # None: no speaker on either side
    der_vs_truth: float | None = None  # ours against the recording's RTTM, when it has one
    reference_der_vs_truth: float | None = None  # pyannote's against the same RTTM
    passed: bool


class DiarizationCheckReport(BaseModel):
    """The pipeline folder's `checks.json`."""

    passed: bool
    created: datetime
    pipeline_folder: str
    reference: str  # pyannote.audio's SpeakerDiarization, and how its models were built
    gates: dict[str, float]
    versions: dict[str, str]
    platform: str
    diarization: list[DiarizationCheck]

    def summary(self) -> str:
        status = "passed" if self.passed else "FAILED"
        parts = [
            f"{c.recording}: DER vs pyannote {100 * c.der_vs_pyannote:.3f}%, {c.speakers} speakers "
            f"(pyannote {c.reference_speakers}), RTTM {'identical' if c.rttm_identical else 'different'}, "
            f"min embedding cosine {c.min_embedding_cosine:.8f}"
            for c in self.diarization
        ]
        return f"{status}: " + "; ".join(parts)

    def table(self) -> str:
        rows = []
        for c in self.diarization:
            rows += [
                (
                    f"{c.recording}: segmentation values differing",
                    f"{c.segmentation_differing}/{c.segmentation_values}",
                    c.segmentation_differing <= MAX_SEGMENTATION_DIFFERING * c.segmentation_values,
                ),
                (
                    f"{c.recording}: speaker count frames differing",
                    f"{c.count_differing}/{c.count_frames}",
                    c.count_differing <= MAX_COUNT_DIFFERING * c.count_frames,
                ),
                (
                    f"{c.recording}: min embedding cosine",
                    f"{c.min_embedding_cosine:.8f} ({c.embeddings_compared})",
                    c.nan_embeddings_equal and c.min_embedding_cosine >= MIN_EMBEDDING_COSINE,
                ),
                (
                    f"{c.recording}: clusters of pyannote's embeddings",
                    "identical",
                    c.clusters_on_their_embeddings_equal,
                ),
                (f"{c.recording}: partition", "identical", c.partition_equal),
                (
                    f"{c.recording}: turns from pyannote's clusters",
                    "identical",
                    c.reconstruction_on_their_clusters_equal,
                ),
                (f"{c.recording}: DER vs pyannote", f"{100 * c.der_vs_pyannote:.3f}%", c.der_vs_pyannote <= MAX_DER),
                (
                    f"{c.recording}: exclusive DER vs pyannote",
                    f"{100 * c.exclusive_der_vs_pyannote:.3f}%",
                    c.exclusive_der_vs_pyannote <= MAX_DER,
                ),
                (
                    f"{c.recording}: speakers",
                    f"{c.speakers} ({c.reference_speakers})",
                    c.speakers == c.reference_speakers,
                ),
            ]
            if c.der_vs_truth is not None:
                truth = f"{100 * c.der_vs_truth:.2f}% (pyannote {100 * c.reference_der_vs_truth:.2f}%)"
                rows.append((f"{c.recording}: DER vs its RTTM", truth, None))
        lines = [f"{'pipeline check':<48} {'value':>24}  ok"]
        for name, value, ok in rows:
            lines.append(f"{name:<48} {value:>24}  {'' if ok is None else ('yes' if ok else 'NO')}")
        return "\n".join(lines)


def run_pipeline_checks(
    folder: Path,
    segmentation: Checkpoint,
    embedding: Checkpoint,
    plda_files: tuple[Path, Path] | None,
    label: str | None = None,
    log: Callable[[str], None] = print,
) -> DiarizationCheckReport:
    """Load the pipeline folder as users do and compare it with pyannote.audio's on sample.wav."""
    if not reference.import_pyannote_audio():
        raise RuntimeError("the pipeline checks need pyannote.audio: pip install '.[convert]'")
    parts = load_pipeline_parts(folder)
    ours = SpeakerDiarization(parts.segmentation, parts.embedding, parts.config, parts.plda)
    theirs = pyannote_pipeline(parts.config, segmentation, embedding, plda_files, ours)
    log("pipeline check 1/1: sample.wav through both pipelines")
    check = diarization_check(ours, theirs, sample_wav())
    return DiarizationCheckReport(
        passed=check.passed,
        created=datetime.now().astimezone(),
        pipeline_folder=label or str(folder),
        reference="pyannote.audio SpeakerDiarization (its PyanNet and WeSpeakerResNet34 built from the checkpoints)",
        gates=dict(
            max_segmentation_differing=MAX_SEGMENTATION_DIFFERING,
            max_count_differing=MAX_COUNT_DIFFERING,
            min_embedding_cosine=MIN_EMBEDDING_COSINE,
            max_der=MAX_DER,
        ),
        versions=environment_versions(),
        platform=platform.platform(),
        diarization=[check],
    )


def pyannote_pipeline(
    config: DiarizationConfig,
    segmentation: Checkpoint,
    embedding: Checkpoint,
    plda_files: tuple[Path, Path] | None,
    ours: SpeakerDiarization,
):
    """pyannote.audio's `SpeakerDiarization` with the same models and parameters."""
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines.speaker_diarization import SpeakerDiarization as TheirDiarization

    segmentation_model = reference.pyannote_model(segmentation, ours.segmentation.config)
    embedding_model, _ = reference.wespeaker_reference(embedding, ours.embedding.config)
    params = config.clustering
    # pyannote's constructor loads a PLDA whatever the clustering; agglomerative clustering never reads it
    plda = PLDA.__new__(PLDA) if isinstance(params, AgglomerativeParams) else PLDA(*plda_files)
    pipeline = TheirDiarization(
        segmentation=segmentation_model,
        segmentation_step=config.segmentation_step,
        embedding=embedding_model,
        embedding_exclude_overlap=config.embedding_exclude_overlap,
        plda=plda,
        clustering=params.name,
        embedding_batch_size=config.embedding_batch_size,
        segmentation_batch_size=config.segmentation_batch_size,
    )
    segmentation_params = {"min_duration_off": config.min_duration_off}
    if config.segmentation_threshold is not None:
        segmentation_params["threshold"] = config.segmentation_threshold
    return pipeline.instantiate(
        {"segmentation": segmentation_params, "clustering": params.model_dump(exclude={"name"})}
    )


def diarization_check(ours: SpeakerDiarization, theirs, recording: Path) -> DiarizationCheck:
    """Both pipelines on `recording`, no speaker bounds; every stage compared."""
    import torch
    from pyannote.metrics.diarization import DiarizationErrorRate

    waveform, rate = read_mono(recording)
    ours_steps, their_steps = {}, {}

    def their_hook(step, artefact, file=None, **progress):
        if not progress:  # a copy: `apply` changes the count in place after the hook
            their_steps[step] = copy.deepcopy(artefact)

    diarization = ours(
        waveform, sample_rate=rate, hook=lambda step, artefact: ours_steps.setdefault(step, copy.deepcopy(artefact))
    )
    file = {"waveform": torch.from_numpy(waveform[None]), "sample_rate": rate, "uri": recording.stem}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyannote's warnings on its own run (torchcodec, std of one frame)
        expected = theirs.apply(file, hook=their_hook)

    segmentation, their_segmentation = ours_steps["segmentation"], their_steps["segmentation"]
    their_binarized = their_binary_segmentation(theirs, their_segmentation)
    count, their_count = ours_steps["speaker_counting"], their_steps["speaker_counting"]
    embeddings, their_embeddings = ours_steps["embeddings"], their_steps["embeddings"]
    same_shapes = (
        segmentation.binarized.shape == their_segmentation.data.shape
        and count.data.shape == their_count.data.shape
        and embeddings.shape == their_embeddings.shape
    )
    if not same_shapes:
        raise RuntimeError(
            f"{recording.name}: windows, frames or embeddings shaped differently from pyannote's "
            f"({segmentation.binarized.shape} {count.data.shape} {embeddings.shape} against "
            f"{their_segmentation.data.shape} {their_count.data.shape} {their_embeddings.shape})"
        )
    both = ~np.isnan(embeddings).any(axis=-1) & ~np.isnan(their_embeddings).any(axis=-1)
    cosines = cosine(embeddings[both], their_embeddings[both])

    # pyannote's clusters in its own run (`apply` does not hook them): its clustering of its own embeddings
    num_speakers, min_speakers, max_speakers = set_num_speakers(None, None, None)
    their_clusters = Clusters(
        *theirs.clustering(
            embeddings=their_embeddings.copy(),
            segmentations=their_binarized,
            num_clusters=num_speakers,
            min_clusters=min_speakers,
            max_clusters=max_speakers,
            file=file,
            frames=theirs._segmentation.model.receptive_field,
        )
    )
    clusters = ours.clustering(their_embeddings.copy(), their_binarized.data, num_speakers, min_speakers, max_speakers)
    chunks = SlidingWindow(
        start=their_segmentation.sliding_window.start,
        duration=their_segmentation.sliding_window.duration,
        step=their_segmentation.sliding_window.step,
    )
    from_their_clusters = diarization_from_clusters(
        their_segmentation.data,
        chunks,
        FrameScores(their_count.data, count.frames),
        their_clusters,
        min_speakers,
        max_speakers,
        ours.config.min_duration_off,
        binarized=their_binarized.data,
    )

    uri = recording.stem
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'uem' was approximated", category=UserWarning)
        der = float(metric(expected.speaker_diarization, annotation(diarization, uri)))
        exclusive_der = float(
            metric(expected.exclusive_speaker_diarization, annotation(diarization, uri, exclusive=True))
        )
    mine, their = diarization.speaker_embeddings, expected.speaker_embeddings
    speaker_cosine = None
    if mine.shape == their.shape and len(mine):
        # speakers with no centroid (more at once than clusters) are zero on both sides, or the cosine is NaN
        centroid = mine.any(axis=1) | their.any(axis=1)
        speaker_cosine = float(np.nan_to_num(cosine(mine[centroid], their[centroid]), nan=0.0).min(initial=1.0))
    truth = recording.with_suffix(".rttm")
    truth_errors: tuple[float | None, float | None] = (None, None)
    if truth.is_file():
        from pyannote.database.util import load_rttm

        (truth_annotation,) = load_rttm(str(truth)).values()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="'uem' was approximated", category=UserWarning)
            truth_errors = (
                float(metric(truth_annotation, annotation(diarization, uri))),
                float(metric(truth_annotation, expected.speaker_diarization)),
            )

    check = DiarizationCheck(
        recording=recording.name,
        duration=len(waveform) / rate,
        clustering=type(ours.clustering).__name__,
        windows=len(segmentation.binarized),
        segmentation_differing=int(np.sum(segmentation.binarized != their_binarized.data)),
        segmentation_values=segmentation.binarized.size,
        count_differing=int(np.sum(count.data != their_count.data)),
        count_frames=count.data.size,
        embeddings_compared=int(both.sum()),
        nan_embeddings_equal=bool(np.array_equal(np.isnan(embeddings), np.isnan(their_embeddings))),
        min_embedding_cosine=float(cosines.min()) if len(cosines) else 1.0,
        clusters_on_their_embeddings_equal=bool(np.array_equal(clusters.hard, their_clusters.hard)),
        partition_equal=same_partition(ours_steps["clusters"].hard, their_clusters.hard),
        reconstruction_on_their_clusters_equal=(
            from_their_clusters.to_rttm(uri) == rttm(expected.speaker_diarization)
            and from_their_clusters.to_rttm(uri, exclusive=True) == rttm(expected.exclusive_speaker_diarization)
        ),
        der_vs_pyannote=der,
        exclusive_der_vs_pyannote=exclusive_der,
        rttm_identical=diarization.to_rttm(uri) == rttm(expected.speaker_diarization),
        speakers=len(diarization.labels),
        reference_speakers=len(expected.speaker_diarization.labels()),
        min_speaker_embedding_cosine=speaker_cosine,
        der_vs_truth=truth_errors[0],
        reference_der_vs_truth=truth_errors[1],
        passed=False,
    )
    check.passed = passes(check, len(mine) == 0)
    return check


def their_binary_segmentation(theirs, segmentation):
    """pyannote's per-window speaker activity as its `apply` clusters it: a powerset model's as is, a multilabel
    model's thresholded by pyannote's own `binarize`."""
    from pyannote.audio.utils.signal import binarize

    if theirs._segmentation.model.specifications.powerset:
        return segmentation
    return binarize(segmentation, onset=theirs.segmentation.threshold, initial_state=False)


def passes(c: DiarizationCheck, no_speakers: bool) -> bool:
    return (
        c.segmentation_differing <= MAX_SEGMENTATION_DIFFERING * c.segmentation_values
        and c.count_differing <= MAX_COUNT_DIFFERING * c.count_frames
        and c.nan_embeddings_equal
        and c.min_embedding_cosine >= MIN_EMBEDDING_COSINE
        and c.clusters_on_their_embeddings_equal
        and c.partition_equal
        and c.reconstruction_on_their_clusters_equal
        and c.der_vs_pyannote <= MAX_DER
        and c.exclusive_der_vs_pyannote <= MAX_DER
        and c.speakers == c.reference_speakers
        and (no_speakers or (c.min_speaker_embedding_cosine or 0.0) >= MIN_EMBEDDING_COSINE)
    )


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (chunks, local speakers) cluster assignments are equal up to the clusters' names."""
    if a.shape != b.shape:
        return False
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def annotation(diarization: Diarization, uri: str, exclusive: bool = False):
    from pyannote.core import Annotation, Segment

    result = Annotation(uri=uri)
    for index, turn in enumerate(diarization.exclusive_turns if exclusive else diarization.turns):
        result[Segment(turn.start, turn.end), index] = turn.speaker
    return result


def rttm(annotation) -> str:
    text = io.StringIO()
    annotation.write_rttm(text)
    return text.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
