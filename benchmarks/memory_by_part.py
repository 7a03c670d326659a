"""Peak GPU memory of the segmentation model by part: what holds it at a given batch.

    python benchmarks/memory_by_part.py SEGMENTATION_CHECKPOINT [BATCH ...]

Converts the checkpoint (no checks), then for each batch of 5 s windows (the 2022 model's; any
PyanNet checkpoint works, at its own sample rate) prints the peak memory above the inputs of the
whole model, of each SincNet stage alone, of SincNet whole and of the LSTM, each from an emptied cache.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import sys
import tempfile
from pathlib import Path
from typing import Callable

import mlx_segmentation
import mlx.core as mx
import numpy as np

from converter.build import build


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


def main(checkpoint: Path, batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    sincnet = model.sincnet
    for batch in batches:
        x = mx.array(np.random.default_rng(0).normal(size=(batch, 80000)).astype(np.float32))
        mx.eval(x)
        peak(f"batch {batch}, model", lambda: model(x))
        outputs = peak(f"batch {batch}, input norm", lambda: sincnet.wav_norm1d(x[:, :, None]))
        peak(f"batch {batch}, first convolution alone", lambda: sincnet.conv1d[0](outputs))
        for stage in range(len(sincnet.conv1d)):
            outputs = peak(f"batch {batch}, SincNet stage {stage}", lambda: sincnet.stage(stage, outputs))
        features = peak(f"batch {batch}, SincNet whole", lambda: sincnet(x))
        peak(f"batch {batch}, LSTM", lambda: model.lstm(features))


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(b) for b in sys.argv[2:]] or [32, 256])
