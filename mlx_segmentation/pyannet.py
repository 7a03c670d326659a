"""PyanNet in MLX: SincNet > LSTM > feed-forward > classifier, as in pyannote.audio.

Attribute names follow pyannote's state-dict keys (`sincnet.conv1d.1.weight`, `linear.0.bias`,
`classifier.weight`) so that most tensors map by identity. Layouts are MLX's: convolutions are
(out, kernel, in) and activations are (batch, time, channels).
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import conv_kernel, cpu_blas, cpu_conv, norm_kernel, recurrence, sinc_kernel
from .config import FrameTiming, PyanNetConfig, Specifications
from .parts import WHOLE, Parts
from .pooling import abs_max_pool

SINC_FILTERS = 80  # 40 cosine + 40 sine filters (asteroid's ParamSincFB)
SINC_KERNEL = 251
CONV_CHANNELS = 60
CONV_KERNEL = 5
POOL = 3
LEAKY_SLOPE = 0.01  # torch.nn.functional.leaky_relu's default
MIN_FRAMES = 2  # instance norm needs more than one frame: torch refuses one, pyannote's min_num_frames
# Input samples per SincNet pass: a larger batch runs through SincNet in parts of this many windows'
# samples, one after the other, each stage a part of the forward's `Parts`, so that its intermediates
# (about 250 bytes per input sample on a GPU, 330 on the CPU: 20 GiB for 1024 windows of 5 s) stay
# near 1 GiB whatever the batch; the LSTM still sees the whole batch. Measured on an H100
# (benchmarks/results/h100_memory_sweep.log, 5 s windows): at 256 windows 826 MiB with parts of 2^22
# samples against 1,781 with 2^24 (PyTorch 1,423), 27 ms against 24.
SINCNET_CHUNK_SAMPLES = 2**22
# Input projections per LSTM part: a layer projects its input (x @ Wx^T + bias, 4 * hidden values per step,
# window and direction) a stretch of steps at a time and runs the recurrence over that stretch before the
# next, so that a GPU holds at most this many projected values per part, not the whole layer's (1.2 GB
# at 1024 windows of 5 s). The reverse direction takes the stretch mirrored from the end. Measured on an
# H100 (same log): an hour of speech at batch 1024 peaks at 4.1 GiB with 2^27 (pyannote.audio's 5.5 GiB)
# against 6.5 GiB with whole layers, 1.25 s against 1.10; smaller stretches cost more time for less memory.
LSTM_PART_VALUES = 2**27


def sincnet_layers(stride: int) -> list[tuple[int, int]]:
    """(kernel, stride) of each SincNet layer in order: conv, pool, conv, pool, conv, pool."""
    return [(SINC_KERNEL, stride), (POOL, POOL), (CONV_KERNEL, 1), (POOL, POOL), (CONV_KERNEL, 1), (POOL, POOL)]


def num_frames(num_samples: int, stride: int) -> int:
    """Number of output frames for `num_samples` input samples (0 if too short)."""
    frames = num_samples
    for kernel, step in sincnet_layers(stride):
        frames = (frames - kernel) // step + 1
        if frames < 1:
            return 0
    return frames


def receptive_field_size(num_frames: int, stride: int) -> int:
    """Input samples that `num_frames` consecutive output frames depend on."""
    size = num_frames
    for kernel, step in reversed(sincnet_layers(stride)):
        size = kernel + (size - 1) * step
    return size


def receptive_field_center(frame: int, stride: int) -> int:
    """Input sample at the centre of output frame `frame`'s receptive field."""
    center = frame
    for kernel, step in reversed(sincnet_layers(stride)):
        center = center * step + (kernel - 1) // 2
    return center


def min_num_samples(stride: int) -> int:
    """The shortest input the model accepts: the one that gives MIN_FRAMES output frames."""
    return receptive_field_size(MIN_FRAMES, stride)


def frame_timing(sample_rate: int, stride: int) -> FrameTiming:
    """Derive frame step, duration and start from the layers, as `Model.receptive_field` does."""
    size = receptive_field_size(1, stride)
    step = receptive_field_size(2, stride) - size
    center = receptive_field_center(0, stride)
    return FrameTiming(
        receptive_field_size=size,
        step_samples=step,
        center_samples=center,
        start=(center - (size - 1) / 2) / sample_rate,
        duration=size / sample_rate,
        step=step / sample_rate,
        min_num_samples=min_num_samples(stride),
    )


def mean_over_time(x: mx.array, block: int = 256) -> mx.array:
    """Mean over axis 1 of (batch, time, channels), summed in blocks to keep float32 rounding small.

    A plain float32 sum over tens of thousands of samples drifts by many ulps; instance norm then
    multiplies that drift by up to 1 / sqrt(eps) ~ 316 on near-constant channels (silence).
    """
    batch, steps, channels = x.shape
    if steps <= block:
        return mx.mean(x, axis=1, keepdims=True)
    padded = mx.pad(x, [(0, 0), (0, -steps % block), (0, 0)])
    partial = padded.reshape(batch, -1, block, channels).sum(axis=2)
    return partial.sum(axis=1, keepdims=True) / steps


class InstanceNorm(nn.Module):
    """torch's InstanceNorm1d(affine=True) on (batch, time, channels): biased variance, eps 1e-5.

    The statistics are taken around each channel's first value, in two passes with blocked sums, so
    that a constant channel (digital silence) normalises to exactly zero as in float64, and long
    inputs keep PyTorch's precision; mx.fast.layer_norm (behind nn.InstanceNorm) does neither.
    """

    def __init__(self, dims: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((dims,))
        self.bias = mx.zeros((dims,))

    def __call__(self, x: mx.array) -> mx.array:
        if norm_kernel.applies(x):  # one CUDA kernel, statistics as here
            return norm_kernel.pool_norm(x, self.weight, self.bias, self.eps)
        # Statistics in float32: squares of SincNet activations overflow float16.
        return _instance_norm(x.astype(mx.float32), self.weight, self.bias, self.eps).astype(x.dtype)


@partial(mx.compile, shapeless=False)
def _instance_norm(x: mx.array, weight: mx.array, bias: mx.array, eps: float) -> mx.array:
    """Compiled, so that a GPU runs the element-wise steps between the two reductions fused."""
    shifted = x - x[:, :1]
    centred = shifted - mean_over_time(shifted)
    variance = mean_over_time(mx.square(centred))
    return weight * (centred * mx.rsqrt(variance + eps)) + bias


class SincNet(nn.Module):
    """pyannote.audio's SincNet block; the sinc filters are a plain (precomputed) convolution."""

    def __init__(self, stride: int):
        super().__init__()
        self.wav_norm1d = InstanceNorm(1)
        self.conv1d = [
            nn.Conv1d(1, SINC_FILTERS, SINC_KERNEL, stride=stride, bias=False),
            nn.Conv1d(SINC_FILTERS, CONV_CHANNELS, CONV_KERNEL),
            nn.Conv1d(CONV_CHANNELS, CONV_CHANNELS, CONV_KERNEL),
        ]
        self.pool1d = [nn.MaxPool1d(POOL, stride=POOL) for _ in self.conv1d]
        self.norm1d = [InstanceNorm(conv.weight.shape[0]) for conv in self.conv1d]

    def stage(self, c: int, inputs: mx.array, parts: Parts = WHOLE) -> mx.array:
        """Stage `c`: convolution (then abs for the sinc filters), max-pool, instance norm, LeakyReLU, in `parts`."""
        conv, norm = self.conv1d[c], self.norm1d[c]
        on_cpu = cpu_conv.applies_1d(inputs, conv)  # a tile of frames at a time on the CPU's cores
        if c == 0 and on_cpu:  # the sinc filters' |output| max-pooled in the tiles
            pooled = parts(cpu_conv.conv1d(inputs, conv.weight, conv.stride, pool=POOL))
        elif c == 0 and sinc_kernel.applies(inputs, conv.weight, conv.stride, POOL):  # the same in one CUDA kernel
            pooled = parts(sinc_kernel.conv_abs_max_pool(inputs, conv.weight, conv.stride, POOL))
        elif c == 0:  # the sinc filters' output, the largest activation, released once pooled
            pooled = parts(abs_max_pool(conv(inputs), self.pool1d[c], POOL))
        else:
            if on_cpu:
                convolved = cpu_conv.conv1d(inputs, conv.weight, conv.stride) + conv.bias
            elif conv.stride == 1 and conv_kernel.applies_1d(inputs, conv.weight):  # stage 1: 80 in channels
                convolved = conv_kernel.conv1d(inputs, conv.weight) + conv.bias
            else:
                convolved = conv(inputs)
            if norm_kernel.applies(convolved):  # max-pool, instance norm and LeakyReLU in one CUDA kernel
                return norm_kernel.pool_norm(convolved, norm.weight, norm.bias, norm.eps, POOL, LEAKY_SLOPE)
            pooled = self.pool1d[c](convolved)
        if norm_kernel.applies(pooled):
            return norm_kernel.pool_norm(pooled, norm.weight, norm.bias, norm.eps, slope=LEAKY_SLOPE)
        return nn.leaky_relu(norm(pooled), negative_slope=LEAKY_SLOPE)

    def __call__(self, waveforms: mx.array, parts: Parts = WHOLE) -> mx.array:
        """(batch, samples) -> (batch, frames, 60), `SINCNET_CHUNK_SAMPLES` at a time, in `parts` (default: whole)."""
        chunk = max(1, SINCNET_CHUNK_SAMPLES // waveforms.shape[1])
        if waveforms.shape[0] <= chunk:
            return self.features(waveforms, parts)
        features = []
        for windows in mx.split(waveforms, range(chunk, len(waveforms), chunk)):
            features.append(self.features(windows, parts))
        return mx.concatenate(features)

    def features(self, waveforms: mx.array, parts: Parts) -> mx.array:
        outputs = parts(self.wav_norm1d(waveforms[:, :, None]))
        for c in range(len(self.conv1d)):
            outputs = parts(self.stage(c, outputs, parts))
        return outputs


class LSTMLayer(nn.Module):
    """One LSTM layer, both directions stacked on the first axis (gate order i, f, g, o as in PyTorch).

    `Wx` is (directions, 4 * hidden, input), `Wh` is (directions, 4 * hidden, hidden) and `bias`
    (directions, 4 * hidden) holds PyTorch's `bias_ih + bias_hh`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_directions: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.Wx = mx.zeros((num_directions, 4 * hidden_size, input_size))
        self.Wh = mx.zeros((num_directions, 4 * hidden_size, hidden_size))
        self.bias = mx.zeros((num_directions, 4 * hidden_size))

    def __call__(
        self, x: mx.array, state: tuple[mx.array, mx.array] | None = None, parts: Parts = WHOLE
    ) -> tuple[mx.array, tuple[mx.array, mx.array]]:
        """(batch, time, input) -> (batch, time, directions * hidden), and the final (h, c).

        `state` and the returned state are (directions, batch, hidden), like PyTorch's (h_n, c_n)
        for one layer. Runs `LSTM_PART_VALUES` projections at a time, each stretch a part of `parts`.
        """
        num_directions, batch, steps = self.Wx.shape[0], x.shape[0], x.shape[1]
        if state is None:
            h = mx.zeros((num_directions, batch, self.hidden_size), dtype=x.dtype)
            c = mx.zeros_like(h)
        else:
            h, c = state
        count = -(-steps * num_directions * batch * 4 * self.hidden_size // LSTM_PART_VALUES)
        if count <= 1:
            outputs, h, c = self.recur(x[None], h, c)
            return outputs, (h, c)
        span = -(-steps // count)  # stretches of equal length, the last one shorter
        stretches = []
        for start in range(0, steps, span):
            stop = min(start + span, steps)
            # the reverse direction starts from the last step: its stretch is the mirrored one
            inputs = [x[:, start:stop], x[:, steps - stop : steps - start]][:num_directions]
            outputs, h, c = self.recur(mx.stack(inputs), h, c)
            stretches.append(parts(outputs))
        forward = mx.concatenate([s[..., : self.hidden_size] for s in stretches], axis=1)
        if num_directions == 1:
            return forward, (h, c)
        backward = mx.concatenate([s[..., self.hidden_size :] for s in reversed(stretches)], axis=1)
        return mx.concatenate([forward, backward], axis=-1), (h, c)

    def recur(self, inputs: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """`recurrence.run` over the projections of (1 or directions, batch, time, input); on the CPU with MKL, numpy
        from the product on, its rows shared among the cores (the same sums as MLX's addmm, which runs on one)."""
        if not (cpu_conv.on_mkl_cpu() and recurrence.numpy_applies(inputs.dtype)):
            return recurrence.run(self.project(inputs), self.Wh, h, c)
        x, weights, bias = np.ascontiguousarray(inputs), np.asarray(self.Wx), np.asarray(self.bias)
        rows = x.reshape(len(x), -1, x.shape[-1])
        projected = np.empty((len(weights), rows.shape[1], weights.shape[1]), np.float32)
        for d in range(len(weights)):  # one input for every direction, or one each
            cpu_blas.linear(rows[min(d, len(x) - 1)], weights[d], bias[d], out=projected[d])
        return recurrence.run_numpy(projected.reshape(len(weights), *x.shape[1:3], -1), self.Wh, h, c)

    def project(self, inputs: mx.array) -> mx.array:
        """(directions, batch, time, input) -> the input projections (directions, batch, time, 4 * hidden)."""
        # the bias in the product: one buffer instead of two, and 10 to 15% faster on an H100 (segmentation_ops.py)
        return mx.addmm(self.bias[:, None, None, :], inputs, self.Wx.transpose(0, 2, 1)[:, None])


class LSTM(nn.Module):
    """A stack of LSTM layers (pyannote's monolithic and per-layer LSTMs compute the same thing)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool):
        super().__init__()
        directions = 2 if bidirectional else 1
        sizes = [input_size] + [hidden_size * directions] * (num_layers - 1)
        self.layers = [LSTMLayer(size, hidden_size, directions) for size in sizes]

    def __call__(self, x: mx.array, parts: Parts = WHOLE) -> mx.array:
        """The layers one after the other, in `parts` (default: queued whole)."""
        for layer in self.layers:
            x, _ = layer(x, parts=parts)
            x = parts(x)
        return x


def linear_activation(x: mx.array) -> mx.array:
    """After each feed-forward layer: LeakyReLU, as pyannote's PyanNet.forward (not ReLU)."""
    return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


class PyanNet(nn.Module):
    """pyannote.audio's PyanNet. Call it on (batch, samples) at the model's sample rate."""

    def __init__(self, config: PyanNetConfig):
        super().__init__()
        self.config = config
        lstm = config.lstm
        self.sincnet = SincNet(config.sincnet.stride)
        self.lstm = LSTM(CONV_CHANNELS, lstm.hidden_size, lstm.num_layers, lstm.bidirectional)
        features = lstm.hidden_size * (2 if lstm.bidirectional else 1)
        self.linear = []
        for _ in range(config.linear.num_layers):
            self.linear.append(nn.Linear(features, config.linear.hidden_size))
            features = config.linear.hidden_size
        self.classifier = nn.Linear(features, config.specifications.num_outputs)

    @property
    def specifications(self) -> Specifications:
        return self.config.specifications

    @property
    def frames(self) -> FrameTiming:
        return self.config.frames

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples, self.config.sincnet.stride)

    def activation(self, logits: mx.array) -> mx.array:
        if self.specifications.activation == "log_softmax":
            return logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return mx.sigmoid(logits)

    def __call__(self, waveforms: mx.array, *, parts: Parts | None = None) -> mx.array:
        """(batch, samples) or (batch, 1, samples) -> (batch, frames, classes).

        Returns what pyannote's `Model.forward` returns: probabilities for multilabel models,
        log-probabilities for powerset models. It computes in the weights' dtype. SincNet and the
        LSTM are evaluated in `parts` as they are queued (default: a `Parts()` of this call's own).
        """
        if waveforms.ndim == 3 and waveforms.shape[1] == self.config.num_channels == 1:
            waveforms = waveforms[:, 0]
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms shaped (batch, samples), got {tuple(waveforms.shape)}")
        if waveforms.shape[1] < self.frames.min_num_samples:
            raise ValueError(
                f"{waveforms.shape[1]} samples is too short: the model needs at least {self.frames.min_num_samples}"
            )
        parts = Parts() if parts is None else parts
        outputs = self.lstm(self.sincnet(waveforms.astype(self.classifier.weight.dtype), parts), parts)
        for linear in self.linear:
            outputs = linear_activation(linear(outputs))
        return self.activation(self.classifier(outputs))
