"""Saves the convolution kernel's outputs at the ResNet's shapes (10 s x 8, random values) and SincNet's, to compare
two versions of the code bit for bit: `python benchmarks/conv_bits.py out.npz`, then `... a.npz b.npz`."""

import sys

import gpu_kernels
import mlx.core as mx
import numpy as np

from mlx_segmentation import conv_kernel

if len(sys.argv) == 3:
    first, second = np.load(sys.argv[1]), np.load(sys.argv[2])
    for name in first.files:
        print(f"{name}: max |difference| {np.abs(first[name] - second[name]).max():.3e}")
    sys.exit(0)
rng = np.random.default_rng(0)
outputs = {}
for (height, width, in_channels), out_channels, kernel, stride in gpu_kernels.CONV_SHAPES:
    x = mx.array(rng.normal(0, 1, (8, height, width, in_channels)).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
    padding = (kernel // 2, kernel // 2)
    name = f"{height}x{width}x{in_channels}->{out_channels},{kernel}x{kernel}/{stride}"
    outputs[name] = np.array(conv_kernel.conv2d(x, weight, (stride, stride), padding))
x = mx.array(rng.normal(0, 1, (8, 1990, 80)).astype(np.float32))  # SincNet's second convolution, as conv1d
weight = mx.array(rng.normal(0, 0.1, (60, 5, 80)).astype(np.float32))
outputs["sincnet 1990x80->60,5"] = np.array(conv_kernel.conv1d(x, weight))
np.savez(sys.argv[1], **outputs)
