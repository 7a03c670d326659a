"""A small torch PyanNet, the reference when pyannote.audio is not installed.

It mirrors pyannote.audio's PyanNet (pyannote/audio/models/segmentation/PyanNet.py) and SincNet
(models/blocks/sincnet.py, with asteroid-filterbanks' ParamSincFB), module for module and key for key,
so that the checkpoint's state dict loads into it with `strict=True`. tests/test_reference.py proves
its outputs equal to genuine pyannote.audio on the real checkpoint and on every fixture.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlx_segmentation.config import PyanNetConfig

# pyannote.audio's SincNet (models/blocks/sincnet.py), stated here rather than taken from the code under
# test; tests/test_reference.py reads each from pyannote.audio's own modules.
SINC_FILTERS = 80  # ParamSincFB(80, 251, ...): 40 cosine + 40 sine filters
SINC_KERNEL = 251
SINC_MIN_LOW_HZ = 50.0  # asteroid-filterbanks' ParamSincFB defaults
SINC_MIN_BAND_HZ = 50.0
CONV_CHANNELS = 60
CONV_KERNEL = 5
POOL = 3


class ParamSincFB(nn.Module):
    """asteroid_filterbanks.ParamSincFB: parameters `low_hz_`, `band_hz_`; buffers `window_`, `n_`."""

    def __init__(self, sample_rate: int):
        super().__init__()
        half_kernel = SINC_KERNEL // 2
        self.sample_rate = sample_rate
        self.low_hz_ = nn.Parameter(torch.zeros(SINC_FILTERS // 2, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(SINC_FILTERS // 2, 1))
        self.register_buffer("window_", torch.zeros(half_kernel))
        self.register_buffer("n_", torch.zeros(1, half_kernel))

    def filters(self) -> torch.Tensor:
        low = SINC_MIN_LOW_HZ + torch.abs(self.low_hz_)
        high = torch.clamp(low + SINC_MIN_BAND_HZ + torch.abs(self.band_hz_), SINC_MIN_LOW_HZ, self.sample_rate / 2)
        return torch.cat([self._make(low, high, "cos"), self._make(low, high, "sin")], dim=0)

    def _make(self, low: torch.Tensor, high: torch.Tensor, kind: str) -> torch.Tensor:
        band = (high - low)[:, 0]
        ft_low, ft_high = torch.matmul(low, self.n_), torch.matmul(high, self.n_)
        if kind == "cos":
            left = ((torch.sin(ft_high) - torch.sin(ft_low)) / (self.n_ / 2)) * self.window_
            center, right = 2 * band.view(-1, 1), torch.flip(left, dims=[1])
        else:
            left = ((torch.cos(ft_low) - torch.cos(ft_high)) / (self.n_ / 2)) * self.window_
            center, right = torch.zeros_like(band.view(-1, 1)), -torch.flip(left, dims=[1])
        band_pass = torch.cat([left, center, right], dim=1) / (2 * band[:, None])
        return band_pass.view(SINC_FILTERS // 2, 1, SINC_KERNEL)


class Encoder(nn.Module):
    """asteroid_filterbanks.Encoder around ParamSincFB: a strided convolution with the sinc filters."""

    def __init__(self, stride: int, sample_rate: int):
        super().__init__()
        self.stride = stride
        self.filterbank = ParamSincFB(sample_rate)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return F.conv1d(waveforms, self.filterbank.filters(), stride=self.stride)


class SincNet(nn.Module):
    def __init__(self, stride: int, sample_rate: int):
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList(
            [
                Encoder(stride, sample_rate),
                nn.Conv1d(SINC_FILTERS, CONV_CHANNELS, CONV_KERNEL),
                nn.Conv1d(CONV_CHANNELS, CONV_CHANNELS, CONV_KERNEL),
            ]
        )
        self.pool1d = nn.ModuleList([nn.MaxPool1d(POOL, stride=POOL) for _ in range(3)])
        self.norm1d = nn.ModuleList(
            [nn.InstanceNorm1d(n, affine=True) for n in (SINC_FILTERS, CONV_CHANNELS, CONV_CHANNELS)]
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        outputs = self.wav_norm1d(waveforms)
        for c, (conv1d, pool1d, norm1d) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d)):
            outputs = conv1d(outputs)
            if c == 0:
                outputs = torch.abs(outputs)
            outputs = F.leaky_relu(norm1d(pool1d(outputs)))
        return outputs


class TorchPyanNet(nn.Module):
    def __init__(self, config: PyanNetConfig):
        super().__init__()
        lstm = config.lstm
        self.monolithic = lstm.monolithic
        self.sincnet = SincNet(config.sincnet.stride, config.sample_rate)
        directions = 2 if lstm.bidirectional else 1
        if lstm.monolithic:
            self.lstm = nn.LSTM(
                CONV_CHANNELS, lstm.hidden_size, lstm.num_layers, batch_first=True, bidirectional=lstm.bidirectional
            )
        else:
            sizes = [CONV_CHANNELS] + [lstm.hidden_size * directions] * (lstm.num_layers - 1)
            self.lstm = nn.ModuleList(
                [
                    nn.LSTM(size, lstm.hidden_size, 1, batch_first=True, bidirectional=lstm.bidirectional)
                    for size in sizes
                ]
            )
        features = [lstm.hidden_size * directions] + [config.linear.hidden_size] * config.linear.num_layers
        self.linear = nn.ModuleList([nn.Linear(a, b) for a, b in zip(features[:-1], features[1:])])
        self.classifier = nn.Linear(features[-1], config.specifications.num_outputs)
        powerset = config.specifications.activation == "log_softmax"
        self.activation = nn.LogSoftmax(dim=-1) if powerset else nn.Sigmoid()

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        outputs = self.sincnet(waveforms).transpose(1, 2)
        if self.monolithic:
            outputs, _ = self.lstm(outputs)
        else:
            for lstm in self.lstm:
                outputs, _ = lstm(outputs)
        for linear in self.linear:
            outputs = F.leaky_relu(linear(outputs))
        return self.activation(self.classifier(outputs))
