"""The custom GPU kernels against MLX's own operations on the same random inputs (run it on a CUDA or Apple GPU).

    python benchmarks/gpu_kernels.py

Compares the LSTM recurrence kernel with the portable MLX loop and the |x| max-pool kernel with
MLX's; odd sizes on purpose (partial thread blocks, a last pooled frame cut short).
Prints the largest differences relative to each output's scale and exits 1 if one exceeds 1e-5.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import sys

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_segmentation import pooling, recurrence

TOLERANCE = 1e-5


def relative(ours: mx.array, theirs: mx.array) -> float:
    ours, theirs = np.array(ours, dtype=np.float64), np.array(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def main() -> int:
    backend = recurrence.gpu_backend()
    if backend is None:
        print("no GPU backend: nothing to compare")
        return 1
    rng = np.random.default_rng(0)
    results = {}
    for batch in (1, 5, 37):
        projected = mx.array(rng.normal(0, 2, (2, batch, 293, 512)).astype(np.float32))
        Wh = mx.array(rng.normal(0, 0.2, (2, 512, 128)).astype(np.float32))
        h = mx.array(rng.normal(0, 1, (2, batch, 128)).astype(np.float32))
        c = mx.array(rng.normal(0, 1, (2, batch, 128)).astype(np.float32))
        kernel = recurrence._run_kernel(projected, Wh, h, c, backend)
        portable = recurrence._run_portable(projected, Wh, h, c)
        results[f"LSTM recurrence, batch {batch}"] = max(relative(a, b) for a, b in zip(kernel, portable))
    pool = nn.MaxPool1d(3, stride=3)
    for batch, samples in ((1, 80000), (3, 160000), (7, 80001 + 37)):
        x = mx.array(rng.normal(0, 1, (batch, samples, 1)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (80, 251, 1)).astype(np.float32))
        conv = mx.conv1d(x, weight, stride=10)
        results[f"|x| max-pool, {batch} x {samples} samples"] = relative(
            pooling.abs_max_pool(conv, pool, 3), pool(mx.abs(conv))
        )
    for name, value in results.items():
        print(f"{name:<45} {value:.2e}  {'ok' if value <= TOLERANCE else 'TOO FAR'}")
    return 0 if all(value <= TOLERANCE for value in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
