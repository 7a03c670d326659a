"""The WeSpeaker ResNet with each batch norm and ReLU (and residual sum) as one compiled kernel, against MLX's
separate operations (`wespeaker.batch_norm_relu`): median time and the largest difference of the embeddings.

    python benchmarks/wespeaker_fused.py WESPEAKER_CHECKPOINT

Converts the checkpoint (no checks), then at 10 s x 8 and x 32 (real speech) prints each way's median time and
the fused embeddings' largest difference from the separate operations' and lowest cosine to them. On a CPU both
ways are MLX's separate operations (the kernel is for GPUs).
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import sys
import tempfile
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import numpy as np

from checks.audio import speech_segments
from converter.build import build
from mlx_segmentation import wespeaker
from timing import timed

REPEATS = 10


def main(checkpoint: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    fused = wespeaker.fused
    for batch in (8, 32):
        x = mx.array(speech_segments(10.0, batch))
        mx.eval(x)
        outputs, times = {}, {}
        for way, choice in (("separate", lambda bn: False), ("fused", fused), ("separate", lambda bn: False)):
            wespeaker.fused = choice
            outputs[way] = np.array(model(x))
            times[way] = timed(lambda: mx.eval(model(x)), REPEATS)
        wespeaker.fused = fused
        a, b = outputs["fused"].astype(np.float64), outputs["separate"].astype(np.float64)
        cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        print(
            f"10 s x {batch}: separate {times['separate'] * 1000:.2f} ms, fused {times['fused'] * 1000:.2f} ms "
            f"(ratio {times['fused'] / times['separate']:.3f}), max|diff| {np.abs(a - b).max():.2e}, "
            f"min cosine {cosine.min():.8f}",
            flush=True,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
