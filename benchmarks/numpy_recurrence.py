"""Tried, not kept: the CPU's numpy LSTM recurrence in ten numpy calls a step instead of thirteen, the same bits.

    python benchmarks/numpy_recurrence.py [BATCH ...] [--steps 589] [--runs 3]

The variant negates the i, f and o columns of the weights and input projections once (exact), so that each
step's `exp` gives exp(-z) with no `negative`; it lays the inputs out step by step with the reverse direction's
time reversed (one `+=` a step for both directions); and it keeps g beside c, so that one multiply gives
i * g and f * c and one add the new c (fl(i*g + f*c), as the runtime's fl(f*c + i*g)). One layer (both
directions, hidden 128) on random projections: checks the outputs and final state equal
`recurrence.run_numpy`'s bit for bit, then prints milliseconds per run for both, alternating.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import time

import mlx_segmentation  # noqa: F401
import numpy as np

from mlx_segmentation import recurrence

HIDDEN = 128


def run_fewer_calls(
    projected: np.ndarray, Wh: np.ndarray, h: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`recurrence.run_numpy` in ten numpy calls a step (see the module's docstring)."""
    directions, batch, steps, gates_size = projected.shape
    hidden = gates_size // 4
    sign = np.ones(gates_size, np.float32)
    sign[: 2 * hidden] = sign[3 * hidden :] = -1.0
    weights = np.ascontiguousarray(Wh.transpose(0, 2, 1)) * sign
    inputs = np.empty((steps, directions, batch, gates_size), np.float32)
    np.multiply(projected[0].transpose(1, 0, 2), sign, out=inputs[:, 0])
    if directions == 2:
        np.multiply(projected[1, :, ::-1].transpose(1, 0, 2), sign, out=inputs[:, 1])
    states = np.empty((steps + 1, directions, batch, hidden), np.float32)
    states[0] = h
    gates = np.empty((directions, batch, gates_size), np.float32)
    g_and_c = np.empty((directions, batch, 2 * hidden), np.float32)
    g_and_c[..., hidden:] = c
    products, cell = np.empty_like(g_and_c), np.empty((directions, batch, hidden), np.float32)
    g, new_c = g_and_c[..., :hidden], g_and_c[..., hidden:]
    with np.errstate(over="ignore"):
        for step in range(steps):
            np.matmul(states[step], weights, out=gates)
            gates += inputs[step]
            np.tanh(gates[..., 2 * hidden : 3 * hidden], out=g)
            np.exp(gates, out=gates)  # exp(-z) for i, f and o (the g column is not read again)
            gates += 1.0
            np.reciprocal(gates, out=gates)
            np.multiply(gates[..., : 2 * hidden], g_and_c, out=products)  # i * g, f * c
            np.add(products[..., :hidden], products[..., hidden:], out=new_c)
            np.tanh(new_c, out=cell)
            np.multiply(gates[..., 3 * hidden :], cell, out=states[step + 1])
    outputs = np.empty((batch, steps, directions * hidden), dtype=np.float32)
    outputs[:, :, :hidden] = states[1:, 0].transpose(1, 0, 2)
    if directions == 2:
        outputs[:, :, hidden:] = states[:0:-1, 1].transpose(1, 0, 2)
    return outputs, states[steps], new_c.copy()


def main(batches: list[int], steps: int, runs: int) -> None:
    rng = np.random.default_rng(0)
    for batch in batches:
        projected = rng.normal(0, 3, (2, batch, steps, 4 * HIDDEN)).astype(np.float32)
        Wh = rng.normal(0, 0.3, (2, 4 * HIDDEN, HIDDEN)).astype(np.float32)
        h, c = (rng.normal(0, 1, (2, batch, HIDDEN)).astype(np.float32) for _ in range(2))
        runtime = [np.array(a) for a in recurrence.run_numpy(projected, Wh, h, c)]
        variant = run_fewer_calls(projected, Wh, h, c)
        same = all(np.array_equal(a, b) for a, b in zip(runtime, variant, strict=True))
        print(f"batch {batch}: the same bits as run_numpy: {same}", flush=True)
        ways = {"run_numpy": recurrence.run_numpy, "ten calls a step": run_fewer_calls}
        for _ in range(runs):
            for name, run in ways.items():
                start = time.perf_counter()
                run(projected, Wh, h, c)
                print(f"  {name}: {1e3 * (time.perf_counter() - start):.2f} ms", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("batches", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=589)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    main(args.batches, args.steps, args.runs)
