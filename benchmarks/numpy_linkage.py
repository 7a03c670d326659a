"""Tried, not kept: scipy's centroid linkage (`linkage(distances, method="centroid")`) in numpy, bit for bit.

    python benchmarks/numpy_linkage.py [POINTS ...]

scipy runs Müllner's generic algorithm over the condensed distances in Cython. This holds the full symmetric
matrix instead (a row and a column per merge written as numpy vectors, the matrix compacted whenever half its
clusters have merged), each row's nearest-neighbour distance kept as a lower bound and checked when it is the
smallest (as scipy's heap), and gives up (None) on an exact tie between candidate pairs, where scipy's order
would decide. The distance update is scipy's `_centroid` operation for operation, so the merges, distances and
sizes come out the same. On clustered points on the unit sphere (as the normalised embeddings the clustering
links) it prints both times, the time of its own set-up (the full matrix and its rows' minima), and whether the
dendrograms are identical.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist, squareform


def nearest(M: np.ndarray, bound: np.ndarray, arg: np.ndarray, row: int) -> None:
    """Row `row`'s exact nearest neighbour and distance into `arg` and `bound`."""
    arg[row] = M[row].argmin()
    bound[row] = M[row, arg[row]]


def centroid_linkage(distances: np.ndarray, n: int) -> tuple[np.ndarray | None, float]:
    """(scipy's centroid-linkage matrix, or None on a tie; the seconds spent setting up)."""
    start = time.perf_counter()
    M = squareform(distances)
    np.fill_diagonal(M, np.inf)
    ids, size = np.arange(n), np.ones(n, dtype=np.int64)
    bound, arg = M.min(axis=1), M.argmin(axis=1)
    set_up = time.perf_counter() - start
    Z, new, squares = np.empty((n - 1, 4)), np.empty(n), np.empty(n)
    for k in range(n - 1):
        while True:  # the smallest lower bound, made exact, and unique
            z = int(bound.argmin())
            dist, w = bound[z], int(arg[z])
            if M[z, w] != dist:
                nearest(M, bound, arg, z)
            elif np.count_nonzero(bound == dist) > 2:
                for row in np.flatnonzero(bound == dist):
                    nearest(M, bound, arg, row)
                if np.count_nonzero(bound == dist) > 2:
                    return None, set_up
            else:
                break
        x, y, m = min(z, w), max(z, w), len(bound)
        nx, ny = int(size[x]), int(size[y])
        Z[k] = (min(ids[x], ids[y]), max(ids[x], ids[y]), dist, nx + ny)
        update, tmp = new[:m], squares[:m]  # scipy's _centroid, in its order
        np.multiply(M[x], float(nx), out=update)
        update *= M[x]
        np.multiply(M[y], float(ny), out=tmp)
        tmp *= M[y]
        update += tmp
        update -= float(nx * ny) * dist * dist / float(nx + ny)
        update /= float(nx + ny)
        np.sqrt(update, out=update)
        M[y], M[:, y], M[x], M[:, x] = update, update, np.inf, np.inf
        size[x], size[y], ids[y], bound[x] = 0, nx + ny, n + k, np.inf
        arg[update < bound] = y
        np.minimum(bound, update, out=bound)
        nearest(M, bound, arg, y)
        if 1 < n - 1 - k <= m // 2:  # clusters left after this merge
            alive = np.flatnonzero(size)
            slot = np.full(m, -1)
            slot[alive] = np.arange(len(alive))
            M, ids, size, bound = M[np.ix_(alive, alive)], ids[alive], size[alive], bound[alive]
            arg = slot[arg[alive]]
            arg[arg < 0] = np.flatnonzero(arg < 0)  # a dead neighbour: pointed at itself (infinite), so checked
    return Z, set_up


def main(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    for n in sizes:
        centres = rng.normal(size=(4, 256))
        points = centres[rng.integers(0, 4, n)] + 0.8 * rng.normal(size=(n, 256))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        distances = pdist(points)
        start = time.perf_counter()
        theirs = linkage(distances, method="centroid")
        scipy_seconds = time.perf_counter() - start
        start = time.perf_counter()
        ours, set_up = centroid_linkage(distances, n)
        seconds = time.perf_counter() - start
        same = ours is not None and np.array_equal(ours, theirs)
        print(
            f"{n} points: scipy {scipy_seconds:.3f} s, numpy {seconds:.3f} s (set-up {set_up:.3f} s), "
            f"identical: {same}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sizes", type=int, nargs="*", default=[500, 2000, 6000])
    main(parser.parse_args().sizes)
