"""Kaldi log-mel filterbanks in MLX, as `torchaudio.compliance.kaldi.fbank` computes them for pyannote's
WeSpeaker models: 25 ms frames every 10 ms, DC offset removed, pre-emphasis 0.97, Hamming window,
zero-padded to a power of two, power spectrum, triangular mel banks from 20 Hz to Nyquist, log."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from .config import FbankConfig

# torchaudio.compliance.kaldi.fbank's defaults that pyannote does not override.
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
INT16_SCALE = 1 << 15  # pyannote's compute_fbank scales waveforms in [-1, 1] to 16-bit sample values
LOG_FLOOR = float(np.finfo(np.float32).eps)  # torch.finfo(torch.float).eps, the floor before the log


def frame_sizes(config: FbankConfig, sample_rate: int) -> tuple[int, int, int]:
    """(window, shift, padded window) in samples, as torchaudio rounds them."""
    window = int(sample_rate * config.frame_length * 0.001)
    shift = int(sample_rate * config.frame_shift * 0.001)
    padded = 1 << (window - 1).bit_length() if config.round_to_power_of_two else window
    return window, shift, padded


def num_frames(num_samples: int, config: FbankConfig, sample_rate: int) -> int:
    """Frames that fit entirely in `num_samples` (snip_edges=True); 0 if none."""
    window, shift, _ = frame_sizes(config, sample_rate)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def hamming_window(size: int) -> np.ndarray:
    """torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46), in float64."""
    return 0.54 - 0.46 * np.cos(2 * math.pi * np.arange(size) / (size - 1))


def mel_banks(num_bins: int, padded_window: int, sample_rate: int) -> np.ndarray:
    """kaldi's triangular mel filters (num_bins, padded_window // 2 + 1), no VTLN warping, computed
    in float32 step for step as torchaudio's get_mel_banks does (PyTorch's float64 runs use these
    float32 banks too); the last (Nyquist) column is zero, as torchaudio pads it."""
    f32 = np.float32

    def mel(freq: np.ndarray) -> np.ndarray:  # float32 arithmetic, a correctly rounded float32 log (as PyTorch's)
        return f32(1127.0) * np.log((f32(1.0) + freq / f32(700.0)).astype(np.float64)).astype(f32)

    mel_low = 1127.0 * math.log(1.0 + LOW_FREQ / 700.0)  # Python floats, as mel_scale_scalar
    mel_high = 1127.0 * math.log(1.0 + 0.5 * sample_rate / 700.0)
    delta = f32((mel_high - mel_low) / (num_bins + 1))
    bins = np.arange(num_bins, dtype=f32)[:, None]
    left, center, right = (f32(mel_low) + (bins + f32(k)) * delta for k in (0.0, 1.0, 2.0))
    fft_mel = mel(f32(sample_rate / padded_window) * np.arange(padded_window // 2, dtype=f32))[None, :]
    up, down = (fft_mel - left) / (center - left), (right - fft_mel) / (right - center)
    banks = np.maximum(f32(0.0), np.minimum(up, down))
    return np.pad(banks, [(0, 0), (0, 1)])


class Fbank:
    """(batch, samples) in [-1, 1] -> (batch, frames, num_mel_bins) log-mel energies, centred over time."""

    def __init__(self, config: FbankConfig, sample_rate: int):
        self.config = config
        self.sample_rate = sample_rate
        self.window_size, self.shift, self.padded = frame_sizes(config, sample_rate)
        self.window = mx.array(hamming_window(self.window_size).astype(np.float32))
        self.banks_T = mx.array(mel_banks(config.num_mel_bins, self.padded, sample_rate).T.astype(np.float32))

    def features(self, waveforms: mx.array) -> mx.array:
        """kaldi.fbank of each waveform, before centring."""
        batch, samples = waveforms.shape
        count = num_frames(samples, self.config, self.sample_rate)
        if count == 0:
            raise ValueError(f"{samples} samples is shorter than one {self.window_size}-sample fbank frame")
        x = waveforms.astype(mx.float32) * INT16_SCALE
        frames = mx.as_strided(x, (batch, count, self.window_size), (samples, self.shift, 1))
        # DC offset removed in two passes: a float32 mean's rounding, left in near-silent frames,
        # would leak into the lowest mel bins, whose log then magnifies it.
        frames = frames - mx.mean(frames, axis=-1, keepdims=True)
        frames = frames - mx.mean(frames, axis=-1, keepdims=True)
        previous = mx.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)  # replicate-padded shift
        frames = (frames - PREEMPHASIS * previous) * self.window
        spectrum = mx.abs(mx.fft.rfft(frames, n=self.padded, axis=-1))
        energies = mx.square(spectrum) @ self.banks_T
        return mx.log(mx.maximum(energies, LOG_FLOOR))

    def __call__(self, waveforms: mx.array) -> mx.array:
        features = self.features(waveforms)
        mean = mx.mean(features, axis=1, keepdims=True)
        # A second pass corrects the float32 mean's rounding, which would shift every value alike.
        mean = mean + mx.mean(features - mean, axis=1, keepdims=True)
        return features - mean
