"""Audio input: files soundfile reads, or arrays; downmixed to mono and resampled, in blocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

BLOCK_SECONDS = 30.0  # how much audio is decoded at a time


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, too short, or holding NaN or Inf."""


@dataclass
class AudioSource:
    """Mono audio at `sample_rate`, produced block by block so that long files never sit in memory."""

    name: str
    sample_rate: int
    _blocks: Iterator[np.ndarray]

    def blocks(self) -> Iterator[np.ndarray]:
        return self._blocks


def open_audio(audio: str | Path | np.ndarray, sample_rate: int, *, source_rate: int | None = None) -> AudioSource:
    """A file path, or an array shaped (samples,) or (channels, samples) with its `source_rate`."""
    if isinstance(audio, (str, Path)):
        return _open_file(Path(audio), sample_rate)
    if source_rate is None:
        raise AudioError("an array needs its sample rate (source_rate=...)")
    return _open_array(np.asarray(audio), source_rate, sample_rate)


def _open_file(path: Path, sample_rate: int) -> AudioSource:
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        if not path.exists():
            raise AudioError(f"{path}: no such file") from None
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    if info.frames == 0:
        raise AudioError(f"{path}: the file holds no audio")

    def blocks() -> Iterator[np.ndarray]:
        resampler = (
            None
            if info.samplerate == sample_rate
            else soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32")
        )
        block_frames = int(BLOCK_SECONDS * info.samplerate)
        position = 0
        try:
            with soundfile.SoundFile(str(path)) as file:
                while True:
                    block = file.read(block_frames, dtype="float32", always_2d=True)
                    last = file.tell() >= info.frames or len(block) == 0
                    mono = _downmix(block, channel_axis=1)
                    _require_finite(mono, f"{path}", position, info.samplerate)
                    position += len(mono)
                    yield mono if resampler is None else resampler.resample_chunk(mono, last=last)
                    if last:
                        return
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{path}: cannot decode audio ({error})") from None

    return AudioSource(str(path), sample_rate, blocks())


def _open_array(array: np.ndarray, source_rate: int, sample_rate: int) -> AudioSource:
    if array.ndim not in (1, 2) or array.size == 0:
        raise AudioError(f"audio array shaped {array.shape}: expected a non-empty (samples,) or (channels, samples)")
    mono = (  # the caller's float32 samples are read in place, not copied
        _downmix(array.astype(np.float32, copy=False), channel_axis=0)
        if array.ndim == 2
        else array.astype(np.float32, copy=False)
    )
    _require_finite(mono, "audio array", 0, source_rate)
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate).astype(np.float32)
    block = int(BLOCK_SECONDS * sample_rate)
    return AudioSource("array", sample_rate, (mono[i : i + block] for i in range(0, len(mono), block)))


def _downmix(samples: np.ndarray, channel_axis: int) -> np.ndarray:
    """Average the channels, as pyannote.audio's Audio(mono="downmix") does."""
    return (
        samples.mean(axis=channel_axis, dtype=np.float32)
        if samples.shape[channel_axis] > 1
        else samples.take(0, axis=channel_axis)
    )


def _require_finite(samples: np.ndarray, name: str, first_sample: int, rate: int) -> None:
    if samples.size == 0 or (np.isfinite(samples.min()) and np.isfinite(samples.max())):
        return  # NaN reaches both extremes, +Inf the maximum, -Inf the minimum
    bad = np.flatnonzero(~np.isfinite(samples))
    if bad.size:
        raise AudioError(f"{name}: non-finite sample (NaN or Inf) at {(first_sample + bad[0]) / rate:.3f} s")
