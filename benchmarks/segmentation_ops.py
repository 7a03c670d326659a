"""Other ways of the segmentation model's heaviest operations, timed and compared with float64 (run on a GPU or CPU).

    python benchmarks/segmentation_ops.py [BATCH ...]

SincNet's first convolution (1 channel, 251 taps, stride 10) as MLX's conv1d, and the same convolution
over the samples folded into rows of 10 (10 channels, 26 taps, stride 1: the taps past 251 zero); the
LSTM's input projections with the bias added after the product or in it (`mx.addmm`). Prints each
way's median milliseconds at 5 s windows and the largest distance from float64 relative to the
output's scale, measured on the first windows.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
from typing import Callable

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np

from mlx_segmentation import pyannet
from timing import timed

REPEATS = 10
COMPARED = 2  # windows compared with float64 (on the host)


def median_ms(function: Callable[[], mx.array]) -> float:
    """speed.py's median after a warm-up, in milliseconds, each call evaluated."""
    return timed(lambda: mx.eval(function()), REPEATS) * 1000


def relative(ours: mx.array, exact: np.ndarray) -> float:
    return float(np.abs(np.array(ours, dtype=np.float64) - exact).max() / np.abs(exact).max())


def sinc_exact(samples: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """float64 (batch, frames, filters) of the strided convolution."""
    frames = np.lib.stride_tricks.sliding_window_view(samples.astype(np.float64), weight.shape[1], axis=1)[:, ::stride]
    return frames @ weight.astype(np.float64).T


def main(batches: list[int]) -> None:
    rng = np.random.default_rng(0)
    stride, kernel, filters = 10, pyannet.SINC_KERNEL, pyannet.SINC_FILTERS
    weight = rng.normal(0, 0.05, (filters, kernel)).astype(np.float32)
    w = mx.array(weight[:, :, None])
    taps = -(-kernel // stride)
    folded_w = mx.array(np.pad(weight, [(0, 0), (0, taps * stride - kernel)]).reshape(filters, taps, stride))
    print(f"MLX {mx.__version__} on {mx.default_device()}")
    for batch in batches:
        samples = rng.normal(0, 0.1, (batch, 80000)).astype(np.float32)
        x = mx.array(samples)
        frames = (x.shape[1] - kernel) // stride + 1

        def strided() -> mx.array:
            return mx.conv1d(x[:, :, None], w, stride=stride)

        def folded() -> mx.array:
            rows = -(-x.shape[1] // stride)
            padded = mx.pad(x, [(0, 0), (0, rows * stride - x.shape[1])]).reshape(batch, rows, stride)
            return mx.conv1d(padded, folded_w)[:, :frames]

        exact = sinc_exact(samples[:COMPARED], weight, stride)
        for name, way in (("strided conv1d", strided), ("folded into 10 channels", folded)):
            try:
                ms = median_ms(way)
            except RuntimeError as error:  # MLX's cuDNN convolution gives up on some shapes (conv2d_oom.py)
                print(f"batch {batch}, sinc filters, {name}: failed, {str(error)[:80]}", flush=True)
                continue
            distance = relative(way()[:COMPARED], exact)
            print(f"batch {batch}, sinc filters, {name}: {ms:.2f} ms, from float64 {distance:.2e}", flush=True)
        steps, inputs, hidden = 293, 256, 128
        features = mx.array(rng.normal(0, 0.5, (batch, steps, inputs)).astype(np.float32))
        Wx = mx.array(rng.normal(0, 0.1, (2, 4 * hidden, inputs)).astype(np.float32))
        bias = mx.array(rng.normal(0, 0.1, (2, 4 * hidden)).astype(np.float32))

        def added() -> mx.array:
            return features[None] @ Wx.transpose(0, 2, 1)[:, None] + bias[:, None, None, :]

        def in_product() -> mx.array:
            return mx.addmm(bias[:, None, None, :], features[None], Wx.transpose(0, 2, 1)[:, None])

        exact = (
            np.array(features[:COMPARED], dtype=np.float64)[None] @ np.array(Wx, np.float64).transpose(0, 2, 1)[:, None]
            + np.array(bias, np.float64)[:, None, None, :]
        )
        for name, way in (("bias added after", added), ("bias in the product (addmm)", in_product)):
            result = way()
            print(
                f"batch {batch}, LSTM projections, {name}: {median_ms(way):.2f} ms, "
                f"from float64 {relative(result[:, :COMPARED], exact):.2e}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("batches", type=int, nargs="*", default=[32, 256, 1024])
    main(parser.parse_args().batches)
