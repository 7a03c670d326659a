"""The CUDA LSTM recurrence kernel at every tile, with and without its early loads (`recurrence._early_loads`).

    python benchmarks/lstm_variants.py [BATCH ...] [--steps 589]

One layer (both directions, hidden 128) of `recurrence.run` on random projections: the runtime's choice
first, then each tile (windows per thread block, with `recurrence._register_rows`'s rows in registers) with
the early loads off and on (each step's input projections loaded before the product with h, and the
product's loop over the weight rows read from memory unrolled). The sums are the same in the same order at
a given tile; each line prints the median milliseconds and the largest difference from the runtime's choice,
relative to the output's scale. A configuration that needs more registers than a block may have fails to
launch, and says so.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np

from mlx_segmentation import recurrence
from timing import timed

HIDDEN = 128


def main(batches: list[int], steps: int) -> None:
    rng = np.random.default_rng(0)
    Wh = mx.array(rng.normal(0, 0.1, (2, 4 * HIDDEN, HIDDEN)).astype(np.float32))
    print(f"MLX {mx.__version__} on {mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")
    for batch in batches:
        projected = mx.array(rng.normal(0, 1.0, (2, batch, steps, 4 * HIDDEN)).astype(np.float32))
        zeros = mx.zeros((2, batch, HIDDEN))
        mx.eval(projected, zeros)
        reference = None
        settings = [(0, -1)] + [(tile, early) for early in (0, 1) for tile in (1, 2, 4, 8, 16)]
        for tile, early in settings:
            recurrence.TILE, recurrence.EARLY = tile, early
            used = recurrence._tile("cuda", HIDDEN, batch)
            rows = recurrence._register_rows(HIDDEN, used)
            on = "on" if recurrence._early_loads(used, rows) else "off"
            label = f"tile {used}, {rows} rows in registers, early loads {on}"
            if tile == 0:
                label = "the runtime's choice: " + label

            def call() -> mx.array:
                return recurrence.run(projected, Wh, zeros, zeros)[0]

            try:
                milliseconds = timed(lambda: mx.eval(call()), 10) * 1000
            except RuntimeError as error:  # more registers than a block of 4 * hidden threads may have
                print(f"batch {batch}, {steps} steps, {label}: failed, {str(error)[-60:]}", flush=True)
                continue
            out = np.array(call())
            reference = out if reference is None else reference
            difference = np.abs(out - reference).max() / np.abs(reference).max()
            print(f"batch {batch}, {steps} steps, {label}: {milliseconds:.3f} ms, {difference:.1e}", flush=True)
    recurrence.TILE, recurrence.EARLY = 0, -1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("batches", type=int, nargs="*", default=[32, 256, 1024])
    parser.add_argument("--steps", type=int, default=589, help="time steps (segmentation-3.0's 10 s windows: 589)")
    args = parser.parse_args()
    main(args.batches, args.steps)
