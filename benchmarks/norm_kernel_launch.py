"""What one `norm_kernel` launch costs on a GPU beyond its memory traffic: its small arrays, its block shape.

    python benchmarks/norm_kernel_launch.py

At the shapes of one SincNet part of 26 windows of 10 s (the input norm, stage 0's norm, stages 1 and 2's pool and
norm), prints the median milliseconds of: `norm_kernel.pool_norm` as the model calls it (its small `params` and
`sizes` arrays made anew each call), the kernel with those arrays made once, at other block shapes (channels per
block, lanes), an element-wise MLX operation over the same input, and the kernel on a window of six frames.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX)

import mlx_segmentation  # noqa: F401
import mlx.core as mx

from mlx_segmentation import norm_kernel
from timing import timed

SHAPES = {"input norm": (160_000, 1, 1, None), "stage 0": (5_333, 80, 1, 0.01), "stage 1": (5_329, 60, 3, 0.01)}
SHAPES["stage 2"] = (1_772, 60, 3, 0.01)
WINDOWS = 26


def ms(function) -> float:
    return timed(lambda: mx.eval(function()), 20) * 1000


def launch(x: mx.array, params: mx.array, sizes: mx.array, group: int, lanes: int, pool: int, leaky: bool):
    batch, steps, channels = x.shape
    weight, bias = mx.ones((channels,)), mx.zeros((channels,))
    (y,) = norm_kernel._KERNEL[0](
        inputs=[x, weight, bias, params, sizes],
        template=[("CG", group), ("TL", lanes), ("J", norm_kernel.J), ("POOL", pool), ("LEAKY", int(leaky))],
        grid=(channels // group * group * lanes, batch, 1),
        threadgroup=(group * lanes, 1, 1),
        output_shapes=[(batch, steps // pool, channels)],
        output_dtypes=[mx.float32],
    )
    return y


def main() -> None:
    print(f"MLX {mx.__version__} on {mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")
    for name, (steps, channels, pool, slope) in SHAPES.items():
        x = mx.random.normal((WINDOWS, steps, channels))
        mx.eval(x)
        weight, bias = mx.ones((channels,)), mx.zeros((channels,))
        print(f"{name}: pool_norm {ms(lambda: norm_kernel.pool_norm(x, weight, bias, 1e-5, pool, slope)):.3f} ms")
        print(f"{name}: x * 2 + 1 {ms(lambda: x * 2 + 1):.3f} ms")
        tiny = x[:1, :6]
        mx.eval(tiny)
        seconds = ms(lambda: norm_kernel.pool_norm(tiny, weight, bias, 1e-5, pool, slope))
        print(f"{name}: pool_norm of 6 frames {seconds:.3f} ms")
        params = mx.array([1e-5, slope or 0.0])
        sizes = mx.array([steps, steps // pool, channels], dtype=mx.int32)
        mx.eval(params, sizes)
        group, lanes = norm_kernel.block_shape(channels)
        shapes = {(group, lanes), (group, 256 // group)}
        shapes |= {(g, 512 // g) for g in (1, 2, 4, 10, 20) if channels % g == 0}
        for g, lanes in sorted(shapes):
            seconds = ms(lambda: launch(x, params, sizes, g, lanes, pool, slope is not None))
            print(f"{name}: arrays made once, {g} channels x {lanes} lanes: {seconds:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
