"""Component checks of a speaker-embedding model (WeSpeakerResNet34): identical inputs through each
PyTorch and MLX component, in forward order, each fed the float64 reference's own activation."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import torch
import torch.nn.functional as F

from mlx_segmentation.wespeaker import WeSpeakerResNet34, statistics_pooling

from .gates import Gates
from .metrics import Metrics, compare


def _torch_layout(x: mx.array) -> np.ndarray:
    """MLX (batch, frequency, time, channels) -> PyTorch's (batch, channels, frequency, time)."""
    return np.array(x).transpose(0, 3, 1, 2)


def _mlx_layout(x: torch.Tensor, dtype: mx.Dtype) -> mx.array:
    return mx.array(x.permute(0, 2, 3, 1).float().numpy()).astype(dtype)


def component_checks(model: WeSpeakerResNet34, ref32, ref64, waveforms: np.ndarray, gates: Gates) -> list[Metrics]:
    """Each component fed the float64 reference's own input: fbank, stem, the four stages, pooling, embedding."""
    dtype = model.resnet.seg_1.weight.dtype
    results = []
    x32, x64 = torch.from_numpy(waveforms)[:, None], torch.from_numpy(waveforms).double()[:, None]
    with torch.inference_mode():
        f64 = ref64.compute_fbank(x64)  # centred: the ResNet's input
        # kaldi.fbank itself, before pyannote's centring (compute_fbank without its last line)
        raw32, raw64 = (
            torch.vmap(ref._fbank)(x * (1 << 15)).double().numpy() for ref, x in ((ref32, x32), (ref64, x64))
        )
    ours = np.array(model.fbank.features(mx.array(waveforms))).astype(np.float64)
    # The log of a mel bin holding 1e-8 of its frame's energy magnifies float32 FFT rounding (PyTorch's
    # too) by as much: the energies, relative to each frame's largest, are the well-conditioned check.
    scale = np.exp(raw64).max(axis=-1, keepdims=True)
    results.append(
        compare(
            "fbank (energies / frame maximum)",
            np.exp(ours) / scale,
            np.exp(raw32) / scale,
            np.exp(raw64) / scale,
            gates,
        )
    )
    with torch.inference_mode():
        r = ref64.resnet
        image64 = f64.permute(0, 2, 1).unsqueeze(1)
        stages64 = [F.relu(r.bn1(r.conv1(image64)))]
        stages32 = [F.relu(ref32.resnet.bn1(ref32.resnet.conv1(image64.float())))]
    results.append(
        compare(
            "resnet.stem",
            _torch_layout(model.resnet.stem(mx.array(f64.float().numpy()).astype(dtype))),
            stages32[0].numpy(),
            stages64[0].numpy(),
            gates,
            relative_floor=True,
        )
    )
    previous = stages64[0]
    for index, (ours_layer, layer32, layer64) in enumerate(
        zip(
            model.resnet.layers,
            (ref32.resnet.layer1, ref32.resnet.layer2, ref32.resnet.layer3, ref32.resnet.layer4),
            (r.layer1, r.layer2, r.layer3, r.layer4),
        ),
        start=1,
    ):
        with torch.inference_mode():
            out32, out64 = layer32(previous.float()), layer64(previous)
        out = _mlx_layout(previous, dtype)
        for block in ours_layer:
            out = block(out)
        results.append(
            compare(
                f"resnet.layer{index}", _torch_layout(out), out32.numpy(), out64.numpy(), gates, relative_floor=True
            )
        )
        previous = out64
    with torch.inference_mode():
        pooled32, pooled64 = ref32.resnet.pool(previous.float()), r.pool(previous)
        embedding32, embedding64 = ref32.resnet.seg_1(pooled64.float()), r.seg_1(pooled64)
    batch, channels, frequency, frames = previous.shape
    sequences = mx.array(previous.reshape(batch, channels * frequency, frames).float().numpy()).astype(dtype)
    results.append(
        compare(
            "pooling (mean, std)",
            np.array(statistics_pooling(sequences)),
            pooled32.numpy(),
            pooled64.numpy(),
            gates,
            relative_floor=True,
        )
    )
    embedding = model.resnet.seg_1(mx.array(pooled64.float().numpy()).astype(dtype))
    results.append(
        compare(
            "resnet.seg_1 (embedding)",
            np.array(embedding),
            embedding32.numpy(),
            embedding64.numpy(),
            gates,
            relative_floor=True,
        )
    )
    return results
