"""Component checks of a segmentation model (PyanNet): identical inputs through each PyTorch and
MLX component, in forward order.

Each component's input is the float64 reference's own activation at that point, on real speech, so
an error shows up in the component that makes it rather than in everything downstream. The torch
side calls the reference's own modules (pyannote.audio's, or our proven-equal copy); for a monolithic
`nn.LSTM`, layer k is a one-layer `nn.LSTM` carrying that layer's tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
import torch
import torch.nn.functional as F

from mlx_segmentation import pyannet
from mlx_segmentation.pyannet import PyanNet

STATE_SEED = 0


@dataclass(frozen=True)
class ComponentOutputs:
    """One component's outputs, all laid out (batch, time, channels) like MLX's."""

    name: str
    ours: np.ndarray
    ref32: np.ndarray
    ref64: np.ndarray


Layer = Callable[[torch.Tensor], torch.Tensor]


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy()


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.transpose(1, 2)


def _mlx(tensor64: torch.Tensor) -> mx.array:
    return mx.array(tensor64.float().numpy())


def _both(layer32: Layer, layer64: Layer, inputs64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return layer32(inputs64.float()), layer64(inputs64)


def _lstm_layers(reference: torch.nn.Module) -> Iterator[torch.nn.LSTM]:
    """One single-layer nn.LSTM per layer, whichever key layout the reference uses."""
    if isinstance(reference.lstm, torch.nn.LSTM):
        stacked = reference.lstm
        for k in range(stacked.num_layers):
            size = stacked.input_size if k == 0 else stacked.hidden_size * (2 if stacked.bidirectional else 1)
            layer = torch.nn.LSTM(size, stacked.hidden_size, 1, batch_first=True, bidirectional=stacked.bidirectional)
            layer.load_state_dict(
                {
                    name.replace(f"_l{k}", "_l0"): value
                    for name, value in stacked.state_dict().items()
                    if f"_l{k}" in name
                }
            )
            yield layer.to(next(stacked.parameters()).dtype).eval()
    else:
        yield from reference.lstm


def component_outputs(
    model: PyanNet, ref32: torch.nn.Module, ref64: torch.nn.Module, waveforms: np.ndarray
) -> list[ComponentOutputs]:
    """Run every component of both frameworks on the float64 reference's own inputs."""
    results: list[ComponentOutputs] = []

    def record(name: str, ours: mx.array, out32: torch.Tensor, out64: torch.Tensor) -> None:
        results.append(
            ComponentOutputs(name, np.array(ours.astype(mx.float32)).astype(np.float64), _numpy(out32), _numpy(out64))
        )

    dtype = model.classifier.weight.dtype
    x64 = torch.from_numpy(waveforms).double()[:, None, :]

    # SincNet: waveform normalisation, the filters, then three conv/pool/norm/LeakyReLU stages.
    out32, out64 = _both(ref32.sincnet.wav_norm1d, ref64.sincnet.wav_norm1d, x64)
    record(
        "sincnet.wav_norm1d",
        model.sincnet.wav_norm1d(_mlx(x64[:, 0]).astype(dtype)[:, :, None]),
        _channels_last(out32),
        _channels_last(out64),
    )
    x64 = out64
    with torch.inference_mode():
        filters32, filters64 = (
            ref32.sincnet.conv1d[0].filterbank.filters(),
            ref64.sincnet.conv1d[0].filterbank.filters(),
        )
    record(
        "sincnet.filters",
        model.sincnet.conv1d[0].weight[None, :, :, 0],
        _channels_last(filters32)[None, ..., 0],
        _channels_last(filters64)[None, ..., 0],
    )
    for c in range(3):

        def stage(sincnet, inputs, c=c):
            outputs = sincnet.conv1d[c](inputs)
            outputs = torch.abs(outputs) if c == 0 else outputs
            return F.leaky_relu(sincnet.norm1d[c](sincnet.pool1d[c](outputs)))

        out32, out64 = _both(lambda t: stage(ref32.sincnet, t), lambda t: stage(ref64.sincnet, t), x64)
        record(
            f"sincnet.stage{c}",
            model.sincnet.stage(c, _mlx(_channels_last(x64)).astype(dtype)),
            _channels_last(out32),
            _channels_last(out64),
        )
        x64 = out64
    x64 = _channels_last(x64)

    # LSTM: each layer and direction, from a zero state and from a seeded non-zero state.
    generator = torch.Generator().manual_seed(STATE_SEED)
    for k, (layer32, layer64) in enumerate(zip(_lstm_layers(ref32), _lstm_layers(ref64))):
        ours_layer = model.lstm.layers[k]
        directions, hidden = ours_layer.Wx.shape[0], ours_layer.hidden_size
        h0 = 0.5 * torch.randn(directions, x64.shape[0], hidden, generator=generator, dtype=torch.float64)
        c0 = 0.5 * torch.randn(directions, x64.shape[0], hidden, generator=generator, dtype=torch.float64)
        for label, state in (("", None), (" (non-zero state)", (h0, c0))):
            with torch.inference_mode():
                out32, _ = layer32(x64.float(), None if state is None else (state[0].float(), state[1].float()))
                out64, _ = layer64(x64, state)
            ours, _ = ours_layer(
                _mlx(x64).astype(dtype), None if state is None else (_mlx(h0).astype(dtype), _mlx(c0).astype(dtype))
            )
            for d, direction in enumerate(["forward", "reverse"][:directions]):
                part = slice(d * hidden, (d + 1) * hidden)
                record(f"lstm.layers.{k}.{direction}{label}", ours[..., part], out32[..., part], out64[..., part])
            if state is None:
                next_x64 = out64
        x64 = next_x64

    # Feed-forward layers (each followed by LeakyReLU), the classifier, the final activation.
    for k in range(len(model.linear)):
        out32, out64 = _both(
            lambda t: F.leaky_relu(ref32.linear[k](t)), lambda t: F.leaky_relu(ref64.linear[k](t)), x64
        )
        record(f"linear.{k}", pyannet.linear_activation(model.linear[k](_mlx(x64).astype(dtype))), out32, out64)
        x64 = out64
    out32, out64 = _both(ref32.classifier, ref64.classifier, x64)
    record("classifier", model.classifier(_mlx(x64).astype(dtype)), out32, out64)
    x64 = out64
    out32, out64 = _both(ref32.activation, ref64.activation, x64)
    record("activation", model.activation(_mlx(x64).astype(dtype)), out32, out64)
    return results
