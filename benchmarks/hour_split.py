"""Where an hour of speech detection spends its time: the device's forwards, the outputs' way back, the host's share.

    python benchmarks/hour_split.py SEGMENTATION_CHECKPOINT [BATCH ...] [--minutes 60] [--runtime-only]

Converts the checkpoint (no checks), then for each batch size times, two runs each, with peak GPU memory:
the runtime's speech detection (`inference.segment`); the same windows' forwards alone (uploaded and run as
the runtime runs them, one `Parts` for all, nothing read back); the forwards with their per-speaker
activity read back to the host (`inference.window_outputs`) but not aggregated; the forwards alone on
windows uploaded before (views of each batch's span, as the runtime's), on contiguous copies of them, and
on the first batch's windows again and again; then the runtime's
speech detection with SincNet in larger parts (`pyannet.SINCNET_CHUNK_SAMPLES`) and with more parts in
flight (`inference.PARTS_AHEAD_WINDOWS`).
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import numpy as np

from checks.audio import long_recording
from converter.build import build
from mlx_segmentation import inference, pyannet
from mlx_segmentation.audio import open_audio
from mlx_segmentation.parts import Parts


def measure(label: str, function: Callable[[], object]) -> None:
    for run in range(2):
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()
        start = time.perf_counter()
        function()
        mx.synchronize()
        seconds = time.perf_counter() - start
        print(f"{label}, run {run + 1}: {seconds:.3f} s, peak {mx.get_peak_memory() / 2**20:.0f} MiB", flush=True)


def main(checkpoint: Path, batches: list[int], minutes: float, runtime_only: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    samples = long_recording(minutes * 60, seed=0).astype(np.float32)
    print(f"MLX {mx.__version__} on {mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")

    def audio():
        return open_audio(samples, 16000, source_rate=16000)

    for batch in batches:
        name = f"{minutes:g} min at batch {batch}"

        def detect() -> None:
            inference.segment(model, audio(), batch_size=batch)

        if runtime_only:
            detect()  # warm-up
            measure(f"{name}, the runtime's speech detection", detect)
            continue

        def forwards_only() -> None:
            source = audio()
            sliding = inference.model_windows(model, source)
            parts = Parts(ahead=inference.parts_ahead(batch))
            out = None
            for window_batch in sliding.batches(source.blocks(), batch):
                out = model(sliding.windows(window_batch), parts=parts)
                mx.async_eval(out)
            mx.eval(out)

        def forwards_of(inputs: list[mx.array]) -> None:
            parts = Parts(ahead=inference.parts_ahead(batch))
            out = None
            for x in inputs:
                out = model(x, parts=parts)
                mx.async_eval(out)
            mx.eval(out)

        source = audio()
        sliding = inference.model_windows(model, source)
        uploaded = [sliding.windows(window_batch) for window_batch in sliding.batches(source.blocks(), batch)]
        contiguous = [mx.contiguous(x) for x in uploaded]
        mx.eval(uploaded, contiguous)

        def read_back() -> None:
            source = audio()
            for _ in inference.window_outputs(model, source, inference.model_windows(model, source), batch_size=batch):
                pass

        detect()  # warm-up: kernels compiled, buffers cached
        measure(f"{name}, the runtime's speech detection", detect)
        measure(f"{name}, the forwards alone", forwards_only)
        measure(f"{name}, the forwards with their outputs read back", read_back)
        measure(f"{name}, the forwards alone, their windows uploaded before", lambda: forwards_of(uploaded))
        measure(f"{name}, the forwards alone, their windows contiguous", lambda: forwards_of(contiguous))
        measure(
            f"{name}, raw windows, the first batch's {len(uploaded)} times",
            lambda: forwards_of([contiguous[0]] * len(uploaded)),
        )
        uploaded.clear()  # before the runs below: their peaks would count these
        contiguous.clear()
        chunk = pyannet.SINCNET_CHUNK_SAMPLES
        for samples_per_part in (chunk * 4, chunk * 16):
            pyannet.SINCNET_CHUNK_SAMPLES = samples_per_part
            measure(f"{name}, SincNet parts of 2^{samples_per_part.bit_length() - 1} samples", detect)
        pyannet.SINCNET_CHUNK_SAMPLES = chunk
        ahead = inference.PARTS_AHEAD_WINDOWS
        for parts in (1, 2, 4):
            inference.PARTS_AHEAD_WINDOWS = parts * batch
            measure(f"{name}, {parts} parts in flight", detect)
        inference.PARTS_AHEAD_WINDOWS = ahead


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("batches", type=int, nargs="*", default=[32, 1024])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--runtime-only", action="store_true", help="time the runtime's speech detection alone")
    args = parser.parse_args()
    main(args.checkpoint, args.batches, args.minutes, args.runtime_only)
