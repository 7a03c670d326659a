"""Variants of the CUDA LSTM recurrence kernel at large batches: tiles, and each step's loads issued early.

    python benchmarks/lstm_variants.py [BATCH ...] [--steps 589]

One layer (both directions, hidden 128) of `recurrence.run` on random projections: the runtime's kernel at
its own tile, then at other tiles, then a variant of its source that loads each step's input projections into
registers before the product with h (so that their latency overlaps it) and unrolls the product's loop over
the weight rows read from memory. The sums are the same in the same order; each line prints the median
milliseconds and the largest difference from the runtime's kernel, relative to the output's scale.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np

from mlx_segmentation import recurrence
from timing import timed

HIDDEN = 128
EARLY_LOADS = (
    (
        "        float acc[TILE];\n        for (int b = 0; b < TILE; ++b) acc[b] = 0.0f;\n",
        "        float acc[TILE], xv[TILE];\n"
        "        for (int b = 0; b < TILE; ++b) {\n"
        "            acc[b] = 0.0f;\n"
        "            xv[b] = b0 + b < B ? xg[(((size_t)d * B + b0 + b) * T + t) * G + j] : 0.0f;\n"
        "        }\n",
    ),
    (
        "g_s[b][j] = xg[(((size_t)d * B + b0 + b) * T + t) * G + j] + acc[b];",
        "g_s[b][j] = xv[b] + acc[b];",
    ),
    (
        "        for (int k = R; k < H; k += 4) {\n",
        "        #pragma unroll 8\n        for (int k = R; k < H; k += 4) {\n",
    ),
)


def variant_source(source: str) -> str:
    for old, new in EARLY_LOADS:
        if old not in source:
            raise SystemExit(f"the kernel's source changed: {old.strip()!r} not found")
        source = source.replace(old, new)
    return source


def main(batches: list[int], steps: int) -> None:
    original = recurrence.CUDA_SOURCE
    rng = np.random.default_rng(0)
    Wh = mx.array(rng.normal(0, 0.1, (2, 4 * HIDDEN, HIDDEN)).astype(np.float32))
    print(f"MLX {mx.__version__} on {mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")
    for batch in batches:
        projected = mx.array(rng.normal(0, 1.0, (2, batch, steps, 4 * HIDDEN)).astype(np.float32))
        zeros = mx.zeros((2, batch, HIDDEN))
        mx.eval(projected, zeros)
        reference = None
        for name, source in (("runtime kernel", original), ("early loads", variant_source(original))):
            recurrence.CUDA_SOURCE = source
            recurrence._KERNELS.clear()
            for tile in (0, 4, 8, 16):
                recurrence.TILE = tile
                used = recurrence._tile("cuda", HIDDEN, batch)
                if tile and used != tile:
                    continue

                def call() -> mx.array:
                    return recurrence.run(projected, Wh, zeros, zeros)[0]

                try:
                    milliseconds = timed(lambda: mx.eval(call()), 10) * 1000
                except RuntimeError as error:  # tile 16: more registers than a block of 512 threads may have
                    print(f"batch {batch}, {name}, tile {tile}: failed, {str(error)[:90]}", flush=True)
                    continue
                out = np.array(call())
                reference = out if reference is None else reference
                difference = np.abs(out - reference).max() / np.abs(reference).max()
                label = "its own tile" if tile == 0 else f"tile {tile}"
                rows = recurrence._register_rows(HIDDEN, used)
                print(
                    f"batch {batch}, {steps} steps, {name}, {label} ({used}, {rows} rows in registers): "
                    f"{milliseconds:.3f} ms, {difference:.1e}",
                    flush=True,
                )
    recurrence.CUDA_SOURCE, recurrence.TILE = original, 0
    recurrence._KERNELS.clear()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("batches", type=int, nargs="*", default=[32, 256, 1024])
    parser.add_argument("--steps", type=int, default=589, help="time steps (segmentation-3.0's 10 s windows: 589)")
    args = parser.parse_args()
    main(args.batches, args.steps)
