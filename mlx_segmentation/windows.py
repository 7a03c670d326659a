"""A sliding-window engine, as pyannote.audio's `Inference.slide` and `Inference.aggregate` do it.

`SlidingWindows` says where windows sit; `slide` cuts a recording into batches of windows, runs a
forward pass on each and yields the outputs batch by batch, keeping the device one batch ahead of
the host; `OverlapAdd` aggregates per-window outputs into per-frame scores, one batch at a time.
A client that wants per-window outputs iterates `slide` and keeps what it needs; nothing is kept
for it. Memory does not grow with the number of windows (only `OverlapAdd`'s per-frame rows do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from .config import Specifications
from .timeline import SlidingWindow

EPSILON = 1e-12  # Inference.aggregate's


def default_step(spec: Specifications) -> float:
    """pyannote's default step between windows: the left warm-up if there is one, else 10% of the window."""
    return 0.1 * spec.duration if spec.warm_up[0] == 0.0 else spec.warm_up[0]


def expected_windows(duration: float, window: float, step: float, sample_rate: int = 16000) -> int:
    """How many windows `window_batches` (as `Inference.slide`) cuts from `duration` seconds: full windows every
    `step`, then a zero-padded one unless the recording ends exactly on the last full window."""
    total, window_size = round(duration * sample_rate), round(window * sample_rate)
    step_size = max(1, round(step * sample_rate))  # a step of no sample is refused by the engine, not here
    full = 0 if total < window_size else (total - window_size) // step_size + 1
    return full + (total < window_size or (total - window_size) % step_size > 0)


@dataclass
class WindowBatch:
    """Consecutive windows as one span of audio: window i is span[i * step : i * step + window]."""

    span: np.ndarray
    count: int
    total: int  # samples of the recording read so far (its length, once the last batch is out)
    padding: int = 0  # zeros after the recording's end (only in the last, padded window)


@dataclass(frozen=True)
class SlidingWindows:
    """Windows of `window_size` samples every `step_size` samples; `chunks` places them in seconds."""

    window_size: int
    step_size: int
    chunks: SlidingWindow

    @classmethod
    def of(cls, duration: float, step: float, sample_rate: int) -> SlidingWindows:
        """Windows of `duration` seconds every `step` seconds, refusing a step outside (0, duration]."""
        if not 0 < step <= duration:
            raise ValueError(f"step must be in (0, {duration:g}] seconds, got {step:g}")
        step_size = round(step * sample_rate)
        if step_size < 1:
            raise ValueError(f"step must be at least one sample (1/{sample_rate} s), got {step:g} s")
        return cls(round(duration * sample_rate), step_size, SlidingWindow(start=0.0, duration=duration, step=step))

    def batches(self, blocks: Iterator[np.ndarray], batch_size: int) -> Iterator[WindowBatch]:
        """The recording's windows, `batch_size` at a time (see `window_batches`)."""
        return window_batches(blocks, self.window_size, self.step_size, batch_size)

    def windows(self, batch: WindowBatch) -> mx.array:
        """The batch's windows, (count, window_size), on the device."""
        return windows(batch, self.window_size, self.step_size)


def window_batches(
    blocks: Iterator[np.ndarray], window_size: int, step_size: int, batch_size: int
) -> Iterator[WindowBatch]:
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
    waiting: list[np.ndarray] = []  # blocks read since `buffer` was last joined: joined once a batch is complete

    def take(count: int, pad: int = 0) -> WindowBatch:
        offset = next_start - buffer_start
        span = buffer[offset : offset + (count - 1) * step_size + window_size - pad]
        return WindowBatch(np.pad(span, (0, pad)) if pad else span, count, total, pad)

    def batch_end() -> int:
        return next_start + (batch_size - 1) * step_size + window_size

    for block in blocks:
        waiting.append(block.astype(np.float32, copy=False))
        total += len(block)
        if batch_end() > total:
            continue
        buffer = np.concatenate([buffer, *waiting])
        waiting.clear()
        while batch_end() <= total:
            yield take(batch_size)
            next_start += batch_size * step_size
        keep_from = next_start - buffer_start
        if keep_from > 0:
            buffer = buffer[keep_from:]
            buffer_start = next_start
    buffer = np.concatenate([buffer, *waiting])
    full = 0 if total < next_start + window_size else (total - next_start - window_size) // step_size + 1
    if full:
        yield take(full)
        next_start += full * step_size
    if total < window_size or (total - window_size) % step_size > 0:
        yield take(1, pad=window_size - (total - next_start))


def windows(batch: WindowBatch, window_size: int, step_size: int) -> mx.array:
    """The batch's windows, (count, window_size), as a view of its span on the device."""
    return mx.as_strided(mx.array(batch.span), (batch.count, window_size), (step_size, 1))


def slide(
    sliding: SlidingWindows, blocks: Iterator[np.ndarray], forward: Callable[[WindowBatch], Any], batch_size: int
) -> Iterator[tuple[WindowBatch, np.ndarray]]:
    """(batch, its outputs as numpy) for each batch of windows, in order.

    `forward(batch)` returns the batch's outputs, (count, ...), as an `mx.array` (evaluated here
    asynchronously) or anything `np.asarray` reads. The next batch's forward is started before a
    batch's outputs are read and handed over, so the device runs batch i + 1 while the host handles batch i.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    pending = None
    for batch in sliding.batches(blocks, batch_size):
        outputs = forward(batch)
        if isinstance(outputs, mx.array):
            mx.async_eval(outputs)
        if pending is not None:
            yield pending[0], np.asarray(pending[1])
        pending = batch, outputs
    if pending is not None:
        yield pending[0], np.asarray(pending[1])


class OverlapAdd:
    """`Inference.aggregate`, fed batch by batch: weighted float32 sums of the windows' frames, then their average.

    Windows are those of `chunks`, added in order from the first; each holds `frames_per_window`
    frames of `num_columns` values, placed on `frames`' grid (re-started at `chunks.start`).
    """

    def __init__(
        self,
        chunks: SlidingWindow,
        frames: SlidingWindow,
        frames_per_window: int,
        num_columns: int,
        *,
        hamming: bool = False,
        warm_up: tuple[float, float] = (0.0, 0.0),
    ):
        self.chunks = chunks
        self.frames = SlidingWindow(start=chunks.start, duration=frames.duration, step=frames.step)
        self.frames_per_window = frames_per_window
        self.num_columns = num_columns
        self.weights = np.hamming(frames_per_window).reshape(-1, 1) if hamming else np.ones((frames_per_window, 1))
        self.warm_up = np.ones((frames_per_window, 1))
        left = round(warm_up[0] / chunks.duration * frames_per_window)
        right = round(warm_up[1] / chunks.duration * frames_per_window)
        self.warm_up[:left] = EPSILON
        self.warm_up[frames_per_window - right :] = EPSILON
        self.sums = np.zeros((0, num_columns), dtype=np.float32)
        self.counts = np.zeros((0, num_columns), dtype=np.float32)
        self.covered = np.zeros((0, num_columns), dtype=np.float32)  # 1 where a window had a value (not NaN)
        self.num_windows = 0

    def add(self, window_outputs: np.ndarray) -> None:
        """Overlap-add the next windows' outputs, (windows, frames_per_window, num_columns); NaN counts as missing."""
        if window_outputs.ndim != 3 or window_outputs.shape[1:] != (self.frames_per_window, self.num_columns):
            expected = f"(windows, {self.frames_per_window}, {self.num_columns})"
            raise ValueError(f"expected window outputs shaped {expected}, got {window_outputs.shape}")
        # The products of the whole batch at once, element by element as pyannote computes them per window.
        masks = 1 - np.isnan(window_outputs)
        values = np.nan_to_num(window_outputs, nan=0.0) * masks * self.weights * self.warm_up
        weights = masks * self.weights * self.warm_up
        for value, weight, mask in zip(values, weights, masks, strict=True):
            first = self.frames.closest_frame(self.chunks.window_start(self.num_windows) + 0.5 * self.frames.duration)
            last = first + len(value)
            self._grow(last)
            self.sums[first:last] += value
            self.counts[first:last] += weight
            self.covered[first:last] = np.maximum(self.covered[first:last], mask)
            self.num_windows += 1

    def result(self, missing: float = np.nan, end: float | None = None, *, skip_average: bool = False) -> np.ndarray:
        """(frames, num_columns) averages (sums if `skip_average`), `missing` where no window had a value; frames
        after `end` seconds (a padded last window's zeros) cropped as `SlidingWindowFeature.crop(Segment(0, end),
        mode="loose")`."""
        chunks = self.chunks
        last_end = chunks.start + chunks.duration + (self.num_windows - 1) * chunks.step + 0.5 * self.frames.duration
        num_frames = self.frames.closest_frame(last_end) + 1
        self._grow(num_frames)
        if skip_average:
            average = self.sums[:num_frames].copy()
        else:
            average = self.sums[:num_frames] / np.maximum(self.counts[:num_frames], EPSILON)
        average[self.covered[:num_frames] == 0.0] = missing
        if end is not None:
            keep = int(np.floor((end - self.frames.start) / self.frames.step)) + 1
            average = average[: min(keep, len(average))]
        return average

    def _grow(self, size: int) -> None:
        if size > len(self.sums):
            extra = np.zeros((max(size, 2 * len(self.sums)) - len(self.sums), self.num_columns), np.float32)
            self.sums, self.counts, self.covered = (
                np.concatenate([a, extra]) for a in (self.sums, self.counts, self.covered)
            )
