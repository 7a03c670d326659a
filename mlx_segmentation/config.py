"""The model folder's `config.json`: everything needed to rebuild a PyanNet in MLX."""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

Problem = Literal["BINARY_CLASSIFICATION", "MONO_LABEL_CLASSIFICATION", "MULTI_LABEL_CLASSIFICATION"]


class Specifications(BaseModel):
    """pyannote.audio's task `Specifications`, as stored in the checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: Problem
    resolution: Literal["FRAME"]
    duration: float
    min_duration: float | None = None
    warm_up: tuple[float, float] = (0.0, 0.0)
    classes: list[str]
    powerset_max_classes: int | None = None
    permutation_invariant: bool = False

    @model_validator(mode="after")
    def _powerset_needs_mono_label(self) -> Specifications:
        if self.powerset_max_classes is not None and self.problem != "MONO_LABEL_CLASSIFICATION":
            raise ValueError("powerset_max_classes only makes sense for MONO_LABEL_CLASSIFICATION")
        return self

    @property
    def powerset(self) -> bool:
        return self.powerset_max_classes is not None

    @property
    def num_powerset_classes(self) -> int:
        """Subsets of at most `powerset_max_classes` speakers, the empty set included."""
        assert self.powerset_max_classes is not None
        return sum(comb(len(self.classes), k) for k in range(self.powerset_max_classes + 1))

    @property
    def num_outputs(self) -> int:
        return self.num_powerset_classes if self.powerset else len(self.classes)

    @property
    def activation(self) -> Literal["sigmoid", "log_softmax"]:
        """pyannote's `Model.default_activation` for this problem."""
        return "log_softmax" if self.problem == "MONO_LABEL_CLASSIFICATION" else "sigmoid"

    def powerset_classes(self) -> list[tuple[int, ...]]:
        """Speaker indices of each powerset class, in pyannote's `Powerset` order."""
        assert self.powerset_max_classes is not None
        return [
            subset
            for size in range(self.powerset_max_classes + 1)
            for subset in combinations(range(len(self.classes)), size)
        ]


class SincNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    stride: int


class LSTMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden_size: int
    num_layers: int
    bidirectional: bool
    monolithic: bool


class LinearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden_size: int
    num_layers: int


class FrameTiming(BaseModel):
    """Where output frames sit in the input, as pyannote's `Model.receptive_field` says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receptive_field_size: int  # samples seen by one output frame
    step_samples: int  # samples between two consecutive frames
    center_samples: int  # centre of frame 0's receptive field
    start: float  # seconds: start of frame 0's receptive field
    duration: float  # seconds: receptive_field_size / sample_rate
    step: float  # seconds: step_samples / sample_rate
    min_num_samples: int  # the shortest input the model accepts (two output frames)


class ModelConfig(BaseModel):
    """Validated content of `config.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: Literal["pyannet"] = "pyannet"
    sample_rate: int
    num_channels: int
    sincnet: SincNetConfig
    lstm: LSTMConfig
    linear: LinearConfig
    specifications: Specifications
    frames: FrameTiming


class FbankConfig(BaseModel):
    """torchaudio.compliance.kaldi.fbank's settings, as pyannote's WeSpeaker models pass them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_mel_bins: int = 80
    frame_length: float = 25.0  # milliseconds
    frame_shift: float = 10.0  # milliseconds
    window_type: Literal["hamming"] = "hamming"
    dither: Literal[0.0] = 0.0
    round_to_power_of_two: Literal[True] = True
    snip_edges: Literal[True] = True
    use_energy: Literal[False] = False


class ResNetConfig(BaseModel):
    """WeSpeaker's ResNet of BasicBlocks with statistics pooling and one embedding layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    m_channels: int = 32
    embed_dim: int = 256
    two_emb_layer: Literal[False] = False


class EmbeddingConfig(BaseModel):
    """Validated content of an embedding model's `config.json` (pyannote's WeSpeakerResNet34)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: Literal["wespeaker_resnet"] = "wespeaker_resnet"
    sample_rate: int
    num_channels: int
    fbank: FbankConfig
    resnet: ResNetConfig
