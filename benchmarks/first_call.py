"""Where the first calls' time goes on a GPU: MLX's kernel compilation, for each custom convolution kernel.

    python benchmarks/first_call.py SEGMENTATION_CHECKPOINT WESPEAKER_CHECKPOINT

Converts both checkpoints (no checks), then times the first and second call of segmentation-3.0 on
32 windows of 10 s, of the convolution kernel at each of the ResNet's shapes, and of the WeSpeaker
model (its convolutions then compiled). Run it twice to see the cost with MLX's disk cache of its
own kernels filled (`MLX_PTX_CACHE_DIR`, by default under /tmp); custom kernels are compiled in
every process.
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

from converter.build import build
from gpu_kernels import CONV_SHAPES
from mlx_segmentation import conv_kernel

SHORTCUTS = (((40, 499, 64), 128, 1, 2), ((20, 250, 128), 256, 1, 2))  # the 1 x 1 shapes CONV_SHAPES lacks


def first(label: str, function: Callable[[], mx.array]) -> float:
    """Seconds of the first call of `function` (printed with the second's milliseconds)."""
    start = time.perf_counter()
    mx.eval(function())
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    mx.eval(function())
    print(f"{label}: first {first_seconds:.2f} s, second {(time.perf_counter() - start) * 1000:.1f} ms", flush=True)
    return first_seconds


def main(segmentation: Path, wespeaker: Path) -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        segmenter = mlx_segmentation.load(build(segmentation, Path(tmp) / "segmentation", log=lambda m: None).out)
        embedder = mlx_segmentation.load(build(wespeaker, Path(tmp) / "embedding", log=lambda m: None).out)
    print(f"build and load both: {time.perf_counter() - start:.2f} s")
    rng = np.random.default_rng(0)
    windows = mx.array(rng.normal(size=(32, 160000)).astype(np.float32))
    total = first("segmentation, 32 x 10 s", lambda: segmenter(windows))
    convolutions = 0.0
    for (height, width, in_channels), out_channels, kernel, stride in CONV_SHAPES + SHORTCUTS:
        x = mx.array(rng.normal(size=(1, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(size=(out_channels, kernel, kernel, in_channels)).astype(np.float32))
        convolutions += first(
            f"  convolution {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride}",
            lambda: conv_kernel.conv2d(x, weight, (stride, stride), (kernel // 2, kernel // 2)),
        )
    print(f"convolution kernels: {convolutions:.2f} s")
    total += convolutions + first("WeSpeaker, 32 x 10 s (convolutions compiled above)", lambda: embedder(windows))
    print(f"all first calls: {total:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
