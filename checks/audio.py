"""Real speech for the checks: the sample recording that ships with pyannote.audio, and stretches of it."""

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
        pieces += [
            speech[start : start + length] * np.float32(rng.uniform(0.3, 1.5)),
            rng.normal(0, 1e-3, pause).astype(np.float32),
        ]
        total += length + pause
    return np.concatenate(pieces).astype(np.float32)


def speech_segments(seconds: float, count: int) -> np.ndarray:
    """`count` stretches of sample.wav of `seconds` each, evenly spread."""
    waveform, sample_rate = read_mono(sample_wav())
    size = int(seconds * sample_rate)
    starts = np.linspace(0, len(waveform) - size, count).astype(int)
    return np.stack([waveform[s : s + size] for s in starts]).astype(np.float32)


def single_speaker_segments(seconds: float, per_speaker: int) -> tuple[np.ndarray, list[str]]:
    """Segments of sample.wav where sample.rttm has exactly one speaker, `per_speaker` per speaker."""
    waveform, sample_rate = read_mono(sample_wav())
    turns = []
    for line in sample_wav().with_suffix(".rttm").read_text().splitlines():
        fields = line.split()
        turns.append((float(fields[3]), float(fields[3]) + float(fields[4]), fields[7]))
    chosen, labels = [], []
    for speaker in sorted({t[2] for t in turns}):
        found = 0
        others = [(s, e) for s, e, w in turns if w != speaker]
        for start, end, who in sorted(turns):
            t = start
            while who == speaker and t + seconds <= end and found < per_speaker:
                if all(e <= t or s >= t + seconds for s, e in others):
                    begin = int(round(t * sample_rate))
                    chosen.append(waveform[begin : begin + int(seconds * sample_rate)])
                    labels.append(f"{speaker} {t:.2f}-{t + seconds:.2f}")
                    found += 1
                    t += seconds
                else:
                    t += 0.1
    return np.stack(chosen).astype(np.float32), labels
