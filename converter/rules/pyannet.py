"""Rules for pyannote.audio's PyanNet (monolithic and per-layer LSTMs, any layer counts)."""

from __future__ import annotations

from . import Rule
from .transforms import conv1d_layout, identity, lstm_fuse_biases, lstm_stack_directions, sinc_filters

# SincNet's constants (pyannote/audio/models/blocks/sincnet.py: ParamSincFB(80, 251, min_low_hz=50,
# min_band_hz=50)); they are not stored in the checkpoint.
SINC_MIN_LOW_HZ = 50.0
SINC_MIN_BAND_HZ = 50.0


def _lstm_rules(layer: str, suffix: str, target_layer: str) -> list[Rule]:
    """LSTM rules for one key layout: `layer` is the source prefix, `suffix` the layer suffix."""
    return [
        Rule(
            "lstm-input-weights",
            (f"{layer}.weight_ih_{suffix}", f"{layer}.weight_ih_{suffix}_reverse?"),
            f"lstm.layers.{target_layer}.Wx",
            lstm_stack_directions,
        ),
        Rule(
            "lstm-hidden-weights",
            (f"{layer}.weight_hh_{suffix}", f"{layer}.weight_hh_{suffix}_reverse?"),
            f"lstm.layers.{target_layer}.Wh",
            lstm_stack_directions,
        ),
        Rule(
            "lstm-bias-fusion",
            (
                f"{layer}.bias_ih_{suffix}",
                f"{layer}.bias_hh_{suffix}",
                f"{layer}.bias_ih_{suffix}_reverse?",
                f"{layer}.bias_hh_{suffix}_reverse?",
            ),
            f"lstm.layers.{target_layer}.bias",
            lstm_fuse_biases,
        ),
    ]


def pyannet_rules(sample_rate: int) -> list[Rule]:
    return [
        Rule("norm", ("sincnet.wav_norm1d.weight",), "sincnet.wav_norm1d.weight", identity),
        Rule("norm", ("sincnet.wav_norm1d.bias",), "sincnet.wav_norm1d.bias", identity),
        Rule(
            "sincnet-filters",
            (
                "sincnet.conv1d.0.filterbank.low_hz_",
                "sincnet.conv1d.0.filterbank.band_hz_",
                "sincnet.conv1d.0.filterbank.window_",
                "sincnet.conv1d.0.filterbank.n_",
            ),
            "sincnet.conv1d.0.weight",
            sinc_filters,
            {"min_low_hz": SINC_MIN_LOW_HZ, "min_band_hz": SINC_MIN_BAND_HZ, "sample_rate": float(sample_rate)},
        ),
        Rule("conv1d", ("sincnet.conv1d.{i}.weight",), "sincnet.conv1d.{i}.weight", conv1d_layout),
        Rule("conv1d", ("sincnet.conv1d.{i}.bias",), "sincnet.conv1d.{i}.bias", identity),
        Rule("norm", ("sincnet.norm1d.{i}.weight",), "sincnet.norm1d.{i}.weight", identity),
        Rule("norm", ("sincnet.norm1d.{i}.bias",), "sincnet.norm1d.{i}.bias", identity),
        # monolithic=True: one nn.LSTM(num_layers=N), keys lstm.weight_ih_l{k}[_reverse]
        *_lstm_rules("lstm", "l{k}", "{k}"),
        # monolithic=False: a ModuleList of one-layer LSTMs, keys lstm.{k}.weight_ih_l0[_reverse]
        *_lstm_rules("lstm.{k}", "l0", "{k}"),
        Rule("linear", ("linear.{i}.weight",), "linear.{i}.weight", identity),
        Rule("linear", ("linear.{i}.bias",), "linear.{i}.bias", identity),
        Rule("linear", ("classifier.weight",), "classifier.weight", identity),
        Rule("linear", ("classifier.bias",), "classifier.bias", identity),
    ]
