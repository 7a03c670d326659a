"""One convolution of the ResNet's second layer (32 x 40 x 499 x 64 -> 64, 3 x 3) through the float32 kernel and the
float64 tensor-core trial, for a profiler: `ncu --kernel-name regex:wespeaker python benchmarks/profile_one_conv.py`."""

import mlx.core as mx
import numpy as np
from dmma_conv import dmma_conv2d

from mlx_segmentation import conv_kernel

rng = np.random.default_rng(0)
x = mx.array(rng.normal(0, 1, (32, 40, 499, 64)).astype(np.float32))
weight = mx.array(rng.normal(0, 0.1, (64, 3, 3, 64)).astype(np.float32))
for _ in range(2):
    mx.eval(conv_kernel.conv2d(x, weight, (1, 1), (1, 1)))
    mx.eval(dmma_conv2d(x, weight, (1, 1), (1, 1)))
