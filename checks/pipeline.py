"""Pipeline parity: our whole-recording speech detection against pyannote.audio's VoiceActivityDetection."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from mlx_segmentation.binarize import BinarizeParams
from mlx_segmentation.pyannet import PyanNet
from mlx_segmentation.speech import detect_speech
from mlx_segmentation.timeline import Region

from .reference import as_float64_on_float32_inputs

# Gates of the whole-recording issue.
MAX_SCORE_DIFF = 2e-3  # the reference's own float32 rounding reaches 1.6e-3 on some inputs
MAX_DETECTION_ERROR = 0.005
# Powerset pipelines aggregate hard decisions: where a window's top two classes are within float32
# noise, pyannote's own float32 pipeline flips them and moves the aggregated score by a whole
# window's weight (0.18 on the 10-minute test recording). So the scores are also compared with
# pyannote in float64, and the gate is max(MAX_SCORE_DIFF, 2 x pyannote float32's own error).


class PipelineCheck(BaseModel):
    recording: str
    duration: float  # seconds
    params: BinarizeParams
    frames: int
    max_abs_score_diff: float  # aggregated speech scores, ours against pyannote's (float32)
    max_abs_score_diff_vs_float64: float  # ours against pyannote's pipeline run in float64
    reference_score_error: float  # pyannote float32's own aggregated scores against its float64 ones
    score_tolerance: float  # max(MAX_SCORE_DIFF, 2 x reference_score_error), on the float64 comparison
    detection_error_vs_pyannote: float  # pyannote.metrics DetectionErrorRate, pyannote's regions as reference
    regions: int
    reference_regions: int
    detection_error_vs_truth: float | None = None  # ours against the recording's RTTM, when it has one
    reference_detection_error_vs_truth: float | None = None  # pyannote's against the same RTTM
    passed: bool


def annotation(regions: list[Region], uri: str):
    from pyannote.core import Annotation, Segment

    result = Annotation(uri=uri)
    for region in regions:
        result[Segment(region.start, region.end)] = "SPEECH"
    return result


def speech_truth(rttm: Path):
    """All speakers of an RTTM file, merged into one SPEECH label."""
    from pyannote.database.util import load_rttm

    (truth,) = load_rttm(str(rttm)).values()
    return truth.rename_labels({label: "SPEECH" for label in truth.labels()})


def pyannote_speech(
    reference_model,
    waveform: np.ndarray,
    sample_rate: int,
    params: BinarizeParams,
    uri: str,
    batch_size: int | None = None,
):
    """pyannote.audio's VoiceActivityDetection on an in-memory waveform: (aggregated scores, regions), at
    `batch_size` windows per forward (default: pyannote's own, 32)."""
    import torch
    from pyannote.audio.pipelines import VoiceActivityDetection

    batch = {} if batch_size is None else {"batch_size": batch_size}
    pipeline = VoiceActivityDetection(segmentation=reference_model, **batch)
    hyper = {"min_duration_on": params.min_duration_on, "min_duration_off": params.min_duration_off}
    if not reference_model.specifications.powerset:  # powerset pipelines fix onset = offset = 0.5
        hyper |= {"onset": params.onset, "offset": params.offset}
    pipeline.instantiate(hyper)
    file = {"waveform": torch.from_numpy(waveform)[None], "sample_rate": sample_rate, "uri": uri}
    scores = pipeline._segmentation(file)
    return scores.data, pipeline(file)


def detection_error(reference, hypothesis) -> float:
    """pyannote.metrics' DetectionErrorRate (no collar, overlap scored) over the union of both annotations'
    extents: what it does without a uem, saying so in a warning that is silenced here."""
    from pyannote.metrics.detection import DetectionErrorRate

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'uem' was approximated", category=UserWarning)
        return float(DetectionErrorRate(collar=0.0, skip_overlap=False)(reference, hypothesis))


def pipeline_check(
    model: PyanNet,
    reference_model,
    waveform: np.ndarray,
    name: str,
    params: BinarizeParams,
    truth_rttm: Path | None = None,
) -> PipelineCheck:
    """Both pipelines on the same 16 kHz mono waveform with the same parameters."""
    sample_rate = model.config.sample_rate
    ours = detect_speech(model, waveform, sample_rate=sample_rate, params=params)
    their_scores, their_speech = pyannote_speech(reference_model, waveform, sample_rate, params, name)
    scores_64, _ = pyannote_speech(as_float64_on_float32_inputs(reference_model), waveform, sample_rate, params, name)
    our_speech = annotation(ours.regions, name)
    if not their_scores.shape == scores_64.shape == ours.segmentation.speech.shape:
        raise ValueError(
            f"{name}: aggregated scores shaped {ours.segmentation.speech.shape}, pyannote's {their_scores.shape}"
        )
    score_diff = float(np.abs(their_scores - ours.segmentation.speech).max())
    score_diff_64 = float(np.abs(scores_64 - ours.segmentation.speech).max())
    reference_error = float(np.abs(scores_64 - their_scores).max())
    tolerance = max(MAX_SCORE_DIFF, 2 * reference_error)
    error = detection_error(their_speech, our_speech)
    truth_errors: tuple[float | None, float | None] = (None, None)
    if truth_rttm is not None:
        truth = speech_truth(truth_rttm)
        truth_errors = (detection_error(truth, our_speech), detection_error(truth, their_speech))
    regions, reference_regions = len(ours.regions), len(list(their_speech.itersegments()))
    return PipelineCheck(
        recording=name,
        duration=len(waveform) / sample_rate,
        params=params,
        frames=len(ours.segmentation.speech),
        max_abs_score_diff=score_diff,
        max_abs_score_diff_vs_float64=score_diff_64,
        reference_score_error=reference_error,
        score_tolerance=tolerance,
        detection_error_vs_pyannote=error,
        regions=regions,
        reference_regions=reference_regions,
        detection_error_vs_truth=truth_errors[0],
        reference_detection_error_vs_truth=truth_errors[1],
        passed=score_diff_64 <= tolerance and error <= MAX_DETECTION_ERROR and regions == reference_regions,
    )
