"""Peak GPU memory of the segmentation model by part: what holds it at a given batch.

    python benchmarks/memory_by_part.py SEGMENTATION_CHECKPOINT [BATCH ...]

Converts the checkpoint (no checks), then for each batch of 5 s windows (the 2022 model's; any
PyanNet checkpoint works, at its own sample rate) prints the whole model's peak memory above the
inputs and median time queued whole and in parts (`pyannet.Parts`), then the peak of each SincNet
stage alone, of SincNet whole and of the LSTM (queued whole), each from an emptied cache; then the
same for an hour of speech through speech detection (`inference.segment`), its windows queued whole
(the runtime's way: the device runs a batch while the previous one is handled) and in parts.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import mlx_segmentation
import mlx.core as mx
import numpy as np

from checks.audio import long_recording
from converter.build import build
from mlx_segmentation import inference, pyannet
from mlx_segmentation.audio import open_audio
from mlx_segmentation.windows import WindowBatch, windows


def peak(label: str, function: Callable[[], mx.array]) -> mx.array:
    """Evaluate `function` from an emptied cache; print its peak memory above what was allocated before."""
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    result = function()
    mx.eval(result)
    mx.synchronize()
    print(f"{label}: peak {(mx.get_peak_memory() - before) / 2**20:.0f} MiB, output {result.nbytes / 2**20:.1f} MiB")
    return result


def settings(model: pyannet.PyanNet, x: mx.array, label: str, repeats: int = 8) -> None:
    """Peak memory and median time of the whole model queued whole and in parts; their outputs compared."""
    outputs = {}
    for in_parts in (False, True):
        peaks, seconds = [], []
        for _ in range(repeats):
            mx.synchronize()
            mx.clear_cache()
            mx.reset_peak_memory()
            before, start = mx.get_active_memory(), time.perf_counter()
            outputs[in_parts] = model(x, in_parts=in_parts)
            mx.eval(outputs[in_parts])
            mx.synchronize()
            seconds.append(time.perf_counter() - start)
            peaks.append(mx.get_peak_memory() - before)
        print(
            f"{label}, model {'in parts' if in_parts else 'queued whole'}: peak {max(peaks) / 2**20:.0f} MiB, "
            f"median {np.median(seconds[2:]) * 1000:.2f} ms"
        )
    difference = np.abs(np.array(outputs[True]) - np.array(outputs[False])).max()
    print(f"{label}, max|in parts - queued whole| {difference:.1e}")


def recording(model: pyannet.PyanNet, batch: int, in_parts: bool, minutes: float = 60.0) -> None:
    """Peak memory and times of speech detection over `minutes` of speech at `batch` windows per forward,
    its windows queued whole (the runtime's way) or in parts."""
    samples = long_recording(minutes * 60, seed=0).astype(np.float32)

    def forward_in_parts(batch: WindowBatch, window_size: int, step_size: int) -> mx.array:
        return model(windows(batch, window_size, step_size), in_parts=True).astype(mx.float32)

    seconds = []
    for _ in range(3):
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()
        before, start = mx.get_active_memory(), time.perf_counter()
        audio = open_audio(samples, 16000, source_rate=16000)
        inference.segment(model, audio, batch_size=batch, forward=forward_in_parts if in_parts else None)
        seconds.append(time.perf_counter() - start)
    peak = (mx.get_peak_memory() - before) / 2**20
    how = "in parts" if in_parts else "queued whole"
    times = " ".join(f"{s:.2f}" for s in seconds)
    print(f"{minutes:g} min of speech at batch {batch}, {how}: peak {peak:.0f} MiB, seconds {times}")


def main(checkpoint: Path, batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    sincnet = model.sincnet
    for batch in batches:
        x = mx.array(np.random.default_rng(0).normal(size=(batch, 80000)).astype(np.float32))
        mx.eval(x)
        settings(model, x, f"batch {batch}")
        outputs = peak(f"batch {batch}, input norm", lambda: sincnet.wav_norm1d(x[:, :, None]))
        peak(f"batch {batch}, first convolution alone", lambda: sincnet.conv1d[0](outputs))
        for stage in range(len(sincnet.conv1d)):
            outputs = peak(f"batch {batch}, SincNet stage {stage}", lambda: sincnet.stage(stage, outputs))
        features = peak(f"batch {batch}, SincNet whole", lambda: sincnet(x))
        peak(f"batch {batch}, LSTM", lambda: model.lstm(features))
    for batch in batches:
        for in_parts in (False, True):
            recording(model, batch, in_parts)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(b) for b in sys.argv[2:]] or [32, 256])
