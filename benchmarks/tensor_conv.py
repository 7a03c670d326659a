"""Tried, not kept: WeSpeaker's convolutions on tensor cores as "3xTF32", against the runtime's float32 kernel.

    python benchmarks/tensor_conv.py [--torch]

`conv2d_tensor` is `conv_kernel.conv2d`'s implicit product with each float32 operand split into two TF32
numbers (big + small) and each product taken as three TF32 products (small x big, big x small, big x big),
as CUTLASS's "3xTF32": the products of each step summed in the tensor cores (`mma.sync` m16n8k8), the steps
and taps apart as `SUMS` says. Prints each kernel's largest and root-mean-square difference from float64 on
random inputs of odd sizes, then milliseconds per call at the ResNet's shapes for 10 s x 32 (CUDA only).
"""

from __future__ import annotations  # noqa: I001

import sys

if "--torch" in sys.argv:
    import torch  # noqa: F401

import mlx_segmentation  # noqa: F401, I001
import mlx.core as mx
import numpy as np

from gpu_kernels import CONV_SHAPES, float64_conv2d, milliseconds, relative, rms, torch_milliseconds
from mlx_segmentation import conv_kernel


TENSOR_TILES = {32: [(128, 32), (64, 32)], 64: [(128, 64), (64, 64), (128, 128), (64, 128)]}
TENSOR_TILES[128] = TENSOR_TILES[256] = TENSOR_TILES[64]


def main() -> None:
    rng = np.random.default_rng(0)
    for shape, out_channels, kernel, stride in (
        ((3, 80, 37, 32), 32, 3, 1),
        ((3, 80, 37, 32), 64, 3, 2),
        ((2, 40, 19, 64), 128, 1, 2),
        ((5, 20, 13, 128), 128, 3, 1),
        ((1, 10, 7, 256), 256, 3, 1),
        ((4, 10, 125, 256), 256, 3, 1),
    ):
        x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        exact = float64_conv2d(x, weight, stride, padding[0])
        line = []
        for name, out in (
            ("float32 kernel", conv_kernel.conv2d(x, weight, (stride, stride), padding)),
            ("tensor, sums 2", conv_kernel.conv2d_tensor(x, weight, (stride, stride), padding, sums=2)),
            ("tensor, sums 1", conv_kernel.conv2d_tensor(x, weight, (stride, stride), padding, sums=1)),
            ("tensor 64x64", conv_kernel.conv2d_tensor(x, weight, (stride, stride), padding, tiles=(64, 32))),
        ):
            line.append(f"{name} max {relative(out, exact):.2e} rms {rms(out, exact):.2e}")
        print(f"conv {shape} -> {out_channels}, {kernel}x{kernel} /{stride}: " + "; ".join(line), flush=True)
    batch = 32
    for (height, width, in_channels), out_channels, kernel, stride in CONV_SHAPES:
        x = mx.array(rng.normal(0, 1, (batch, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        flops = 2 * batch * (height // stride) * (width // stride) * out_channels * in_channels * kernel * kernel
        times = {"float32 kernel": milliseconds(lambda: conv_kernel.conv2d(x, weight, (stride, stride), padding))}
        for tiles in TENSOR_TILES[out_channels]:
            if out_channels % tiles[1]:
                continue
            for sums in (2, 1) if kernel > 1 else (1,):
                times[f"tensor {tiles} sums {sums}"] = milliseconds(
                    lambda tiles=tiles, sums=sums: conv_kernel.conv2d_tensor(x, weight, (stride, stride), padding, tiles, sums)
                )
        if "--torch" in sys.argv:
            times["PyTorch"], _ = torch_milliseconds(x, weight, stride, padding[0])
        print(
            f"{batch} x {height} x {width} x {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride}:\n    "
            + "\n    ".join(f"{name} {ms:.2f} ms ({flops / ms / 1e9:.1f} TFLOP/s)" for name, ms in times.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
