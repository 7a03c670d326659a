"""Read a PyanNet's architecture from a checkpoint: hyper-parameters and task specifications."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlx_segmentation.config import LinearConfig, LSTMConfig, ModelConfig, SincNetConfig, Specifications
from mlx_segmentation.pyannet import frame_timing

from .errors import ArchitectureError
from .reader import SourceCheckpoint

PYANNET = "pyannote.audio.models.segmentation.PyanNet.PyanNet"
PYANNET_ALIASES = {PYANNET, "pyannote.audio.models.segmentation.PyanNet"}

# PyanNet's defaults (pyannote/audio/models/segmentation/PyanNet.py), merged under the stored
# hyper-parameters exactly as PyanNet.__init__ does with merge_dict.
SINCNET_DEFAULTS = {"stride": 10}
LSTM_DEFAULTS = {"hidden_size": 128, "num_layers": 2, "bidirectional": True, "monolithic": True, "dropout": 0.0}
LINEAR_DEFAULTS = {"hidden_size": 128, "num_layers": 2}


def model_config(source: SourceCheckpoint) -> ModelConfig:
    """Build the MLX model's config from what the checkpoint stores."""
    if source.architecture not in PYANNET_ALIASES:
        raise ArchitectureError(f"{source.path}: architecture {source.architecture} is not PyanNet")
    if source.specifications is None:
        raise ArchitectureError(f"{source.path}: the checkpoint stores no task specifications")
    hparams = source.hyper_parameters
    sample_rate = int(hparams.get("sample_rate", 16000))
    sincnet = {**SINCNET_DEFAULTS, **hparams.get("sincnet", {})}
    lstm = {**LSTM_DEFAULTS, **hparams.get("lstm", {})}
    linear = {**LINEAR_DEFAULTS, **hparams.get("linear", {})}
    if sample_rate != 16000:
        raise ArchitectureError(f"{source.path}: PyanNet's SincNet supports 16000 Hz only, got {sample_rate}")
    if int(hparams.get("num_channels", 1)) != 1:
        raise ArchitectureError(f"{source.path}: only mono PyanNet models are supported")
    try:
        return ModelConfig(
            sample_rate=sample_rate,
            num_channels=1,
            sincnet=SincNetConfig(stride=sincnet["stride"]),
            lstm=LSTMConfig(**{k: lstm[k] for k in ("hidden_size", "num_layers", "bidirectional", "monolithic")}),
            linear=LinearConfig(**linear),
            specifications=_specifications(source.specifications),
            frames=frame_timing(sample_rate, sincnet["stride"]),
        )
    except ValidationError as error:
        raise ArchitectureError(f"{source.path}: unsupported architecture ({_first_error(error)})") from None


def _specifications(stored: dict[str, Any]) -> Specifications:
    fields = dict(stored)
    warm_up = fields.get("warm_up")
    if isinstance(warm_up, (int, float)):  # pyannote accepts a single number for both sides
        fields["warm_up"] = (float(warm_up), float(warm_up))
    return Specifications(**{k: v for k, v in fields.items() if k in Specifications.model_fields})


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
