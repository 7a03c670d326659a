"""Real speech for the checks: the sample recording that ships with pyannote.audio."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import soundfile


def sample_wav() -> Path:
    """pyannote.audio's `sample/sample.wav`: 30 s of two speakers, 16 kHz mono."""
    return Path(str(files("pyannote.audio") / "sample" / "sample.wav"))


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    return samples.mean(axis=1), sample_rate


def speech_chunks(duration: float, sample_rate: int) -> np.ndarray:
    """Consecutive, non-overlapping windows of `duration` seconds of sample.wav: (chunks, samples)."""
    samples, rate = read_mono(sample_wav())
    if rate != sample_rate:
        raise ValueError(f"sample.wav is {rate} Hz, the model expects {sample_rate} Hz")
    size = int(round(duration * sample_rate))
    count = len(samples) // size
    return samples[: count * size].reshape(count, size)
