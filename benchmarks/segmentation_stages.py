"""Where a segmentation forward spends its time on a GPU, stage by stage, and the fused sinc kernel against MLX's conv.

    python benchmarks/segmentation_stages.py SEGMENTATION_CHECKPOINT [BATCH ...] [--minutes 60]

Converts the checkpoint (no checks), cuts windows of the model's duration from real speech, then for each
batch prints the median milliseconds of the whole forward (in parts, as the runtime) and of each of its
pieces alone on its own inputs: the input's normalisation, each SincNet stage's convolution, pooling and
normalisation (SincNet's pieces on one part of `pyannet.SINCNET_CHUNK_SAMPLES` samples, then times the
parts per batch), the first stage's convolution, |.| and pooling as `sinc_kernel`'s one kernel, the second
stage's convolution through `conv_kernel` too, each LSTM layer's input projections and recurrence, and the
feed-forward head, and the instance norms (with their max-pool and LeakyReLU) as MLX's operations and as
`norm_kernel`'s one kernel. It compares the kernels' outputs with MLX's operations' and both with float64.
Then an hour of speech through speech detection at each batch, with every kernel and without the norm
kernel (two runs each, alternating): seconds and peak memory.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import mlx.nn as nn
import numpy as np

from checks.audio import long_recording
from converter.build import build
from mlx_segmentation import conv_kernel, norm_kernel, pyannet, recurrence, sinc_kernel
from mlx_segmentation.audio import open_audio
from mlx_segmentation.inference import segment
from mlx_segmentation.parts import Parts
from mlx_segmentation.pooling import abs_max_pool
import segmentation_ops
from timing import timed

REPEATS = 10
COMPARED = 2  # windows compared with float64 (on the host)


def ms(function: Callable[[], mx.array]) -> float:
    return timed(lambda: mx.eval(function()), REPEATS) * 1000


def sinc_exact(samples: np.ndarray, weight: np.ndarray, stride: int, pool: int) -> np.ndarray:
    """float64 max over `pool` frames of |strided convolution|: (batch, pooled, filters)."""
    out = np.abs(segmentation_ops.sinc_exact(samples, weight, stride))
    pooled = out.shape[1] // pool
    return out[:, : pooled * pool].reshape(len(out), pooled, pool, -1).max(axis=2)


def mlx_norm(x: mx.array, norm: pyannet.InstanceNorm, pool: int, slope: float | None) -> mx.array:
    """The model's max-pool, instance norm and LeakyReLU as MLX's operations (what runs without `norm_kernel`)."""
    pooled = nn.MaxPool1d(pool, stride=pool)(x) if pool > 1 else x
    out = pyannet._instance_norm(pooled, norm.weight, norm.bias, norm.eps)
    return out if slope is None else nn.leaky_relu(out, slope)


def exact_norm(x: np.ndarray, norm: pyannet.InstanceNorm, pool: int, slope: float | None) -> np.ndarray:
    """The same in float64."""
    frames = x.shape[1] // pool
    pooled = x[:, : frames * pool].reshape(len(x), frames, pool, -1).max(axis=2).astype(np.float64)
    normed = (pooled - pooled.mean(axis=1, keepdims=True)) / np.sqrt(pooled.var(axis=1, keepdims=True) + norm.eps)
    out = np.array(norm.weight, np.float64) * normed + np.array(norm.bias, np.float64)
    return out if slope is None else np.where(out > 0, out, out * slope)


def compare_norms(
    show, batch: int, name: str, x: mx.array, norm: pyannet.InstanceNorm, pool: int, slope: float | None
) -> None:
    """`name` as MLX's operations and as `norm_kernel`: times, and each one's distance from float64."""
    show(f"{name} (MLX)", ms(lambda: mlx_norm(x, norm, pool, slope)), True)
    if not norm_kernel.applies(x):
        return
    kernel = lambda: norm_kernel.pool_norm(x, norm.weight, norm.bias, norm.eps, pool, slope)  # noqa: E731
    show(f"{name} (norm_kernel)", ms(kernel), True)
    exact = exact_norm(np.array(x[:COMPARED]), norm, pool, slope)
    for how, ours in (("norm_kernel", kernel()), ("MLX", mlx_norm(x, norm, pool, slope))):
        distance = np.abs(np.array(ours[:COMPARED], np.float64) - exact).max() / np.abs(exact).max()
        print(f"batch {batch}, {name}, {how} from float64: {distance:.2e} of the output's scale", flush=True)


def stages(model: pyannet.PyanNet, windows: mx.array) -> None:
    """Each piece of one forward at this batch, timed alone."""
    batch, samples = windows.shape
    sincnet = model.sincnet
    chunk = min(batch, max(1, pyannet.SINCNET_CHUNK_SAMPLES // samples))
    parts_per_batch = -(-batch // chunk)

    def show(name: str, milliseconds: float, per_part: bool = False) -> None:
        total = milliseconds * parts_per_batch if per_part else milliseconds
        extra = f" ({milliseconds:.3f} ms a part of {chunk} windows)" if per_part else ""
        print(f"batch {batch}, {name}: {total:.2f} ms{extra}", flush=True)

    show("whole forward, in parts", ms(lambda: model(windows)))
    applies, norm_kernel.applies = norm_kernel.applies, lambda *args: False
    show("whole forward, in parts, without norm_kernel", ms(lambda: model(windows)))
    norm_kernel.applies = applies
    x = windows[:chunk][:, :, None]
    compare_norms(show, batch, "input normalisation", x, sincnet.wav_norm1d, 1, None)
    normed = sincnet.wav_norm1d(x)
    mx.eval(normed)
    conv = sincnet.conv1d[0]
    show("stage 0 convolution (MLX conv1d)", ms(lambda: conv(normed)), True)
    convolved = conv(normed)
    mx.eval(convolved)
    show(
        "stage 0 |.| and max-pool (kernel)", ms(lambda: abs_max_pool(convolved, sincnet.pool1d[0], pyannet.POOL)), True
    )
    two_ops = abs_max_pool(convolved, sincnet.pool1d[0], pyannet.POOL)
    del convolved
    if sinc_kernel.applies(normed, conv.weight, conv.stride, pyannet.POOL):
        fused = lambda: sinc_kernel.conv_abs_max_pool(normed, conv.weight, conv.stride, pyannet.POOL)  # noqa: E731
        show("stage 0 as one kernel (sinc_kernel)", ms(fused), True)
        one = fused()
        scale = float(mx.max(mx.abs(two_ops)))
        difference = float(mx.max(mx.abs(one - two_ops))) / scale
        print(f"batch {batch}, sinc_kernel against conv1d + pool: max|diff| {difference:.2e} of the output's scale")
        exact = sinc_exact(np.array(normed[:COMPARED, :, 0]), np.array(conv.weight[:, :, 0]), conv.stride, pyannet.POOL)
        for name, ours in (("sinc_kernel", one), ("conv1d + pool", two_ops)):
            distance = np.abs(np.array(ours[:COMPARED], np.float64) - exact).max() / np.abs(exact).max()
            print(f"batch {batch}, {name} from float64: {distance:.2e} of the output's scale", flush=True)
    outputs = two_ops
    for c in range(len(sincnet.conv1d)):
        if c > 0:
            conv = sincnet.conv1d[c]
            show(f"stage {c} convolution (MLX conv1d)", ms(lambda: conv(outputs)), True)
            convolved = conv(outputs)
            if conv_kernel.applies_1d(outputs, conv.weight):
                kernel = lambda: conv_kernel.conv1d(outputs, conv.weight) + conv.bias  # noqa: E731
                show(f"stage {c} convolution (conv_kernel)", ms(kernel), True)
                x64 = np.array(outputs[:COMPARED], np.float64)
                w64 = np.array(conv.weight, np.float64)  # (out, taps, in)
                frames = np.lib.stride_tricks.sliding_window_view(x64, w64.shape[1], axis=1)  # (b, t, in, taps)
                exact = np.einsum("btik,oki->bto", frames, w64) + np.array(conv.bias, np.float64)
                for name, ours in (("conv_kernel", kernel()), ("MLX conv1d", convolved)):
                    distance = np.abs(np.array(ours[:COMPARED], np.float64) - exact).max() / np.abs(exact).max()
                    print(f"batch {batch}, stage {c} {name} from float64: {distance:.2e} of the output's scale")
            show(f"stage {c} max-pool", ms(lambda: sincnet.pool1d[c](convolved)), True)
            mx.eval(convolved)
            compare_norms(
                show,
                batch,
                f"stage {c} max-pool, instance norm and LeakyReLU",
                convolved,
                sincnet.norm1d[c],
                pyannet.POOL,
                pyannet.LEAKY_SLOPE,
            )
            outputs = mlx_norm(convolved, sincnet.norm1d[c], pyannet.POOL, pyannet.LEAKY_SLOPE)
        else:
            compare_norms(
                show,
                batch,
                f"stage {c} instance norm and LeakyReLU",
                outputs,
                sincnet.norm1d[c],
                1,
                pyannet.LEAKY_SLOPE,
            )
            outputs = mlx_norm(outputs, sincnet.norm1d[c], 1, pyannet.LEAKY_SLOPE)
        mx.eval(outputs)
    show("SincNet whole, in parts", ms(lambda: sincnet(windows, Parts())))
    features = sincnet(windows, Parts())
    mx.eval(features)
    for i, layer in enumerate(model.lstm.layers):
        stacked = mx.stack([features] * layer.Wx.shape[0])
        show(f"LSTM layer {i} input projections", ms(lambda: layer.project(stacked)))
        projected = layer.project(stacked)
        h = mx.zeros((layer.Wx.shape[0], batch, layer.hidden_size))
        show(f"LSTM layer {i} recurrence", ms(lambda: recurrence.run(projected, layer.Wh, h, h)[0]))
        show(f"LSTM layer {i} as the runtime runs it", ms(lambda: layer(features, parts=Parts())[0]))
        features = layer(features, parts=Parts())[0]
        mx.eval(features)

    def head() -> mx.array:
        out = features
        for linear in model.linear:
            out = pyannet.linear_activation(linear(out))
        return model.activation(model.classifier(out))

    show("feed-forward and classifier", ms(head))


def hour(model: pyannet.PyanNet, batch: int, minutes: float) -> None:
    """Speech detection over `minutes` of speech with every kernel and without the norm kernel (two runs each,
    alternating)."""
    samples = long_recording(minutes * 60, seed=0).astype(np.float32)
    norm_applies = norm_kernel.applies
    for run in range(2):
        for how, norm in (("every kernel", True), ("without norm_kernel", False)):
            norm_kernel.applies = norm_applies if norm else (lambda *args: False)
            mx.synchronize()
            mx.clear_cache()
            mx.reset_peak_memory()
            start = time.perf_counter()
            result = segment(model, open_audio(samples, 16000, source_rate=16000), batch_size=batch)
            seconds = time.perf_counter() - start
            print(
                f"{minutes:g} min at batch {batch}, {how}, run {run + 1}: {seconds:.3f} s, "
                f"peak {mx.get_peak_memory() / 2**20:.0f} MiB, speech sum {float(result.speech.sum()):.6f}",
                flush=True,
            )
    norm_kernel.applies = norm_applies


def main(checkpoint: Path, batches: list[int], minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    print(f"MLX {mx.__version__} on {mx.default_device()}, {mx.device_info(mx.gpu).get('device_name', '')}")
    window = round(model.specifications.duration * model.config.sample_rate)
    audio = long_recording(max(batch for batch in batches) * 1.0 + 20, seed=1).astype(np.float32)
    step = model.config.sample_rate  # one window per second of speech
    for batch in batches:
        windows = mx.array(np.stack([audio[i * step : i * step + window] for i in range(batch)]))
        mx.eval(windows)
        stages(model, windows)
    for batch in batches:
        if minutes > 0:
            hour(model, batch, minutes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("batches", type=int, nargs="*", default=[32, 1024])
    parser.add_argument("--minutes", type=float, default=60.0, help="the recording's length (0: no recording)")
    args = parser.parse_args()
    main(args.checkpoint, args.batches, args.minutes)
