"""Peak GPU memory of the segmentation model by part: what holds it at a given batch.

    python benchmarks/memory_by_part.py SEGMENTATION_CHECKPOINT [BATCH ...]
    python benchmarks/memory_by_part.py SEGMENTATION_CHECKPOINT [BATCH ...] --sweep SINCNET_SAMPLES:LSTM_VALUES ...

Converts the checkpoint (no checks), then for each batch of 5 s windows (the 2022 model's; any
PyanNet checkpoint works, at its own sample rate) prints the whole model's peak memory above the
inputs and median time queued whole and in parts (`parts.Parts`), then the peak of each SincNet
stage alone, of SincNet whole and of the LSTM (queued whole), each from an emptied cache; then the
same for an hour of speech through speech detection (`inference.segment`): the runtime's way (one
`Parts` for all batches, `inference.parts_ahead` in flight), each forward queued whole, each in parts of its own.
`--sweep` instead prints, for each pair of part sizes (`pyannet.SINCNET_CHUNK_SAMPLES`, `pyannet.LSTM_PART_VALUES`;
0 for a layer's projections in one part), the model in parts and the hour the runtime's way at each batch;
`--ahead` the hour the runtime's way with each number of parts in flight (`inference.parts_ahead`).
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import mlx_segmentation
import mlx.core as mx
import numpy as np

from checks.audio import long_recording
from converter.build import build
from mlx_segmentation import inference, pyannet
from mlx_segmentation.parts import Parts
from mlx_segmentation.audio import open_audio
from mlx_segmentation.windows import WindowBatch, windows


def measured(function: Callable[[], Any]) -> tuple[Any, float, float]:
    """`function()` evaluated from an emptied cache: its result, seconds and peak MiB above what was allocated."""
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    before, start = mx.get_active_memory(), time.perf_counter()
    result = function()
    mx.eval(result)
    mx.synchronize()
    return result, time.perf_counter() - start, (mx.get_peak_memory() - before) / 2**20


def peak(label: str, function: Callable[[], mx.array]) -> mx.array:
    """Evaluate `function` from an emptied cache; print its peak memory above what was allocated before."""
    result, _, mib = measured(function)
    print(f"{label}: peak {mib:.0f} MiB, output {result.nbytes / 2**20:.1f} MiB")
    return result


def settings(model: pyannet.PyanNet, x: mx.array, label: str, repeats: int = 8) -> None:
    """Peak memory and median time of the whole model queued whole and in parts; their outputs compared."""
    outputs = {}
    for how, ahead in (("queued whole", None), ("in parts", 1)):
        runs = [measured(lambda: model(x, parts=Parts(ahead))) for _ in range(repeats)]
        outputs[how] = np.array(runs[-1][0])
        peak_mib, median = max(r[2] for r in runs), np.median([r[1] for r in runs[2:]]) * 1000
        print(f"{label}, model {how}: peak {peak_mib:.0f} MiB, median {median:.2f} ms")
    difference = np.abs(outputs["in parts"] - outputs["queued whole"]).max()
    print(f"{label}, max|in parts - queued whole| {difference:.1e}")


def recording(model: pyannet.PyanNet, batch: int, ahead: int | str | None, minutes: float = 60.0) -> None:
    """Peak memory and times of speech detection over `minutes` of speech at `batch` windows per forward: the
    runtime's way (`inference.window_outputs`), or each forward in its own `Parts(ahead)`."""
    samples = long_recording(minutes * 60, seed=0).astype(np.float32)

    def forward(window_batch: WindowBatch, window_size: int, step_size: int) -> mx.array:
        return model(windows(window_batch, window_size, step_size), parts=Parts(ahead)).astype(mx.float32)

    def detect() -> None:
        audio = open_audio(samples, 16000, source_rate=16000)
        inference.segment(model, audio, batch_size=batch, forward=None if ahead == "runtime" else forward)

    runs = [measured(detect) for _ in range(3)]
    how = {"runtime": "the runtime's way", None: "each forward queued whole", 1: "each forward in parts"}[ahead]
    times = " ".join(f"{r[1]:.2f}" for r in runs)
    print(f"{minutes:g} min of speech at batch {batch}, {how}: peak {max(r[2] for r in runs):.0f} MiB, seconds {times}")


def sweep(model: pyannet.PyanNet, batches: list[int], pairs: list[str], minutes: float) -> None:
    """The model in parts and the hour the runtime's way, for each pair of part sizes."""
    first: dict[int, np.ndarray] = {}  # the first pair's outputs, which the others are compared with
    for pair in pairs:
        sincnet_samples, lstm_values = (int(value) for value in pair.split(":"))
        pyannet.SINCNET_CHUNK_SAMPLES, pyannet.LSTM_PART_VALUES = sincnet_samples, lstm_values or 2**62
        print(f"== SincNet parts of {sincnet_samples} samples, LSTM parts of {lstm_values or 'a layer of'} projections")
        for batch in batches:
            x = mx.array(np.random.default_rng(0).normal(size=(batch, 80000)).astype(np.float32))
            mx.eval(x)
            runs = [measured(lambda: model(x)) for _ in range(8)]
            median = np.median([r[1] for r in runs[2:]]) * 1000
            outputs = first.setdefault(batch, np.array(runs[-1][0]))
            difference = np.abs(np.array(runs[-1][0]) - outputs).max()
            print(
                f"batch {batch}, model in parts: peak {max(r[2] for r in runs):.0f} MiB, median {median:.2f} ms, "
                f"max|outputs - first pair's| {difference:.1e}"
            )
        for batch in batches:
            recording(model, batch, "runtime", minutes)


def main(checkpoint: Path, batches: list[int], pairs: list[str], minutes: float, aheads: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    if pairs:
        return sweep(model, batches, pairs, minutes)
    if aheads:
        for ahead in aheads:
            print(f"== {ahead} parts in flight")
            for batch in batches:
                inference.PARTS_AHEAD_WINDOWS = ahead * batch  # parts_ahead(batch) == ahead
                recording(model, batch, "runtime", minutes)
        return None
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
        for ahead in ("runtime", None, 1):
            recording(model, batch, ahead, minutes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("batches", type=int, nargs="*", default=[32, 256])
    parser.add_argument("--sweep", nargs="+", default=[], metavar="SINCNET_SAMPLES:LSTM_VALUES")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the recording (default: an hour)")
    parser.add_argument("--ahead", type=int, nargs="+", default=[], help="only the hour, per parts in flight")
    args = parser.parse_args()
    main(args.checkpoint, args.batches, args.sweep, args.minutes, args.ahead)
