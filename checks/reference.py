"""The PyTorch side of every comparison: genuine pyannote.audio, built from a safely read checkpoint.

`Model.from_pretrained` would unpickle the user's file with `weights_only=False`, which runs whatever
the pickle says. Instead we instantiate pyannote.audio's own model class (PyanNet,
WeSpeakerResNet34) from the hyper-parameters and specifications the converter's safe reader
extracted, and load the same tensors with `strict=True`. Tests prove this equals
`Model.from_pretrained` on trusted checkpoints.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mlx_segmentation.config import PyanNetConfig, WeSpeakerConfig


class Checkpoint(Protocol):
    """What the checks read of a checkpoint (the converter's `SourceCheckpoint` is one)."""

    path: Path
    sha256: str
    tensors: Mapping[str, np.ndarray]
    hyper_parameters: dict[str, Any]


def reference_model(source: Checkpoint, config: PyanNetConfig) -> tuple[torch.nn.Module, str]:
    """Genuine pyannote.audio when installed, else our torch PyanNet (tests prove the two equal)."""
    if not import_pyannote_audio():
        return own_torch_model(source, config), "checks.torch_pyannet (pyannote.audio not installed)"
    return pyannote_model(source, config), "pyannote.audio"


def import_pyannote_audio() -> bool:
    """Import pyannote.audio if installed, without its warning that torchcodec cannot decode audio files
    (the checks hand it waveforms in memory); whether it is installed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*torchcodec is not installed correctly", category=UserWarning)
        try:
            import pyannote.audio  # noqa: F401
        except ImportError:
            return False
    return True


def own_torch_model(source: Checkpoint, config: PyanNetConfig) -> torch.nn.Module:
    """Our torch PyanNet with the checkpoint's weights, in eval mode, float32."""
    from .torch_pyannet import TorchPyanNet

    model = TorchPyanNet(config)
    model.load_state_dict(state_dict(source), strict=True)
    return model.eval()


def pyannote_model(source: Checkpoint, config: PyanNetConfig) -> torch.nn.Module:
    """pyannote.audio's PyanNet with the checkpoint's weights, in eval mode, float32."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    hparams = source.hyper_parameters
    model = PyanNet(
        sincnet=dict(hparams.get("sincnet", {})),
        lstm=dict(hparams.get("lstm", {})),
        linear=dict(hparams.get("linear", {})),
        sample_rate=config.sample_rate,
        num_channels=config.num_channels,
    )
    spec = config.specifications
    model.specifications = Specifications(
        problem=Problem[spec.problem],
        resolution=Resolution[spec.resolution],
        duration=spec.duration,
        min_duration=spec.min_duration,
        warm_up=spec.warm_up,
        classes=list(spec.classes),
        powerset_max_classes=spec.powerset_max_classes,
        permutation_invariant=spec.permutation_invariant,
    )
    model.build()
    model.load_state_dict(state_dict(source), strict=True)
    return model.eval()


def wespeaker_reference(source: Checkpoint, config: WeSpeakerConfig) -> tuple[torch.nn.Module, str]:
    """pyannote.audio's WeSpeakerResNet34 if installed, else checks.torch_wespeaker (tests prove them bit-identical)."""
    if not import_pyannote_audio():
        from .torch_wespeaker import TorchWeSpeakerResNet34

        model = TorchWeSpeakerResNet34(config)
        name = "checks.torch_wespeaker (pyannote.audio not installed)"
    else:
        from pyannote.audio.models.embedding import WeSpeakerResNet34

        f = config.fbank  # its other settings are fixed at WeSpeakerResNet34's values (see FbankConfig)
        model = WeSpeakerResNet34(
            sample_rate=config.sample_rate,
            num_channels=config.num_channels,
            num_mel_bins=f.num_mel_bins,
            frame_length=f.frame_length,
            frame_shift=f.frame_shift,
            dither=f.dither,
            window_type=f.window_type,
            use_energy=f.use_energy,
        )
        name = "pyannote.audio"
    model.load_state_dict(state_dict(source), strict=True)
    return model.eval(), name


def state_dict(source: Checkpoint) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (read by our safe reader) as a torch state dict."""
    return {key: torch.from_numpy(np.array(value)) for key, value in source.tensors.items()}


def as_float64(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy: the yardstick for float32 rounding (`model.double()`)."""
    return copy.deepcopy(model).double().eval()


def as_float64_on_float32_inputs(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy that takes float32 inputs (as pipelines feed them) and computes in float64."""
    model64 = as_float64(model)
    model64.register_forward_pre_hook(lambda module, args: (args[0].double(), *args[1:]))
    return model64


def run_perturbed(model: torch.nn.Module, waveforms: np.ndarray, seed: int) -> np.ndarray:
    """`run` with every leaf module's output x replaced by fl32(s * x) / s, s = 1 + seed / 8.

    That is float32 rounding (of x scaled by s, so that each seed rounds differently): each value
    moves by at most float32's unit roundoff, equal values move equally (digital silence stays
    constant, as in any float32 run) and different values independently. Seed 0 is the float64
    model storing every module's output in float32. The spread of a few seeds around float64 is how
    much float32 rounding alone moves the output on this input: its conditioning.
    """
    scale = 1.0 + seed / 8

    def rounded(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return (value * scale).float().to(value.dtype) / scale
        if isinstance(value, tuple):
            return tuple(rounded(v) for v in value)
        return value

    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [module.register_forward_hook(lambda module, args, output: rounded(output)) for module in leaves]
    try:
        return run(model, waveforms)
    finally:
        for handle in handles:
            handle.remove()


def perturbed_runs(model: torch.nn.Module, waveforms: np.ndarray, draws: int) -> list[np.ndarray]:
    """`run_perturbed` with seeds 0 to draws - 1."""
    return [run_perturbed(model, waveforms, seed) for seed in range(draws)]


def run(model: torch.nn.Module, waveforms: np.ndarray) -> np.ndarray:
    """(batch, samples) numpy -> (batch, frames, classes) numpy, in the model's dtype."""
    dtype = next(model.parameters()).dtype
    with torch.inference_mode():
        outputs = model(torch.from_numpy(waveforms).to(dtype)[:, None, :])
    return outputs.numpy()
