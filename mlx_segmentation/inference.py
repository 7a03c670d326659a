"""Sliding-window inference of a segmentation model over whole recordings, as pyannote.audio's `Inference`.

Windows of the model's duration every `step` seconds (pyannote's `default_step` unless given), the
last one zero-padded; powerset outputs decoded to per-speaker activity. `window_outputs` streams
those per-window, per-speaker outputs; `segment` is speech detection's client of the engine
(`windows.py`): per window the max over speakers (pyannote's `pre_aggregation_hook`), overlap-added
with a Hamming window (`Inference.aggregate(hamming=True, missing=0.0)`), the padding cropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import mlx.core as mx
import numpy as np

from .audio import AudioError, AudioSource
from .columns import reduce_columns
from .config import Specifications
from .parts import Parts
from .pyannet import PyanNet
from .timeline import SlidingWindow
from .windows import OverlapAdd, SlidingWindows, WindowBatch, default_step, slide

# One `Parts` for all batches, with PARTS_AHEAD_WINDOWS // batch_size parts in flight (at least one), so that
# the device runs ahead while the previous batch is handled here. An hour of segmentation-3.0 on an H100
# (benchmarks/results/h100_parts_ahead.log) at batch 32: 1.46 to 1.57 s and 628 MiB with one part in flight,
# 1.19 to 1.20 s and 870 MiB with four, 1.17 to 1.20 s and 1,051 MiB with eight; at batch 1024, 1.05 s with
# one (3,277 MiB) as with four (5,765 MiB).
PARTS_AHEAD_WINDOWS = 128


def parts_ahead(batch_size: int) -> int:
    """Parts in flight for forwards of `batch_size` windows (see PARTS_AHEAD_WINDOWS)."""
    return max(1, PARTS_AHEAD_WINDOWS // batch_size)


# forward(batch, window_size, step_size) -> the batch's (windows, frames, classes) outputs, as an mx.array or
# anything np.asarray reads: another framework's model in the same pipeline (benchmarks/speed.py)
Forward = Callable[[WindowBatch, int, int], Any]


@dataclass
class Segmentation:
    """Aggregated speech scores, plus (on request) the raw per-window, per-speaker activity."""

    speech: np.ndarray  # (frames, 1): aggregated speech score
    frames: SlidingWindow  # where each row of `speech` sits in time
    num_samples: int  # length of the (resampled, mono) recording
    window_scores: np.ndarray | None = None  # (windows, frames per window, speakers); local speaker identities


def to_multilabel(outputs: np.ndarray, model: PyanNet) -> np.ndarray:
    """Per-speaker activity from model outputs; powerset log-probabilities are decoded as pyannote's
    `Powerset.to_multilabel(soft=False)`: the argmax class, as the speakers it contains."""
    spec = model.specifications
    if not spec.powerset:
        return outputs
    return spec.powerset_mapping()[outputs.argmax(axis=-1)]


def to_multilabel_on_device(outputs: mx.array, model: PyanNet) -> mx.array:
    """`to_multilabel` where the outputs are: the argmax (ties to the first class, as numpy's) and the
    mapping on the device, so that only the per-speaker activity reaches the host."""
    spec = model.specifications
    if not spec.powerset:
        return outputs
    return powerset_mapping_on_device(spec.model_dump_json())[mx.argmax(outputs, axis=-1)]


@lru_cache(maxsize=16)
def powerset_mapping_on_device(specifications: str) -> mx.array:
    """`powerset_mapping()` of these `Specifications` (as JSON) in an array made once, so that it moves to the GPU
    once, not at every batch (as `kernel_arguments`)."""
    array = mx.array(Specifications.model_validate_json(specifications).powerset_mapping())
    mx.eval(array)
    return array


def any_speaker(speakers: np.ndarray) -> np.ndarray:
    """(windows, frames, 1): the max over the speakers' activity."""
    return reduce_columns(np.maximum, speakers)


def model_windows(model: PyanNet, audio: AudioSource, step: float | None = None) -> SlidingWindows:
    """The model's windows over `audio`, every `step` seconds (pyannote's default step if None)."""
    spec = model.specifications
    sliding = SlidingWindows.of(spec.duration, default_step(spec) if step is None else step, audio.sample_rate)
    if audio.sample_rate != model.config.sample_rate:
        raise ValueError(f"audio at {audio.sample_rate} Hz, the model expects {model.config.sample_rate} Hz")
    return sliding


def window_outputs(
    model: PyanNet, audio: AudioSource, sliding: SlidingWindows, *, batch_size: int = 32, forward: Forward | None = None
) -> Iterator[tuple[WindowBatch, np.ndarray]]:
    """(batch, its per-speaker activity (count, frames, speakers)) for each batch of windows; nothing is kept.

    The MLX forward runs on the device while the caller handles the previous batch; `forward`
    replaces it (see `Forward`). Audio too short for the model is refused before its window is handed over.
    """

    parts = Parts(ahead=parts_ahead(batch_size))

    def mlx_forward(batch: WindowBatch) -> mx.array:
        return to_multilabel_on_device(model(sliding.windows(batch), parts=parts).astype(mx.float32), model)

    def other_forward(batch: WindowBatch) -> Any:
        return forward(batch, sliding.window_size, sliding.step_size)

    for batch, outputs in slide(sliding, audio.blocks(), mlx_forward if forward is None else other_forward, batch_size):
        if batch.padding:  # the last batch: the recording's length is known
            check_length(model, audio, batch.total)
        yield batch, outputs if forward is None else to_multilabel(outputs, model)


def check_length(model: PyanNet, audio: AudioSource, num_samples: int) -> None:
    """Refuse a recording with no audio, or shorter than the model accepts."""
    if num_samples == 0:
        raise AudioError(f"{audio.name}: no audio")
    if num_samples < model.frames.min_num_samples:
        minimum = model.frames.min_num_samples
        raise AudioError(f"{audio.name}: {num_samples} samples is shorter than the model's minimum of {minimum}")


def segment(
    model: PyanNet,
    audio: AudioSource,
    *,
    step: float | None = None,
    batch_size: int = 32,
    keep_window_scores: bool = False,
    progress: Callable[[int], None] | None = None,
    forward: Forward | None = None,
) -> Segmentation:
    """Run `model` over the whole recording and aggregate its speech scores (`forward`: see `window_outputs`)."""
    sliding = model_windows(model, audio, step)
    frames = SlidingWindow(start=model.frames.start, duration=model.frames.duration, step=model.frames.step)
    frames_per_window, warm_up = model.num_frames(sliding.window_size), model.specifications.warm_up
    speech = OverlapAdd(sliding.chunks, frames, frames_per_window, num_columns=1, hamming=True, warm_up=warm_up)
    kept: list[np.ndarray] = []
    num_samples, end = 0, None
    for batch, speakers in window_outputs(model, audio, sliding, batch_size=batch_size, forward=forward):
        if keep_window_scores:
            kept.append(speakers)
        speech.add(any_speaker(speakers))  # pre-aggregation: speech is any speaker's activity
        if progress is not None:
            progress(batch.count)
        num_samples = batch.total
        end = num_samples / audio.sample_rate if batch.padding else None
    return Segmentation(
        speech=speech.result(missing=0.0, end=end),
        frames=speech.frames,
        num_samples=num_samples,
        window_scores=np.concatenate(kept) if keep_window_scores else None,
    )
