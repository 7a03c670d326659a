"""Trial: the convolution kernel with 32 input channels per step (two shared-memory stages) against the runtime's 16.

    python benchmarks/conv_two_stages.py [--batch 32] [--compare 2]

A step of 32 channels halves the kernel's bookkeeping per multiply-add (partial sums, copies, barriers), but three
stages of it do not fit the 48 KiB of static shared memory, so this variant of `conv_kernel.SOURCE` keeps two (the
next step's tiles copied while this one is multiplied) and needs more registers (219 against 167 at 64 x 64, NVRTC
for sm_90): two blocks per SM instead of three. Each step's partial sum then has 32 products, not 16: other sums.
At the ResNet's shapes for 10 s segments it prints milliseconds per call for the runtime's tiles and for the
variant's at 32 channels, and, on the first `--compare` segments, each one's root mean square from float64.

Not kept: on an H100 (benchmarks/results/h100_conv_two_stages.log, two runs) the 3 x 3 convolutions took -11% to +7%
of the runtime's time, most within 2%, each further from float64 (1.98e-7 against 1.65e-7 at 32 channels, 6.06e-7
against 5.60e-7 at 256); only the 1 x 1 shortcut was faster throughout (0.25 against 0.27 ms).
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np

from gpu_kernels import CONV_SHAPES, float64_conv2d, milliseconds, rms
from mlx_segmentation import conv_kernel

EDITS = (
    ("constexpr int STAGES = 3;", "constexpr int STAGES = BK == 32 ? 2 : 3;"),
    ("    if (steps > 1) load();", "    if (STAGES == 3 && steps > 1) load();"),
    (
        '        if (s + 1 < steps) asm volatile("cp.async.wait_group 1;");',
        '        if (STAGES == 3 && s + 1 < steps) asm volatile("cp.async.wait_group 1;");',
    ),
    ("        if (s + 2 < steps) load();", "        if (s + STAGES - 1 < steps) load();"),
)


def two_stage_source() -> str:
    """`conv_kernel.SOURCE` with two stages when BK is 32 (as it is at 16): the next step copied while one is summed."""
    source = conv_kernel.SOURCE
    for old, new in EDITS:
        if source.count(old) != 1:
            raise SystemExit(f"conv_kernel.SOURCE changed: {old.strip()!r} not found once")
        source = source.replace(old, new)
    return source


def main(batch: int, compare: int) -> None:
    print(f"MLX {mx.__version__} on {mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")
    runtime = conv_kernel.compile_kernel("wespeaker_conv2d", "wt", conv_kernel.SOURCE)
    variant = conv_kernel.compile_kernel("wespeaker_conv2d_two_stages", "wt", two_stage_source())
    rng = np.random.default_rng(0)
    for (height, width, in_channels), out_channels, kernel, stride in CONV_SHAPES:
        if in_channels % 32:
            continue
        x = mx.array(rng.normal(0, 1, (batch, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        exact = float64_conv2d(x[:compare], weight, stride, padding[0])
        bm, bn, tm, tn, _ = conv_kernel.tile(out_channels)
        line = f"{batch} x {height} x {width} x {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride}:"
        for name, compiled, tiles in (
            ("runtime, 16 channels a step", runtime, None),
            ("two stages, 32 channels a step", variant, (bm, bn, tm, tn, 32)),
        ):
            conv_kernel._KERNEL[:] = [compiled]

            def convolve(tiles=tiles) -> mx.array:
                return conv_kernel.conv2d(x, weight, (stride, stride), padding, tiles)

            distance = rms(convolve()[:compare], exact)
            line += f"\n    {name}: {milliseconds(convolve):.3f} ms, from float64 {distance:.2e}"
        print(line, flush=True)
    conv_kernel._KERNEL[:] = [runtime]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--compare", type=int, default=2, help="segments compared with float64")
    args = parser.parse_args()
    main(args.batch, args.compare)
