"""SincNet's first max-pool of |conv|: one pass on a GPU instead of two over the largest activation."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from . import kernel_arguments, recurrence

CUDA_SOURCE = """
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // over (batch, pooled frame, channel)
    const int C = sizes[0], T_in = sizes[1], T_out = sizes[2];
    const size_t total = (size_t)sizes[3] * T_out * C;
    if (i >= total) return;
    const int c = i % C;
    const size_t bp = i / C;
    const int p = bp % T_out;
    const size_t b = bp / T_out;
    const float* row = x + (b * T_in + (size_t)p * K) * C + c;
    float m = fabsf(row[0]);
    for (int r = 1; r < K; ++r) m = fmaxf(m, fabsf(row[(size_t)r * C]));
    out[i] = m;
"""

METAL_SOURCE = """
    const size_t i = thread_position_in_grid.x;
    const int C = sizes[0], T_in = sizes[1], T_out = sizes[2];
    const size_t total = size_t(sizes[3]) * T_out * C;
    if (i >= total) return;
    const int c = i % C;
    const size_t bp = i / C;
    const int p = bp % T_out;
    const size_t b = bp / T_out;
    const device float* row = x + (b * T_in + size_t(p) * K) * C + c;
    float m = metal::abs(row[0]);
    for (int r = 1; r < K; ++r) m = metal::max(m, metal::abs(row[size_t(r) * C]));
    out[i] = m;
"""

_KERNELS: dict[str, object] = {}
THREADS = 256


def abs_max_pool(x: mx.array, pool: nn.MaxPool1d, kernel_size: int) -> mx.array:
    """max over non-overlapping windows of `kernel_size` frames of |x|, x being (batch, time, channels)."""
    backend = recurrence.gpu_backend()
    if backend is None or not recurrence.KERNEL_ENABLED or x.dtype != mx.float32:
        return pool(mx.abs(x))
    batch, steps, channels = x.shape
    pooled = steps // kernel_size
    if backend not in _KERNELS:
        make = mx.fast.cuda_kernel if backend == "cuda" else mx.fast.metal_kernel
        _KERNELS[backend] = make(
            name="sincnet_abs_max_pool",
            input_names=["x", "sizes"],
            output_names=["out"],
            source=CUDA_SOURCE if backend == "cuda" else METAL_SOURCE,
        )
    total = batch * pooled * channels
    (out,) = _KERNELS[backend](
        inputs=[x, kernel_arguments.int32s(channels, steps, pooled, batch)],
        template=[("K", kernel_size)],
        grid=(-(-total // THREADS) * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1),
        output_shapes=[(batch, pooled, channels)],
        output_dtypes=[mx.float32],
    )
    return out
