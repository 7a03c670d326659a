"""The clustering's distance matrix on this machine's cores: scipy's `pdist` against `clustering.euclidean_distances`.

    python benchmarks/distances.py [--points 6000] [--rows 1 16 64 256] [--repeats 3]

Unit-length float32 points of dimension 256 (an hour's kept embeddings are about 6,000), distances in
float64 as `linkage` computes them. For each number of rows per task (`clustering.ROWS_PER_TASK`; 1 is one
`cdist` call per row, as before blocks), the median seconds after a warm-up call (`timing.timed`) and
whether the result is `pdist`'s bit for bit.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from scipy.spatial.distance import pdist
from timing import timed

from mlx_segmentation import clustering


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=6000)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    points = np.random.default_rng(0).normal(size=(args.points, 256)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    print(f"{args.points} points of dimension 256, {os.cpu_count()} CPUs")
    expected = pdist(points)
    scipy_seconds = timed(lambda: pdist(points), args.repeats)
    print(f"scipy pdist (one core): {scipy_seconds:.3f} s")
    for rows in args.rows:
        clustering.ROWS_PER_TASK = rows
        same = np.array_equal(clustering.euclidean_distances(points), expected)
        ours = timed(lambda: clustering.euclidean_distances(points), args.repeats)
        print(f"euclidean_distances, {rows} rows per task: {ours:.3f} s, pdist's bits: {same}")


if __name__ == "__main__":
    main()
