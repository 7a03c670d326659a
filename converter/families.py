"""The families the converter knows, by `model_type`: which pyannote classes they read, how a
checkpoint's hyper-parameters become a config, which rules map its tensors, what the manifest
records beyond the rules, and the family's part of the model card.

The runtime (`mlx_segmentation/families.py`) and the checks (`checks/families.py`) hold the other
columns of the same rows; a test keeps the three tables' keys equal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mlx_segmentation.families import AnyConfig
from mlx_segmentation.manifest import Manifest

from .architecture import PYANNET_ARCHITECTURES, WESPEAKER_ARCHITECTURES, pyannet_config, wespeaker_config
from .card import CardSection, pyannet_section, wespeaker_section
from .errors import ArchitectureError
from .reader import SourceCheckpoint
from .rules import Rule
from .rules.pyannet import pyannet_rules
from .rules.wespeaker import wespeaker_rules


@dataclass(frozen=True)
class ConverterFamily:
    architectures: frozenset[str]  # class paths pyannote.audio stores in the checkpoint
    read_config: Callable[[SourceCheckpoint], AnyConfig]
    rules: Callable[[AnyConfig], list[Rule]]
    card: Callable[[AnyConfig, Manifest, str], CardSection]
    conversion: dict[str, str] = field(default_factory=dict)  # recorded in manifest.json


FAMILIES: dict[str, ConverterFamily] = {
    "pyannet": ConverterFamily(
        PYANNET_ARCHITECTURES,
        pyannet_config,
        lambda config: pyannet_rules(config.sample_rate),
        pyannet_section,
        {"sincnet_filters": "precomputed"},  # computed from low_hz_ / band_hz_ at conversion
    ),
    "wespeaker_resnet": ConverterFamily(
        WESPEAKER_ARCHITECTURES,
        wespeaker_config,
        lambda config: wespeaker_rules(),
        wespeaker_section,
        {"batchnorm": "kept"},  # running statistics applied at inference, not folded into the convolutions
    ),
}


def converter_family(model_type: str) -> ConverterFamily:
    return FAMILIES[model_type]


def model_config(source: SourceCheckpoint) -> AnyConfig:
    """The MLX model's config, read by the family whose class the checkpoint names; every value validated."""
    for family in FAMILIES.values():
        if source.architecture in family.architectures:
            return family.read_config(source)
    names = ", ".join(sorted(min(f.architectures, key=len).rsplit(".", 1)[-1] for f in FAMILIES.values()))
    raise ArchitectureError(
        f"{source.path}: architecture {source.architecture} is none of the families we convert ({names})"
    )
