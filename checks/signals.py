"""The inputs of a segmentation model's full-model checks: real speech and the signals that break fragile ports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlx_segmentation.pyannet import PyanNet

from .audio import speech_chunks

NOISE_SEED = 0


@dataclass(frozen=True)
class Signal:
    name: str
    description: str
    waveforms: np.ndarray  # (batch, samples), float32


def full_model_signals(model: PyanNet) -> list[Signal]:
    """Each window of sample.wav, silence, near-silence, white noise, clipping, the shortest input, a mixed batch."""
    config = model.config
    chunks = speech_chunks(config.specifications.duration, config.sample_rate)
    window = chunks.shape[1]
    rng = np.random.default_rng(NOISE_SEED)
    speech = chunks[0]
    signals = [
        Signal(f"speech[{i}]", f"sample.wav, window {i} ({window} samples)", chunk[None])
        for i, chunk in enumerate(chunks)
    ]
    singles = [
        Signal("silence", "all-zero input (InstanceNorm sees zero variance)", np.zeros(window, np.float32)),
        Signal("near-silence", "sample.wav window 0 scaled by 1e-4", speech * np.float32(1e-4)),
        Signal(
            "white-noise",
            "seeded Gaussian noise, standard deviation 0.1",
            rng.normal(0, 0.1, window).astype(np.float32),
        ),
        Signal("clipped", "sample.wav window 0 amplified 20x and clipped to [-1, 1]", np.clip(speech * 20, -1, 1)),
    ]
    signals += [Signal(s.name, s.description, s.waveforms[None]) for s in singles]
    shortest = config.frames.min_num_samples
    signals.append(
        Signal(
            "shortest",
            f"the shortest input the model accepts: {shortest} samples of sample.wav (2 frames)",
            speech[None, :shortest],
        )
    )
    mixed = np.stack([speech, *(s.waveforms for s in singles)])
    signals.append(Signal("mixed-batch", "one batch: speech, silence, near-silence, noise, clipped", mixed))
    return signals
