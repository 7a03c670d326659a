"""The custom GPU kernels against MLX's own operations on the same random inputs (run it on a CUDA or Apple GPU).

    python benchmarks/gpu_kernels.py [--sweep] [--torch] [--lstm-sweep]

Compares the LSTM recurrence kernel with the portable MLX loop, the |x| max-pool kernel with MLX's
and, on CUDA, the WeSpeaker convolution kernel with the unfolded product and with float64; odd sizes
on purpose (partial thread blocks, a last pooled frame cut short). Then times the convolution kernel
(with partial sums and per tap only) against the unfolded product at the ResNet's shapes for 10 s segments,
with `--torch` against PyTorch's conv2d too (and names the kernel cuDNN chose), with `--sweep` at other tiles.
Prints the largest differences relative to each output's scale and exits 1 if one exceeds 1e-5.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import sys
from collections.abc import Callable

if "--torch" in sys.argv:  # load PyTorch's own cuDNN before MLX's CUDA libraries bring another one
    import torch

import mlx_segmentation  # noqa: F401, I001  (before MLX: it may load MKL for MLX's CPU)
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_segmentation import conv_kernel, pooling, recurrence, wespeaker
from timing import timed

TOLERANCE = 1e-5
# (input shape, out channels, kernel, stride): partial thread blocks and odd sizes for the convolution kernel
ODD_SHAPES = (
    ((3, 80, 37, 32), 32, 3, 1),
    ((3, 80, 37, 32), 64, 3, 2),
    ((2, 40, 19, 64), 128, 1, 2),
    ((5, 20, 13, 128), 128, 3, 1),
    ((1, 10, 7, 256), 256, 3, 1),
)
REPEATS = 20  # timed calls per measurement


def relative(ours: mx.array, theirs: mx.array) -> float:
    ours, theirs = np.array(ours, dtype=np.float64), np.array(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def rms(ours: mx.array, exact: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.array(ours, dtype=np.float64) - exact) ** 2)))


def main() -> int:
    backend = recurrence.gpu_backend()
    if backend is None:
        print("no GPU backend: nothing to compare")
        return 1
    rng = np.random.default_rng(0)
    results = {}
    for batch in (1, 5, 37):
        projected = mx.array(rng.normal(0, 2, (2, batch, 293, 512)).astype(np.float32))
        Wh = mx.array(rng.normal(0, 0.2, (2, 512, 128)).astype(np.float32))
        h = mx.array(rng.normal(0, 1, (2, batch, 128)).astype(np.float32))
        c = mx.array(rng.normal(0, 1, (2, batch, 128)).astype(np.float32))
        kernel = recurrence._run_kernel(projected, Wh, h, c, backend)
        portable = recurrence._run_portable(projected, Wh, h, c)
        results[f"LSTM recurrence, batch {batch}"] = max(relative(a, b) for a, b in zip(kernel, portable))
    pool = nn.MaxPool1d(3, stride=3)
    for batch, samples in ((1, 80000), (3, 160000), (7, 80001 + 37)):
        x = mx.array(rng.normal(0, 1, (batch, samples, 1)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (80, 251, 1)).astype(np.float32))
        conv = mx.conv1d(x, weight, stride=10)
        results[f"|x| max-pool, {batch} x {samples} samples"] = relative(
            pooling.abs_max_pool(conv, pool, 3), pool(mx.abs(conv))
        )
    if backend == "cuda":
        for shape, out_channels, kernel, stride in ODD_SHAPES:
            x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
            weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32))
            padding = (kernel // 2, kernel // 2)
            ours = conv_kernel.conv2d(x, weight, (stride, stride), padding)
            product = wespeaker.unfolded_conv2d(x, weight, (stride,) * 2, padding)
            exact = float64_conv2d(x, weight, stride, padding[0])
            name = f"conv {shape} -> {out_channels}, {kernel}x{kernel} /{stride}"
            results[name + " vs product"] = relative(ours, product)
            results[name + " vs float64"] = relative(ours, exact)
            per_tap = conv_kernel.conv2d(x, weight, (stride, stride), padding, sums=1)
            partial = conv_kernel.conv2d(x, weight, (stride, stride), padding, sums=2)
            print(
                f"{name}: root mean square from float64, partial sums {rms(partial, exact):.2e}, "
                f"per tap only {rms(per_tap, exact):.2e}, product {rms(product, exact):.2e}"
            )
    for name, value in results.items():
        print(f"{name:<45} {value:.2e}  {'ok' if value <= TOLERANCE else 'TOO FAR'}")
    if backend == "cuda":
        time_convolutions(sweep="--sweep" in sys.argv, torch_too="--torch" in sys.argv)
    if backend == "cuda" and "--lstm-sweep" in sys.argv:
        time_recurrence()
    return 0 if all(value <= TOLERANCE for value in results.values()) else 1


def time_recurrence() -> None:
    """Milliseconds per layer of the recurrence kernel by tile and weight rows in registers (results must not move)."""
    rng = np.random.default_rng(0)
    for batch, steps in ((32, 293), (32, 589), (256, 293), (1024, 293)):
        projected = mx.array(rng.normal(0, 2, (2, batch, steps, 512)).astype(np.float32))
        Wh = mx.array(rng.normal(0, 0.2, (2, 512, 128)).astype(np.float32))
        h = mx.zeros((2, batch, 128))
        c = mx.zeros((2, batch, 128))
        reference = None
        for tile in (1, 2, 4, 8):
            for rows in (0, 32, 64) if tile <= 4 else (0, 32):  # tile 8 with 64: too many registers
                recurrence.TILE, recurrence.REGISTERS = tile, rows
                out = recurrence._run_kernel(projected, Wh, h, c, "cuda")[0]
                ms = milliseconds(lambda: recurrence._run_kernel(projected, Wh, h, c, "cuda"))
                reference = out if reference is None else reference
                diff = relative(out, reference)
                print(
                    f"LSTM batch {batch}, {steps} steps, tile {tile}, {rows} rows in registers: {ms:.3f} ms, {diff:.1e}"
                )
    recurrence.TILE, recurrence.REGISTERS = 0, -1


def milliseconds(function: Callable[[], mx.array]) -> float:
    """Median milliseconds of `REPEATS` evaluated calls of `function` (`timing.timed`)."""
    return timed(lambda: mx.eval(function()), REPEATS) * 1000


def float64_conv2d(x: mx.array, weight: mx.array, stride: int, padding: int) -> np.ndarray:
    """The convolution in float64 numpy, channels-last, as a reference."""
    x64, w64 = np.array(x, dtype=np.float64), np.array(weight, dtype=np.float64)
    x64 = np.pad(x64, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    kernel = w64.shape[1]
    height = (x64.shape[1] - kernel) // stride + 1
    width = (x64.shape[2] - kernel) // stride + 1
    out = np.zeros((x64.shape[0], height, width, w64.shape[0]))
    for dy in range(kernel):
        for dx in range(kernel):
            patch = x64[:, dy : dy + (height - 1) * stride + 1 : stride, dx : dx + (width - 1) * stride + 1 : stride]
            out += patch @ w64[:, dy, dx].T
    return out


CONV_SHAPES = (
    ((80, 998, 32), 32, 3, 1),
    ((80, 998, 32), 64, 3, 2),
    ((40, 499, 64), 64, 3, 1),
    ((40, 499, 64), 128, 3, 2),
    ((20, 250, 128), 128, 3, 1),
    ((20, 250, 128), 256, 3, 2),
    ((10, 125, 256), 256, 3, 1),
    ((80, 998, 32), 64, 1, 2),
)
SWEEP = {  # tiles whose three stages fit the 48 KiB of static shared memory (`conv_kernel.tile`)
    32: [(128, 32, 4, 4, 16), (128, 32, 8, 4, 16), (64, 32, 8, 4, 16), (64, 32, 4, 4, 32)],
    64: [(64, 64, 8, 4, 16), (128, 64, 8, 4, 16), (64, 64, 4, 4, 16), (32, 64, 4, 4, 16)],
    128: [(64, 64, 8, 4, 16), (128, 64, 8, 4, 16), (64, 64, 4, 4, 16), (64, 128, 8, 8, 16)],
}
SWEEP[256] = SWEEP[128]


def time_convolutions(batch: int = 32, sweep: bool = False, torch_too: bool = False) -> None:
    """Milliseconds per call at the ResNet's shapes for 10 s segments: the kernel with both sum modes, the unfolded
    product and (`torch_too`) PyTorch's conv2d (cuDNN, float32, TF32 off); `sweep` tries other tiles in both modes."""
    rng = np.random.default_rng(0)
    for (height, width, in_channels), out_channels, kernel, stride in CONV_SHAPES:
        x = mx.array(rng.normal(0, 1, (batch, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        routes = {
            "per tap only": lambda *args: conv_kernel.conv2d(*args, sums=1),
            "partial sums": lambda *args: conv_kernel.conv2d(*args, sums=2),
            "product": wespeaker.unfolded_conv2d,
        }
        times = {
            name: milliseconds(lambda route=route: route(x, weight, (stride, stride), padding))
            for name, route in routes.items()
        }
        kernel_name = ""
        if torch_too:
            times["PyTorch"], kernel_name = torch_milliseconds(x, weight, stride, padding[0])
        flops = 2 * batch * (height // stride) * (width // stride) * out_channels * in_channels * kernel * kernel
        default = conv_kernel.partial_sums(kernel * kernel)
        print(
            f"{batch} x {height} x {width} x {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride} "
            f"(the runtime's sums: {'per tap only' if default == 1 else 'partial'}): "
            + ", ".join(f"{name} {ms:.2f} ms ({flops / ms / 1e9:.1f} TFLOP/s)" for name, ms in times.items())
            + (f"\n    PyTorch's kernel: {kernel_name}" if kernel_name else "")
        )
        reference = conv_kernel.conv2d(x, weight, (stride, stride), padding, sums=1)
        for tiles in SWEEP[out_channels] if sweep else []:
            for sums in (1, 2) if kernel > 1 else (1,):
                result = conv_kernel.conv2d(x, weight, (stride, stride), padding, tiles, sums)
                ms = milliseconds(
                    lambda tiles=tiles, sums=sums: conv_kernel.conv2d(x, weight, (stride, stride), padding, tiles, sums)
                )
                diff = relative(result, reference)
                print(
                    f"    tiles {tiles}, sums {sums}: {ms:.2f} ms ({flops / ms / 1e9:.1f} TFLOP/s), "
                    f"diff from per tap only {diff:.1e}"
                )


def torch_milliseconds(x: mx.array, weight: mx.array, stride: int, padding: int) -> tuple[float, str]:
    """Median milliseconds of PyTorch's float32 conv2d (channels first, TF32 off) on the same values, and the name
    of the GPU kernel that took longest in one call (cuDNN's choice)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    tx = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous().cuda()
    tw = torch.from_numpy(np.array(weight)).permute(0, 3, 1, 2).contiguous().cuda()

    def convolve() -> None:
        torch.nn.functional.conv2d(tx, tw, stride=stride, padding=padding)
        torch.cuda.synchronize()

    with torch.inference_mode():
        ms = timed(convolve, REPEATS) * 1000
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
            convolve()
    kernel = max(profile.key_averages(), key=lambda event: event.device_time_total).key
    return ms, kernel


if __name__ == "__main__":
    sys.exit(main())
