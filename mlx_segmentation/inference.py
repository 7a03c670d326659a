"""Sliding-window inference over whole recordings, as pyannote.audio's `Inference` does it.

Windows of the model's duration every `step` seconds (10% of the duration by default), the last one
zero-padded; powerset outputs decoded to per-speaker activity; per window the max over speakers;
overlap-add with a Hamming window (`Inference.aggregate(hamming=True, missing=0.0)`); the padding
cropped. Windows are produced and aggregated batch by batch, so memory does not grow with the
number of windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .audio import AudioError, AudioSource
from .pyannet import PyanNet
from .timeline import SlidingWindow

EPSILON = 1e-12  # Inference.aggregate's


@dataclass
class Segmentation:
    """Aggregated speech scores, plus (on request) the raw per-window, per-speaker activity."""

    speech: np.ndarray  # (frames, 1): aggregated speech score
    frames: SlidingWindow  # where each row of `speech` sits in time
    windows: SlidingWindow  # where each analysis window sits in time
    num_samples: int  # length of the (resampled, mono) recording
    window_scores: np.ndarray | None = None  # (windows, frames per window, speakers); local speaker identities


def to_multilabel(outputs: np.ndarray, model: PyanNet) -> np.ndarray:
    """Per-speaker activity from model outputs; powerset log-probabilities are decoded as pyannote's
    `Powerset.to_multilabel(soft=False)`: the argmax class, as the speakers it contains."""
    spec = model.specifications
    if not spec.powerset:
        return outputs
    return spec.powerset_mapping()[outputs.argmax(axis=-1)]


@dataclass
class WindowBatch:
    """Consecutive windows as one span of audio: window i is span[i * step : i * step + window]."""

    span: np.ndarray
    count: int
    total: int  # samples of the recording read so far (its length, once the last batch is out)
    padding: int = 0  # zeros after the recording's end (only in the last, padded window)


def window_batches(blocks: Iterator[np.ndarray], window_size: int, step_size: int, batch_size: int) -> Iterator[WindowBatch]:
    """Batches of windows, cut as `Inference.slide` cuts them.

    Full windows start every `step_size` samples; if the recording does not end exactly on the last
    full window (or is shorter than one window), a last window starts after the last full window's
    start and is zero-padded. Windows overlap, so a batch travels as the one span of audio that
    covers it (10 times less data than the windows themselves at the default step), and only the
    audio that later windows still need is kept.
    """
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # absolute index of buffer[0]
    next_start = 0  # absolute start of the next window
    total = 0

    def take(count: int, pad: int = 0) -> WindowBatch:
        offset = next_start - buffer_start
        span = buffer[offset : offset + (count - 1) * step_size + window_size - pad]
        return WindowBatch(np.pad(span, (0, pad)) if pad else span.copy(), count, total, pad)

    for block in blocks:
        buffer = np.concatenate([buffer, block.astype(np.float32, copy=False)])
        total += len(block)
        while next_start + (batch_size - 1) * step_size + window_size <= total:
            yield take(batch_size)
            next_start += batch_size * step_size
        keep_from = next_start - buffer_start
        if keep_from > 0:
            buffer = buffer[keep_from:]
            buffer_start = next_start
    full = 0 if total < next_start + window_size else (total - next_start - window_size) // step_size + 1
    if full:
        yield take(full)
        next_start += full * step_size
    if total < window_size or (total - window_size) % step_size > 0:
        yield take(1, pad=window_size - (total - next_start))


def windows(batch: WindowBatch, window_size: int, step_size: int) -> mx.array:
    """The batch's windows, (count, window_size), as a view of its span on the device."""
    return mx.as_strided(mx.array(batch.span), (batch.count, window_size), (step_size, 1))


class Aggregator:
    """`Inference.aggregate` with a Hamming window, fed one window at a time (float32 sums, as pyannote)."""

    def __init__(self, frames_per_window: int, chunks: SlidingWindow, frames: SlidingWindow, warm_up: tuple[float, float]):
        self.chunks = chunks
        self.frames = SlidingWindow(start=chunks.start, duration=frames.duration, step=frames.step)
        self.weights = np.hamming(frames_per_window).reshape(-1, 1)
        self.warm_up = np.ones((frames_per_window, 1))
        left = round(warm_up[0] / chunks.duration * frames_per_window)
        right = round(warm_up[1] / chunks.duration * frames_per_window)
        self.warm_up[:left] = EPSILON
        self.warm_up[frames_per_window - right :] = EPSILON
        self.sums = np.zeros((0, 1), dtype=np.float32)
        self.counts = np.zeros((0, 1), dtype=np.float32)
        self.covered = np.zeros((0, 1), dtype=np.float32)
        self.num_chunks = 0

    def add(self, scores: np.ndarray) -> None:
        """Overlap-add the next window's (frames, 1) scores."""
        chunk_start = self.chunks.window_start(self.num_chunks)
        first = self.frames.closest_frame(chunk_start + 0.5 * self.frames.duration)
        last = first + len(scores)
        self._grow(last)
        mask = 1 - np.isnan(scores)
        scores = np.nan_to_num(scores, nan=0.0)
        self.sums[first:last] += scores * mask * self.weights * self.warm_up
        self.counts[first:last] += mask * self.weights * self.warm_up
        self.covered[first:last] = np.maximum(self.covered[first:last], mask)
        self.num_chunks += 1

    def result(self, missing: float = 0.0) -> np.ndarray:
        chunks = self.chunks
        end = chunks.start + chunks.duration + (self.num_chunks - 1) * chunks.step + 0.5 * self.frames.duration
        num_frames = self.frames.closest_frame(end) + 1
        self._grow(num_frames)
        average = self.sums[:num_frames] / np.maximum(self.counts[:num_frames], EPSILON)
        average[self.covered[:num_frames] == 0.0] = missing
        return average

    def _grow(self, size: int) -> None:
        if size > len(self.sums):
            extra = max(size, 2 * len(self.sums)) - len(self.sums)
            self.sums, self.counts, self.covered = (np.concatenate([a, np.zeros((extra, 1), np.float32)]) for a in (self.sums, self.counts, self.covered))


def segment(
    model: PyanNet,
    audio: AudioSource,
    *,
    step: float | None = None,
    batch_size: int = 32,
    keep_window_scores: bool = False,
    progress: Callable[[int], None] | None = None,
    forward: Callable[[WindowBatch, int, int], np.ndarray | mx.array] | None = None,
) -> Segmentation:
    """Run `model` over the whole recording and aggregate its speech scores.

    `forward(batch, window_size, step_size)` -> (windows, frames, classes) replaces the MLX model's
    forward pass, so that a benchmark can put another framework's model in the same pipeline. The
    MLX forward is evaluated asynchronously: the host aggregates one batch while the device runs the next.
    """
    spec = model.specifications
    duration = spec.duration
    step = step if step is not None else (0.1 * duration if spec.warm_up[0] == 0.0 else spec.warm_up[0])
    if not 0 < step <= duration:
        raise ValueError(f"step must be in (0, {duration:g}] seconds, got {step:g}")
    if audio.sample_rate != model.config.sample_rate:
        raise ValueError(f"audio at {audio.sample_rate} Hz, the model expects {model.config.sample_rate} Hz")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    window_size = round(duration * audio.sample_rate)
    step_size = round(step * audio.sample_rate)
    if step_size < 1:
        raise ValueError(f"step must be at least one sample (1/{audio.sample_rate} s), got {step:g} s")
    chunks = SlidingWindow(start=0.0, duration=duration, step=step)
    frames = SlidingWindow(start=model.frames.start, duration=model.frames.duration, step=model.frames.step)
    aggregator = Aggregator(model.num_frames(window_size), chunks, frames, spec.warm_up)
    kept: list[np.ndarray] = []

    def mlx_forward(batch: WindowBatch, window_size: int, step_size: int) -> mx.array:
        outputs = model(windows(batch, window_size, step_size)).astype(mx.float32)
        mx.async_eval(outputs)
        return outputs

    def aggregate(batch: WindowBatch, outputs: np.ndarray | mx.array) -> None:
        speakers = to_multilabel(np.asarray(outputs), model)
        if keep_window_scores:
            kept.append(speakers)
        for window_speakers in speakers:
            aggregator.add(window_speakers.max(axis=-1, keepdims=True))
        if progress is not None:
            progress(batch.count)

    forward = forward or mlx_forward
    total, padded = 0, False
    pending = None  # the previous batch: its windows are aggregated while the device runs this one
    for batch in window_batches(audio.blocks(), window_size, step_size, batch_size):
        outputs = forward(batch, window_size, step_size)
        if pending is not None:
            aggregate(*pending)
        pending = batch, outputs
        total, padded = batch.total, padded or batch.padding > 0
    if pending is not None:
        aggregate(*pending)
    if total == 0:
        raise AudioError(f"{audio.name}: no audio")
    if total < model.frames.min_num_samples:
        raise AudioError(f"{audio.name}: {total} samples is shorter than the model's minimum of {model.frames.min_num_samples}")

    speech = aggregator.result(missing=0.0)
    if padded:  # crop the padding: SlidingWindowFeature.crop(Segment(0, duration), mode="loose")
        keep = int(np.floor((total / audio.sample_rate - aggregator.frames.start) / aggregator.frames.step)) + 1
        speech = speech[: min(keep, len(speech))]
    return Segmentation(
        speech=speech,
        frames=aggregator.frames,
        windows=chunks,
        num_samples=total,
        window_scores=np.concatenate(kept) if keep_window_scores else None,
    )
