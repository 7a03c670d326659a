"""The convolution kernel with its tiles copied by cp.async in a three-stage ring, against the register-staged one.

    PYTHONPATH=.:tests:benchmarks python benchmarks/pipelined_conv.py [SEGMENTATION WESPEAKER [--minutes 60]]

Both kernels sum each output in the same order, so their outputs must be equal bit for bit: checked on random
inputs of odd sizes for both sum modes and several tiles. Then milliseconds per call at the ResNet's shapes for
10 s x 32, and, given the two checkpoints, the hour's embeddings (`embed_windows`) with each kernel, twice.
"""

from __future__ import annotations  # noqa: I001

import sys
import tempfile
import time
from pathlib import Path

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np

from gpu_kernels import CONV_SHAPES, milliseconds
from mlx_segmentation import conv_kernel

TILES = {32: [(128, 32, 8, 4, 16), (64, 32, 8, 4, 16)], 64: [(64, 64, 8, 4, 16), (128, 64, 8, 4, 16)]}
TILES[128] = TILES[256] = TILES[64]


def main() -> int:
    rng = np.random.default_rng(0)
    equal = True
    for shape, out_channels, kernel, stride in (
        ((3, 80, 37, 32), 32, 3, 1),
        ((3, 80, 37, 32), 64, 3, 2),
        ((2, 40, 19, 64), 128, 1, 2),
        ((5, 20, 13, 128), 128, 3, 1),
        ((1, 10, 7, 256), 256, 3, 1),
    ):
        x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        for tiles in TILES[out_channels]:
            for sums in (1, 2):
                ours = conv_kernel.conv2d(x, weight, (stride, stride), padding, tiles, sums, pipelined=True)
                staged = conv_kernel.conv2d(x, weight, (stride, stride), padding, tiles, sums, pipelined=False)
                same = bool(mx.array_equal(ours, staged).item())
                equal &= same
                print(f"conv {shape} -> {out_channels}, {kernel}x{kernel} /{stride}, {tiles}, sums {sums}: {same}")
    batch = 32
    for (height, width, in_channels), out_channels, kernel, stride in CONV_SHAPES:
        x = mx.array(rng.normal(0, 1, (batch, height, width, in_channels)).astype(np.float32))
        weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, in_channels)).astype(np.float32))
        padding = (kernel // 2, kernel // 2)
        flops = 2 * batch * (height // stride) * (width // stride) * out_channels * in_channels * kernel * kernel
        times = {}
        for tiles in TILES[out_channels]:
            for pipelined in (False, True):
                times[f"{tiles[:2]} {'cp.async' if pipelined else 'staged'}"] = milliseconds(
                    lambda tiles=tiles, pipelined=pipelined: conv_kernel.conv2d(
                        x, weight, (stride, stride), padding, tiles, pipelined=pipelined
                    )
                )
        print(
            f"{batch} x {height} x {width} x {in_channels} -> {out_channels}, {kernel}x{kernel} /{stride}: "
            + ", ".join(f"{name} {ms:.2f} ms ({flops / ms / 1e9:.1f} TFLOP/s)" for name, ms in times.items()),
            flush=True,
        )
    if len(sys.argv) >= 3:
        hour(Path(sys.argv[1]), Path(sys.argv[2]))
    return 0 if equal else 1


def hour(segmentation: Path, embedding: Path, minutes: float = 60.0) -> None:
    from community_1 import community_1

    from checks.audio import long_recording
    from mlx_segmentation.audio import open_audio
    from mlx_segmentation.pipeline import embed_windows, segment_windows

    rate = 16000
    recording = long_recording(minutes * 60)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = community_1(Path(tmp), segmentation, embedding)
    for pipelined in (False, True):
        conv_kernel.PIPELINED = pipelined
        pipeline(recording[: 30 * rate], sample_rate=rate)

    def audio():
        return open_audio(recording, rate, source_rate=rate)

    segmentations = segment_windows(pipeline.segmentation, audio(), pipeline.config)
    masks = pipeline.masks(segmentations.binarized, segmentations.chunks)
    first = None
    for pipelined in (False, True, False, True):
        conv_kernel.PIPELINED = pipelined
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()
        start = time.perf_counter()
        embeddings = embed_windows(pipeline.embedding, audio(), pipeline.segmentation, masks, pipeline.config)
        mx.synchronize()
        seconds = time.perf_counter() - start
        same = first is None or np.array_equal(embeddings, first, True)
        first = embeddings if first is None else first
        print(
            f"{minutes:g} min embeddings, {'cp.async' if pipelined else 'staged'}: {seconds:.3f} s, "
            f"peak {mx.get_peak_memory() / 2**20:,.0f} MiB, the same as the first: {same}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
