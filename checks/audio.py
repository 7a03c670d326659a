"""Real speech for the checks: the sample recording that ships with pyannote.audio."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

import numpy as np
import soundfile


def sample_wav() -> Path:
    """pyannote.audio's `sample/sample.wav`: 30 s of two speakers, 16 kHz mono.

    Where pyannote.audio is not installed (a GPU machine, say), PYANNOTE_SAMPLE_WAV names a copy.
    """
    if "PYANNOTE_SAMPLE_WAV" in os.environ:
        return Path(os.environ["PYANNOTE_SAMPLE_WAV"])
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


def long_recording(seconds: float = 600.0, seed: int = 0) -> np.ndarray:
    """A recording of real speech at least `seconds` long, 16 kHz mono, made from sample.wav.

    Excerpts of 4 to 20 s at random offsets, each at a random gain (0.3 to 1.5), separated by pauses
    of 0.2 to 3 s of faint noise, like turns in a meeting. Seeded, so every run builds the same one.
    """
    speech, rate = read_mono(sample_wav())
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * rate:
        length = int(rng.uniform(4, 20) * rate)
        start = int(rng.integers(0, len(speech) - length))
        pause = int(rng.uniform(0.2, 3.0) * rate)
        pieces += [speech[start : start + length] * np.float32(rng.uniform(0.3, 1.5)), rng.normal(0, 1e-3, pause).astype(np.float32)]
        total += length + pause
    return np.concatenate(pieces).astype(np.float32)
