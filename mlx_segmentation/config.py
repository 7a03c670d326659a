"""The model folder's `config.json`: everything needed to rebuild a model of one family (PyanNet
segmentation or WeSpeakerResNet34 embeddings) in MLX, validated wherever it is read."""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Problem = Literal["BINARY_CLASSIFICATION", "MONO_LABEL_CLASSIFICATION", "MULTI_LABEL_CLASSIFICATION"]

# Ranges a real model can have, with room to spare; anything outside is refused when a checkpoint is
# converted and when a model folder is loaded (the same models validate both).
MAX_WINDOW_SECONDS = 600.0  # pyannote's models use 5 s and 10 s windows
MAX_CLASSES = 64
MAX_WIDTH = 4096  # hidden units of an LSTM or linear layer
MAX_LAYERS = 32
SampleRate = Annotated[int, Field(ge=1000, le=384_000)]
Seconds = Annotated[float, Field(ge=0.0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False)]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


def first_error(error: ValidationError, where: str = "") -> str:
    """A pydantic error's first problem in one line: `where.field: message, got value`."""
    first = error.errors()[0]
    place = ".".join(str(part) for part in (where, *first["loc"]) if part != "")
    return f"{place}: {first['msg']}, got {first.get('input')!r:.60}"


class Specifications(BaseModel):
    """pyannote.audio's task `Specifications`, as stored in the checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: Problem
    resolution: Literal["FRAME"]
    duration: Annotated[Seconds, Field(gt=0.0)]
    min_duration: Seconds | None = None
    warm_up: tuple[Seconds, Seconds] = (0.0, 0.0)
    classes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1, max_length=MAX_CLASSES)
    ]
    powerset_max_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)] | None = None
    permutation_invariant: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Specifications:
        if self.powerset_max_classes is not None and self.problem != "MONO_LABEL_CLASSIFICATION":
            raise ValueError("powerset_max_classes only makes sense for MONO_LABEL_CLASSIFICATION")
        if self.powerset_max_classes is not None and self.powerset_max_classes > len(self.classes):
            raise ValueError(
                f"powerset_max_classes {self.powerset_max_classes} exceeds the {len(self.classes)} classes"
            )
        if self.powerset and self.num_powerset_classes > 1024:
            raise ValueError(f"{self.num_powerset_classes} powerset classes is more than any real model has")
        if self.min_duration is not None and self.min_duration > self.duration:
            raise ValueError("min_duration exceeds duration")
        if sum(self.warm_up) >= self.duration:
            raise ValueError("warm_up covers the whole window")
        return self

    @property
    def powerset(self) -> bool:
        return self.powerset_max_classes is not None

    @property
    def num_powerset_classes(self) -> int:
        """Subsets of at most `powerset_max_classes` speakers, the empty set included."""
        self._require_powerset()
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
        self._require_powerset()
        return [
            subset
            for size in range(self.powerset_max_classes + 1)
            for subset in combinations(range(len(self.classes)), size)
        ]

    def _require_powerset(self) -> None:
        if self.powerset_max_classes is None:
            raise ValueError(f"a {self.problem.lower()} model has no powerset classes: its outputs are per speaker")

    def powerset_mapping(self) -> np.ndarray:
        """(powerset classes, speakers) 0/1 matrix: row k marks the speakers of class k, as pyannote's
        `Powerset.mapping`; `mapping[classes]` decodes hard decisions to per-speaker activity."""
        mapping = np.zeros((self.num_powerset_classes, len(self.classes)), dtype=np.float32)
        for index, speakers in enumerate(self.powerset_classes()):
            mapping[index, list(speakers)] = 1.0
        return mapping


class SincNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    stride: Annotated[int, Field(ge=1, le=1024)]  # samples between two SincNet filter positions


class LSTMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden_size: Width
    num_layers: Annotated[int, Field(ge=1, le=MAX_LAYERS)]
    bidirectional: bool
    monolithic: bool


class LinearConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hidden_size: Width
    num_layers: Annotated[int, Field(ge=0, le=MAX_LAYERS)]


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


class PyanNetConfig(BaseModel):
    """Validated content of a PyanNet segmentation model's `config.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: Literal["pyannet"] = "pyannet"
    sample_rate: Literal[16000]  # SincNet's filters are defined for 16 kHz
    num_channels: Literal[1]
    sincnet: SincNetConfig
    lstm: LSTMConfig
    linear: LinearConfig
    specifications: Specifications
    frames: FrameTiming

    @model_validator(mode="after")
    def _frames_follow_the_layers(self) -> PyanNetConfig:
        from .pyannet import frame_timing  # the layers' arithmetic lives with the layers

        expected = frame_timing(self.sample_rate, self.sincnet.stride)
        if self.frames != expected:
            raise ValueError(f"frame timing disagrees with the layers ({expected})")
        return self

    def describe(self) -> str:
        spec, lstm = self.specifications, self.lstm
        kind = "powerset" if spec.powerset else spec.problem.lower()
        return (
            f"PyanNet, LSTM {lstm.num_layers} x {lstm.hidden_size} "
            f"({'bi' if lstm.bidirectional else 'uni'}directional, "
            f"{'monolithic' if lstm.monolithic else 'per layer'}), "
            f"linear {self.linear.num_layers} x {self.linear.hidden_size}, {spec.num_outputs} outputs ({kind}), "
            f"{spec.duration:g} s windows"
        )


class FbankConfig(BaseModel):
    """torchaudio.compliance.kaldi.fbank's settings, as pyannote's WeSpeaker models pass them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_mel_bins: Annotated[int, Field(ge=8, le=512)] = 80  # the ResNet pools frequency by 8
    frame_length: Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)] = 25.0  # milliseconds
    frame_shift: Annotated[float, Field(gt=0.0, le=1000.0, allow_inf_nan=False)] = 10.0  # milliseconds
    window_type: Literal["hamming"] = "hamming"
    dither: Literal[0.0] = 0.0
    round_to_power_of_two: Literal[True] = True
    snip_edges: Literal[True] = True
    use_energy: Literal[False] = False


class ResNetConfig(BaseModel):
    """WeSpeaker's ResNet of BasicBlocks with statistics pooling and one embedding layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    m_channels: Literal[32] = 32
    embed_dim: Literal[256] = 256
    two_emb_layer: Literal[False] = False


class WeSpeakerConfig(BaseModel):
    """Validated content of a speaker-embedding model's `config.json` (pyannote's WeSpeakerResNet34)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: Literal["wespeaker_resnet"] = "wespeaker_resnet"
    sample_rate: SampleRate
    num_channels: Literal[1]
    fbank: FbankConfig
    resnet: ResNetConfig

    @model_validator(mode="after")
    def _frames_fit(self) -> WeSpeakerConfig:
        window = int(self.sample_rate * self.fbank.frame_length * 0.001)
        shift = int(self.sample_rate * self.fbank.frame_shift * 0.001)
        if window < 2 or shift < 1:
            raise ValueError(
                f"fbank frames of {window} samples every {shift} samples: too short at {self.sample_rate} Hz"
            )
        if self.fbank.num_mel_bins > window:
            raise ValueError(f"{self.fbank.num_mel_bins} mel bins for {window}-sample frames")
        return self

    def describe(self) -> str:
        f, r = self.fbank, self.resnet
        return (
            f"WeSpeakerResNet34 (blocks {'-'.join(map(str, r.num_blocks))}, {r.m_channels} channels, "
            f"{r.embed_dim}-d embeddings), {f.num_mel_bins}-bin fbank, {f.frame_length:g}/{f.frame_shift:g} ms, "
            f"{f.window_type}"
        )
