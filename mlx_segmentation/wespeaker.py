"""pyannote.audio's WeSpeakerResNet34 in MLX: kaldi fbank > ResNet34 > statistics pooling > embedding.

Attribute names follow pyannote's state-dict keys (`resnet.layer2.0.shortcut.1.running_var`).
Convolutions run channels-last: pyannote's (batch, 1, frequency, time) images are (batch, frequency,
time, channels) here, so a kernel's height is frequency and its width time, as in PyTorch.
"""

from __future__ import annotations

import os
from functools import lru_cache, partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from . import conv_kernel, cpu_conv, fbank, recurrence
from .config import WeSpeakerConfig
from .parts import WHOLE, Parts

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default
POOL_EPS = 1e-8  # pyannote's weighted statistics pooling
# How convolutions run (MLX_SEGMENTATION_CONV): "auto" (`conv_kernel` on CUDA, "blas" on a CPU with MKL,
# MLX's conv2d elsewhere), "conv2d", "matmul" (`unfolded_conv2d`), "kernel" (`conv_kernel` where it applies,
# else "matmul") or "blas" (`cpu_conv` where it applies, else MLX's conv2d); any other value is "auto".
# MLX 0.32's CUDA conv2d fails with "cudaMallocAsync ... out of memory" on some batch shapes
# (benchmarks/conv2d_oom.py reproduces it); the other routes compute the same float32 sums.
CONV_ROUTE = os.environ.get("MLX_SEGMENTATION_CONV", "auto")


def route() -> str:
    """The route convolutions take now: "conv2d", "matmul", "kernel" or "blas"."""
    if CONV_ROUTE in ("conv2d", "matmul", "kernel", "blas"):
        return CONV_ROUTE
    if conv_kernel.on_cuda():
        return "kernel"
    return "blas" if cpu_conv.on_mkl_cpu() else "conv2d"


def unfolded_conv2d(x: mx.array, weight: mx.array, stride: tuple[int, int], padding: tuple[int, int]) -> mx.array:
    """mx.conv2d(x, weight, stride, padding) as one product: (batch, h, w, kh * kw * in) patches @ weight^T."""
    out_channels, kernel_h, kernel_w, _ = weight.shape
    if padding != (0, 0):
        x = mx.pad(x, [(0, 0), (padding[0], padding[0]), (padding[1], padding[1]), (0, 0)])
    height = (x.shape[1] - kernel_h) // stride[0] + 1
    width = (x.shape[2] - kernel_w) // stride[1] + 1
    patches = [
        x[:, dy : dy + (height - 1) * stride[0] + 1 : stride[0], dx : dx + (width - 1) * stride[1] + 1 : stride[1]]
        for dy in range(kernel_h)
        for dx in range(kernel_w)
    ]
    unfolded = patches[0] if len(patches) == 1 else mx.concatenate(patches, axis=-1)
    return unfolded @ weight.reshape(out_channels, -1).T


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters), run by the route `route()` names."""

    def __call__(self, x: mx.array) -> mx.array:
        chosen = route()
        if chosen == "blas" and cpu_conv.applies(x, self.weight, self.stride, self.padding):
            return cpu_conv.conv2d(x, self.weight)
        if chosen in ("conv2d", "blas"):
            return super().__call__(x)
        if chosen == "kernel" and conv_kernel.applies(x, self.weight):
            return conv_kernel.conv2d(x, self.weight, self.stride, self.padding)
        return unfolded_conv2d(x, self.weight, self.stride, self.padding)


def _eval_batch_norm(x: mx.array, mean: mx.array, var: mx.array, weight: mx.array, bias: mx.array, eps: float):
    return weight * ((x - mean) * mx.rsqrt(var + eps)) + bias  # nn.BatchNorm's arithmetic in eval mode


@partial(mx.compile, shapeless=True)
def _batch_norm_relu(x, mean, var, weight, bias, eps):
    return mx.maximum(_eval_batch_norm(x, mean, var, weight, bias, eps), 0)


@partial(mx.compile, shapeless=True)
def _batch_norm_add_relu(x, mean, var, weight, bias, eps, shortcut):
    return mx.maximum(_eval_batch_norm(x, mean, var, weight, bias, eps) + shortcut, 0)


def fused(bn: nn.BatchNorm) -> bool:
    """Whether `batch_norm_relu` runs as one compiled kernel: on a GPU (MLX's compiled CPU kernel is slower than its
    separate operations there), in eval mode."""
    return recurrence.gpu_backend() is not None and not bn.training


def batch_norm_relu(bn: nn.BatchNorm, x: mx.array, shortcut: mx.array | None = None) -> mx.array:
    """relu(bn(x)), or relu(bn(x) + shortcut): on a GPU one kernel of the same arithmetic (`mx.compile`) instead of
    five or six, each a pass over the activation (1.2 times faster at 10 s x 32 on an H100; docs/speed.md)."""
    if not fused(bn):
        out = bn(x)
        return nn.relu(out if shortcut is None else out + shortcut)
    statistics = (bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps)
    if shortcut is None:
        return _batch_norm_relu(x, *statistics)
    return _batch_norm_add_relu(x, *statistics, shortcut)


def conv_bn(
    conv: Conv2d, bn: nn.BatchNorm, x: mx.array, relu: bool = False, shortcut: mx.array | None = None
) -> mx.array:
    """bn(conv(x)), + shortcut and ReLU'd where asked (a shortcut only with ReLU): on CUDA one kernel, the batch norm
    applied as the convolution writes its output (`conv_kernel`'s epilogue), elsewhere `batch_norm_relu` after it."""
    if route() == "kernel" and conv_kernel.applies(x, conv.weight) and fused(bn):
        return conv_kernel.conv2d(x, conv.weight, conv.stride, conv.padding, norm=bn, relu=relu, shortcut=shortcut)
    out = conv(x)
    return batch_norm_relu(bn, out, shortcut) if relu else bn(out)


class BasicBlock(nn.Module):
    """WeSpeaker's BasicBlock: two 3x3 convolutions with batch norm, and a (projected) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm(planes, eps=BN_EPS)
        self.conv2 = Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm(planes, eps=BN_EPS)
        self.shortcut = []
        if stride != 1 or in_planes != planes:
            self.shortcut = [
                Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm(planes, eps=BN_EPS),
            ]

    def __call__(self, x: mx.array) -> mx.array:
        out = conv_bn(self.conv1, self.bn1, x, relu=True)
        shortcut = conv_bn(*self.shortcut, x) if self.shortcut else x
        return conv_bn(self.conv2, self.bn2, out, relu=True, shortcut=shortcut)


class ResNet(nn.Module):
    """WeSpeaker's ResNet with TSTP pooling and one embedding layer (`two_emb_layer=False`)."""

    def __init__(self, num_blocks: tuple[int, ...], m_channels: int, feat_dim: int, embed_dim: int):
        super().__init__()
        self.conv1 = Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm(m_channels, eps=BN_EPS)
        in_planes = m_channels
        for index, (blocks, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2)), start=1):
            planes = m_channels * 2 ** (index - 1)
            layer = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layer.append(BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
            setattr(self, f"layer{index}", layer)
        stats_dim = (feat_dim // 8) * m_channels * 8
        self.seg_1 = nn.Linear(2 * stats_dim, embed_dim)

    @property
    def layers(self) -> list[list[BasicBlock]]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stem(self, features: mx.array) -> mx.array:
        """(batch, frames, mels) fbank -> (batch, mels, frames, m_channels)."""
        return conv_bn(self.conv1, self.bn1, features.transpose(0, 2, 1)[..., None], relu=True)

    def frames(self, features: mx.array, parts: Parts = WHOLE) -> mx.array:
        """Frame-level features (batch, channels x frequency, frames), flattened as pyannote's TSTP does;
        the stem and each block evaluated in `parts` (default: queued whole)."""
        out = parts(self.stem(features))
        for layer in self.layers:
            for block in layer:
                out = parts(block(out))
        batch, frequency, frames, channels = out.shape
        return out.transpose(0, 3, 1, 2).reshape(batch, channels * frequency, frames)


def statistics_pooling(sequences: mx.array, weights: mx.array | None = None) -> mx.array:
    """pyannote's StatsPool: mean then unbiased standard deviation over frames, concatenated.

    sequences (batch, features, frames); weights (batch, frames) or (batch, speakers, frames), resized
    to the number of frames by nearest neighbour as F.interpolate does. Returns (batch, 2 x features),
    or (batch, speakers, 2 x features) for weights with a speakers axis.
    """
    if weights is None:
        mean = mx.mean(sequences, axis=-1)
        std = mx.sqrt(mx.var(sequences, axis=-1, ddof=1))
        return mx.concatenate([mean, std], axis=-1)
    per_speaker = weights.ndim == 3
    weights = (weights if per_speaker else weights[:, None]).astype(sequences.dtype)
    num_frames, num_weights = sequences.shape[-1], weights.shape[-1]
    if num_weights != num_frames:
        weights = weights[..., nearest_indices(num_weights, num_frames)]
    x = sequences[:, None]  # (batch, 1, features, frames)
    w = weights[:, :, None]  # (batch, speakers, 1, frames)
    v1 = w.sum(axis=-1) + POOL_EPS
    mean = (x * w).sum(axis=-1) / v1
    v2 = mx.square(w).sum(axis=-1)
    variance = (mx.square(x - mean[..., None]) * w).sum(axis=-1) / (v1 - v2 / v1 + POOL_EPS)
    pooled = mx.concatenate([mean, mx.sqrt(variance)], axis=-1)
    return pooled if per_speaker else pooled[:, 0]


@lru_cache(maxsize=64)
def nearest_indices(size_in: int, size_out: int) -> mx.array:
    """F.interpolate(mode="nearest")'s source index for each output position (float32 scale, floored); made once
    per pair of sizes, so that it moves to the GPU once (as `kernel_arguments`)."""
    scale = np.float32(size_in) / np.float32(size_out)
    indices = np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int64)
    array = mx.array(np.minimum(indices, size_in - 1).astype(np.int32))
    mx.eval(array)
    return array


class WeSpeakerResNet34(nn.Module):
    """Call it on (batch, samples) at 16 kHz, in [-1, 1]: (batch, embed_dim) speaker embeddings."""

    def __init__(self, config: WeSpeakerConfig):
        super().__init__()
        self.config = config
        self.fbank = fbank.Fbank(config.fbank, config.sample_rate)
        r = config.resnet
        self.resnet = ResNet(r.num_blocks, r.m_channels, config.fbank.num_mel_bins, r.embed_dim)

    @property
    def dimension(self) -> int:
        return self.config.resnet.embed_dim

    @property
    def min_num_samples(self) -> int:
        """The shortest input: enough fbank frames for two pooled frames (the unbiased std needs two)."""
        window, shift, _ = fbank.frame_sizes(self.config.fbank, self.config.sample_rate)
        frames = 2
        for _ in range(3):  # layer2..layer4 halve time (kernel 3, stride 2, padding 1)
            frames = 2 * frames - 1
        return window + (frames - 1) * shift

    def __call__(self, waveforms: mx.array, weights: mx.array | None = None, *, parts: Parts | None = None) -> mx.array:
        """(batch, samples) or (batch, 1, samples) -> (batch, dimension); per-speaker with 3-d weights. The
        ResNet is evaluated in `parts` as it is queued (default: a `Parts()` of this call's own)."""
        if waveforms.ndim == 3 and waveforms.shape[1] == 1:
            waveforms = waveforms[:, 0]
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms shaped (batch, samples), got {tuple(waveforms.shape)}")
        if waveforms.shape[1] < self.min_num_samples:
            raise ValueError(
                f"{waveforms.shape[1]} samples is too short: the model needs at least {self.min_num_samples}"
            )
        dtype = self.resnet.seg_1.weight.dtype
        frames = self.resnet.frames(self.fbank(waveforms).astype(dtype), Parts() if parts is None else parts)
        return self.resnet.seg_1(statistics_pooling(frames, weights))
