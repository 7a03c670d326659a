"""The model families this package runs, by `model_type` (config.json's discriminator).

One row per family, as mlx-lm's `_get_classes`: its config class and its MLX module. The converter
and the checks keep their own rows for the same keys (`converter/families.py`, `checks/families.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

import mlx.nn as nn
from pydantic import BaseModel, Field, TypeAdapter

from .config import PyanNetConfig, WeSpeakerConfig
from .pyannet import PyanNet
from .wespeaker import WeSpeakerResNet34


@dataclass(frozen=True)
class Family:
    config: type[BaseModel]
    module: type[nn.Module]
    task: Literal["segmentation", "embedding"]


FAMILIES: dict[str, Family] = {
    "pyannet": Family(PyanNetConfig, PyanNet, "segmentation"),
    "wespeaker_resnet": Family(WeSpeakerConfig, WeSpeakerResNet34, "embedding"),
}

AnyConfig = PyanNetConfig | WeSpeakerConfig  # for type hints; CONFIG below is derived from the table
CONFIG = TypeAdapter(Annotated[Union[tuple(f.config for f in FAMILIES.values())], Field(discriminator="model_type")])


def family(config: AnyConfig) -> Family:
    return FAMILIES[config.model_type]


def build_model(config: AnyConfig) -> nn.Module:
    """The (untrained) MLX module a config describes."""
    return family(config).module(config)
