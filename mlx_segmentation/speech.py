"""Speech detection on whole recordings: pyannote.audio's `VoiceActivityDetection`, in MLX."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from .audio import open_audio
from .binarize import BinarizeParams, binarize, default_speech_params
from .inference import Segmentation, segment
from .pyannet import PyanNet
from .timeline import Region


@dataclass
class SpeechDetection:
    regions: list[Region]
    segmentation: Segmentation
    params: BinarizeParams

    def write_rttm(self, file: TextIO, uri: str) -> None:
        """One `SPEAKER` line per speech region, labelled SPEECH, as pyannote writes RTTM."""
        for region in self.regions:
            file.write(f"SPEAKER {uri} 1 {region.start:.3f} {region.duration:.3f} <NA> <NA> SPEECH <NA> <NA>\n")

    def save_scores(self, path: Path) -> None:
        """`data` (frames x 1, the aggregated speech score) and the frames' `start`, `step`, `duration`."""
        frames = self.segmentation.frames
        np.savez(path, data=self.segmentation.speech, start=frames.start, step=frames.step, duration=frames.duration)


def detect_speech(
    model: PyanNet,
    audio: str | Path | np.ndarray,
    *,
    sample_rate: int | None = None,
    params: BinarizeParams | None = None,
    step: float | None = None,
    batch_size: int = 32,
    keep_window_scores: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SpeechDetection:
    """Speech regions of a file (any format soundfile reads, any rate) or an array (with `sample_rate`)."""
    source = open_audio(audio, model.config.sample_rate, source_rate=sample_rate)
    segmentation = segment(
        model, source, step=step, batch_size=batch_size, keep_window_scores=keep_window_scores, progress=progress
    )
    params = params or default_speech_params(model.specifications)
    return SpeechDetection(binarize(segmentation.speech[:, 0], segmentation.frames, params), segmentation, params)
