"""Peak GPU memory and time of the WeSpeaker ResNet queued whole and in parts (`parts.Parts`).

    python benchmarks/wespeaker_parts.py WESPEAKER_CHECKPOINT

Converts the checkpoint (no checks), then for 10 windows of 10 s with 3 speakers' weights (the
diarization pipeline's batch) and 32 and 64 windows of 10 s and 32 of 3 s, prints each way's peak memory
above the inputs, median time and largest difference from the outputs queued whole.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import sys
import tempfile
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import numpy as np

from checks.audio import speech_segments
from memory_by_part import measured
from converter.build import build
from mlx_segmentation.parts import Parts

SHAPES = [(10.0, 10, 3), (10.0, 32, 0), (10.0, 64, 0), (3.0, 32, 0)]  # seconds, windows, speakers (0: no weights)
WAYS = [("whole", None), ("parts 1", 1), ("parts 2", 2), ("whole", None)]  # name, Parts(ahead)


def main(checkpoint: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    for seconds, batch, speakers in SHAPES:
        x = mx.array(speech_segments(seconds, batch))
        weights = np.random.default_rng(0).random((batch, speakers, 589)).astype(np.float32)
        extra = [mx.array(weights)] if speakers else []
        mx.eval(x, *extra)
        outputs = {}
        for name, ahead in WAYS:
            runs = [measured(lambda: model(x, *extra, parts=Parts(ahead))) for _ in range(6)]
            outputs[name] = np.array(runs[-1][0])
            difference = np.abs(outputs[name] - outputs["whole"]).max()
            print(
                f"{seconds:g} s x {batch} (speakers {speakers}) {name:>8}: peak {max(r[2] for r in runs):6.0f} MiB, "
                f"median {np.median([r[1] for r in runs[2:]]) * 1000:7.2f} ms, max|diff| {difference:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
