"""Convolutions on a CPU with MKL, computed without MLX's unfold of the whole input.

Stride-1 conv2d (the ResNet's), as one MKL product per kernel tap over shifted rows. MLX's CPU conv2d
unfolds its input (a single-threaded copy, nine times the input for a 3 x 3 kernel) before its product.
Padded and flattened to (batch x rows x columns, channels), the input that tap (dy, dx) of every output
reads is the same rows moved on by dy * columns + dx, so each tap is one product of a row range with
that tap's (out, in) weights, summed into the output; rows that straddle a padded edge land on output
positions that are dropped. Measured on this 2-core machine (64 channels, 3 x 3, 8 x 500 x 40): 150 to
180 ms against MLX's conv2d 410 to 443 (PyTorch, 2 threads: 77), closer to float64 than either.

A one-channel strided conv1d (SincNet's sinc filters) is MLX's own product, a tile of frames at a time:
MLX unfolds the whole input first (128 MB at 8 windows of 10 s), here each tile of frames is copied to a
cache-sized buffer and multiplied, the same sums bit for bit in half the time (174 -> 86 ms at 8 x 10 s).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import cpu_blas

# Fewer input channels make each tap's product too thin to pay: the ResNet's 1-channel stem took 5.4 ms this
# way at 10 s, 1.2 with MLX's conv2d.
MIN_CHANNELS = 16
FRAMES_PER_TILE = 2048  # a conv1d's frames per product: 2 MB of SincNet's 251-sample frames


def on_mkl_cpu() -> bool:
    """MLX computes on the CPU, and MKL serves its products (`cpu_blas`)."""
    return cpu_blas.loaded is not None and mx.default_device().type == mx.DeviceType.cpu


def applies(x: mx.array, weight: mx.array, stride: tuple[int, int], padding: tuple[int, int]) -> bool:
    """On the CPU with MKL loaded, float32, stride 1, odd kernels padded to keep the size, MIN_CHANNELS or more."""
    _, kernel_h, kernel_w, channels = weight.shape
    return (
        on_mkl_cpu()
        and x.dtype == weight.dtype == mx.float32
        and tuple(stride) == (1, 1)
        and kernel_h % 2 == kernel_w % 2 == 1
        and tuple(padding) == (kernel_h // 2, kernel_w // 2)
        and channels >= MIN_CHANNELS
    )


def conv2d(x: mx.array, weight: mx.array) -> mx.array:
    """mx.conv2d(x, weight, padding=kernel // 2) for (batch, height, width, in) and (out, kh, kw, in) weights."""
    batch, height, width, channels = x.shape
    out_channels, kernel_h, kernel_w, _ = weight.shape
    rows, columns = height + kernel_h - 1, width + kernel_w - 1
    positions = batch * rows * columns
    # the padded input, then as many zero rows as the last tap reads past it
    padded = np.zeros((positions + (kernel_h - 1) * columns + kernel_w - 1, channels), np.float32)
    grid = padded[:positions].reshape(batch, rows, columns, channels)
    grid[:, kernel_h // 2 : kernel_h // 2 + height, kernel_w // 2 : kernel_w // 2 + width] = np.asarray(x)
    taps = np.ascontiguousarray(np.asarray(weight).transpose(1, 2, 0, 3))  # (kh, kw, out, in)
    out = np.empty((positions, out_channels), np.float32)

    def rows_of(start: int, stop: int) -> None:
        for dy in range(kernel_h):
            for dx in range(kernel_w):
                shift, first = dy * columns + dx, dy == dx == 0
                rows = padded[shift + start : shift + stop]
                cpu_blas.sgemm_nt(rows, taps[dy, dx], out[start:stop], beta=0.0 if first else 1.0)

    cpu_blas.in_threads(rows_of, positions, least=cpu_blas.MIN_ROWS)
    return mx.array(out.reshape(batch, rows, columns, out_channels)[:, :height, :width])


def applies_1d(x: mx.array, conv: nn.Conv1d) -> bool:
    """On the CPU with MKL loaded, float32 (batch, samples, channels), no padding or dilation, one group."""
    weight = conv.weight
    return (
        on_mkl_cpu()
        and x.dtype == weight.dtype == mx.float32
        and x.ndim == 3
        and x.shape[-1] == weight.shape[-1]
        and x.shape[1] >= weight.shape[1]
        and (conv.padding, conv.dilation, conv.groups) == (0, 1, 1)
    )


def conv1d(x: mx.array, weight: mx.array, stride: int, pool: int = 1) -> mx.array:
    """mx.conv1d(x, weight, stride) (no bias), `FRAMES_PER_TILE` frames per product (a short last tile joined to the
    one before); with `pool` > 1, max-pooled |conv1d| (windows of `pool` frames, the last partial one dropped) tile
    by tile instead.

    x is (batch, samples, in), weight (out, kernel, in): each frame's (kernel, in) values in one row, as MLX unfolds,
    so MLX's sums bit for bit wherever MLX's product and each window's have `cpu_blas.MIN_ROWS` frames or more.
    """
    samples = np.asarray(x)
    batch, out_channels = samples.shape[0], weight.shape[0]
    filters = np.asarray(weight).reshape(out_channels, -1)  # (out, kernel x in)
    kernel = weight.shape[1]
    # (batch, frames, in, kernel) views, read as (batch, frames, kernel, in)
    frames = sliding_window_view(samples, kernel, axis=1)[:, ::stride].transpose(0, 1, 3, 2)
    count, size = frames.shape[1] // pool * pool, FRAMES_PER_TILE // pool * pool  # tiles whole pooling windows
    out = np.empty((batch, count // pool, out_channels), np.float32)
    starts = list(range(0, count, size))
    if len(starts) > 1 and count - starts[-1] < cpu_blas.MIN_ROWS:  # a short last tile joins the one before
        starts.pop()
    bounds = list(zip(starts, starts[1:] + [count]))
    tiles = [(b, start, stop) for b in range(batch) for start, stop in bounds]
    largest = max((stop - start for start, stop in bounds), default=0)

    def tiles_of(first: int, last: int) -> None:
        tile = np.empty((largest, *frames.shape[2:]), np.float32)
        rows_of = tile.reshape(largest, -1)
        product = np.empty((largest, out_channels), np.float32) if pool > 1 else None  # the tile's, before pooling
        for b, start, stop in tiles[first:last]:
            rows = stop - start
            np.copyto(tile[:rows], frames[b, start:stop])
            if product is None:
                cpu_blas.sgemm_nt(rows_of[:rows], filters, out[b, start:stop], beta=0.0)
                continue
            cpu_blas.sgemm_nt(rows_of[:rows], filters, product[:rows], beta=0.0)
            windows = np.abs(product[:rows]).reshape(-1, pool, out_channels)
            np.max(windows, axis=1, out=out[b, start // pool : stop // pool])

    cpu_blas.in_threads(tiles_of, len(tiles))
    return mx.array(out)
