"""The custom kernels' small arguments (sizes, eps), each set of values made into an array once per process.

An array made from Python values lives in CUDA managed memory and moves to the GPU when a kernel first reads it: on an
H100 that cost 0.1 to 0.15 ms per launch of `norm_kernel` (two such arrays) against the same launch on arrays made
once (benchmarks/norm_kernel_launch.py, benchmarks/results/h100_norm_kernel_launch_fresh_arrays.log). Kept here,
an array moves once.
"""

from __future__ import annotations

from functools import lru_cache

import mlx.core as mx


@lru_cache(maxsize=4096)
def int32s(*values: int) -> mx.array:
    """An int32 array of `values` (a kernel's sizes), the same array for the same values."""
    array = mx.array(values, dtype=mx.int32)
    mx.eval(array)
    return array


@lru_cache(maxsize=256)
def float32s(*values: float) -> mx.array:
    """A float32 array of `values` (a kernel's parameters), the same array for the same values."""
    array = mx.array(values, dtype=mx.float32)
    mx.eval(array)
    return array
