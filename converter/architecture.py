"""Each family's config from what a checkpoint stores: PyanNet (segmentation), WeSpeakerResNet34 (embeddings)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlx_segmentation.config import (
    FbankConfig,
    LinearConfig,
    LSTMConfig,
    PyanNetConfig,
    ResNetConfig,
    SincNetConfig,
    Specifications,
    WeSpeakerConfig,
    first_error,
)
from mlx_segmentation.pyannet import frame_timing

from .errors import ArchitectureError
from .reader import SourceCheckpoint

# The class paths pyannote.audio records in checkpoints of each family.
PYANNET_ARCHITECTURES = frozenset(
    {"pyannote.audio.models.segmentation.PyanNet.PyanNet", "pyannote.audio.models.segmentation.PyanNet"}
)
WESPEAKER_ARCHITECTURES = frozenset(
    {"pyannote.audio.models.embedding.wespeaker.WeSpeakerResNet34", "pyannote.audio.models.embedding.WeSpeakerResNet34"}
)
# WeSpeakerResNet34.__init__'s defaults (pyannote/audio/models/embedding/wespeaker/__init__.py);
# pyannote's own conversion script saves no hyper-parameters, so these are often all there is.
WESPEAKER_DEFAULTS = {
    "sample_rate": 16000,
    "num_channels": 1,
    "num_mel_bins": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "dither": 0.0,
    "window_type": "hamming",
    "use_energy": False,
    "round_to_power_of_two": True,
    "snip_edges": True,
    "fbank_centering_span": None,
}

# PyanNet's defaults (pyannote/audio/models/segmentation/PyanNet.py), merged under the stored
# hyper-parameters exactly as PyanNet.__init__ does with merge_dict.
SINCNET_DEFAULTS = {"stride": 10}
LSTM_DEFAULTS = {"hidden_size": 128, "num_layers": 2, "bidirectional": True, "monolithic": True, "dropout": 0.0}
LINEAR_DEFAULTS = {"hidden_size": 128, "num_layers": 2}


def pyannet_config(source: SourceCheckpoint) -> PyanNetConfig:
    """PyanNet: its blocks' hyper-parameters over the class defaults, and the task specifications."""
    if source.specifications is None:
        raise ArchitectureError(f"{source.path}: the checkpoint stores no task specifications")
    hparams = source.hyper_parameters
    sincnet = {**SINCNET_DEFAULTS, **_section(source, "sincnet")}
    lstm = {**LSTM_DEFAULTS, **_section(source, "lstm")}
    linear = {**LINEAR_DEFAULTS, **_section(source, "linear")}
    try:
        sincnet_config = SincNetConfig(stride=sincnet["stride"])  # validated before frame_timing uses it
        return PyanNetConfig(
            sample_rate=hparams.get("sample_rate", 16000),
            num_channels=hparams.get("num_channels", 1),
            sincnet=sincnet_config,
            lstm=LSTMConfig(**{k: lstm[k] for k in ("hidden_size", "num_layers", "bidirectional", "monolithic")}),
            linear=LinearConfig(**{k: linear[k] for k in ("hidden_size", "num_layers")}),
            specifications=_specifications(source.specifications),
            frames=frame_timing(16000, sincnet_config.stride),
        )
    except ValidationError as error:
        raise ArchitectureError(f"{source.path}: unsupported hyper-parameter ({_first_error(error)})") from None


def wespeaker_config(source: SourceCheckpoint) -> WeSpeakerConfig:
    """WeSpeakerResNet34: fbank settings from the hyper-parameters (or the class defaults)."""
    hparams = {**WESPEAKER_DEFAULTS, **source.hyper_parameters}
    if hparams["fbank_centering_span"] is not None:
        raise ArchitectureError(f"{source.path}: fbank_centering_span (running-average centring) is not supported")
    fbank = {key: hparams[key] for key in FbankConfig.model_fields}
    try:
        return WeSpeakerConfig(
            sample_rate=hparams["sample_rate"],
            num_channels=hparams["num_channels"],
            fbank=FbankConfig(**fbank),
            resnet=ResNetConfig(),
        )
    except ValidationError as error:
        raise ArchitectureError(f"{source.path}: unsupported hyper-parameter ({_first_error(error)})") from None


def _section(source: SourceCheckpoint, name: str) -> dict[str, Any]:
    """One block's hyper-parameters (`sincnet`, `lstm`, `linear`): a dictionary of named values."""
    section = source.hyper_parameters.get(name, {})
    if not isinstance(section, dict) or not all(isinstance(key, str) for key in section):
        raise ArchitectureError(f"{source.path}: hyper-parameter {name} is not a dictionary of named values")
    return section


def _specifications(stored: dict[str, Any]) -> Specifications:
    fields = dict(stored)
    warm_up = fields.get("warm_up")
    if isinstance(warm_up, (int, float)):  # pyannote accepts a single number for both sides
        fields["warm_up"] = (float(warm_up), float(warm_up))
    return Specifications(**{k: v for k, v in fields.items() if k in Specifications.model_fields})


def _first_error(error: ValidationError) -> str:
    """The first problem, named from the config's top (`sincnet.stride: ...`), whichever block raised it."""
    block = "" if error.title in ("PyanNetConfig", "WeSpeakerConfig") else error.title.removesuffix("Config").lower()
    return first_error(error, block)
