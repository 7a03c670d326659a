"""A small torch WeSpeakerResNet34, the reference when pyannote.audio is not installed (the GPU machine).

It mirrors pyannote.audio's WeSpeakerResNet34 (pyannote/audio/models/embedding/wespeaker/: its
compute_fbank, ResNet of BasicBlocks, TSTP over StatsPool, seg_1), module for module and key for key,
so that the checkpoint's state dict loads into it with `strict=True`; tests/test_embedding.py proves
its outputs bit-identical to genuine pyannote.audio (tests/test_embedding.py).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi

from mlx_segmentation.config import WeSpeakerConfig

POOL_EPS = 1e-8  # pyannote.audio's StatsPool (models/blocks/pooling.py); tests prove the outputs bit-identical


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    def __init__(self, config: WeSpeakerConfig):
        super().__init__()
        r, mels = config.resnet, config.fbank.num_mel_bins
        self.conv1 = nn.Conv2d(1, r.m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(r.m_channels)
        in_planes = r.m_channels
        for index, (blocks, stride) in enumerate(zip(r.num_blocks, (1, 2, 2, 2)), start=1):
            planes = r.m_channels * 2 ** (index - 1)
            layer = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layer.append(BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.pool = TSTP()
        self.seg_1 = nn.Linear(2 * (mels // 8) * r.m_channels * 8, r.embed_dim)

    def forward(self, fbank: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(fbank.permute(0, 2, 1).unsqueeze(1))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.seg_1(self.pool(out, weights))


class TSTP(nn.Module):
    """(batch, channels, frequency, frames) -> statistics over frames of (channels x frequency) features."""

    def forward(self, features: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, frequency, frames = features.shape
        return stats_pool(features.reshape(batch, channels * frequency, frames), weights)


def stats_pool(sequences: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """pyannote.audio.models.blocks.pooling.StatsPool."""
    if weights is None:
        return torch.cat([sequences.mean(dim=-1), sequences.std(dim=-1, correction=1)], dim=-1)
    per_speaker = weights.dim() == 3
    weights = weights if per_speaker else weights.unsqueeze(1)
    if weights.shape[-1] != sequences.shape[-1]:
        weights = F.interpolate(weights, size=sequences.shape[-1], mode="nearest")
    pooled = []
    for speaker in range(weights.shape[1]):
        w = weights[:, speaker, :].unsqueeze(1)
        v1 = w.sum(dim=2) + POOL_EPS
        mean = torch.sum(sequences * w, dim=2) / v1
        dx2 = torch.square(sequences - mean.unsqueeze(2))
        v2 = torch.square(w).sum(dim=2)
        std = torch.sqrt(torch.sum(dx2 * w, dim=2) / (v1 - v2 / v1 + POOL_EPS))
        pooled.append(torch.cat([mean, std], dim=1))
    output = torch.stack(pooled, dim=1)
    return output if per_speaker else output.squeeze(1)


class TorchWeSpeakerResNet34(nn.Module):
    def __init__(self, config: WeSpeakerConfig):
        super().__init__()
        self.config = config
        self.resnet = ResNet(config)
        f = config.fbank
        self._fbank = partial(
            kaldi.fbank,
            num_mel_bins=f.num_mel_bins,
            frame_length=f.frame_length,
            round_to_power_of_two=f.round_to_power_of_two,
            frame_shift=f.frame_shift,
            snip_edges=f.snip_edges,
            dither=f.dither,
            sample_frequency=config.sample_rate,
            window_type=f.window_type,
            use_energy=f.use_energy,
        )

    def compute_fbank(self, waveforms: torch.Tensor) -> torch.Tensor:
        features = torch.vmap(self._fbank)(waveforms * (1 << 15))
        return features - torch.mean(features, dim=1, keepdim=True)

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        return self.resnet(self.compute_fbank(waveforms), weights=weights)
