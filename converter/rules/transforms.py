"""Pure numpy transforms from PyTorch tensors to MLX parameters."""

from __future__ import annotations

import numpy as np


def identity(tensor: np.ndarray) -> np.ndarray:
    """Same layout in both frameworks (norm scales and biases; Linear weights are (out, in) in both)."""
    return tensor


def conv1d_layout(weight: np.ndarray) -> np.ndarray:
    """Conv1d weight: PyTorch (out, in, kernel) -> MLX (out, kernel, in)."""
    return weight.transpose(0, 2, 1)


def lstm_stack_directions(forward: np.ndarray, reverse: np.ndarray | None) -> np.ndarray:
    """LSTM weight (4 * hidden, in) per direction -> (directions, 4 * hidden, in); gates stay i, f, g, o."""
    return np.stack([forward] if reverse is None else [forward, reverse])


def lstm_fuse_biases(
    bias_ih: np.ndarray, bias_hh: np.ndarray, bias_ih_reverse: np.ndarray | None, bias_hh_reverse: np.ndarray | None
) -> np.ndarray:
    """PyTorch keeps `bias_ih` and `bias_hh` apart; the cell only ever uses their sum."""
    fused = [bias_ih.astype(np.float64) + bias_hh]
    if bias_ih_reverse is not None or bias_hh_reverse is not None:
        if bias_ih_reverse is None or bias_hh_reverse is None:
            raise ValueError("reverse direction has only one of its two biases")
        fused.append(bias_ih_reverse.astype(np.float64) + bias_hh_reverse)
    return np.stack(fused)


def sinc_filters(
    low_hz_: np.ndarray,
    band_hz_: np.ndarray,
    window_: np.ndarray,
    n_: np.ndarray,
    *,
    min_low_hz: float,
    min_band_hz: float,
    sample_rate: float,
) -> np.ndarray:
    """asteroid's ParamSincFB.filters(), in float64, laid out as an MLX Conv1d weight (out, kernel, 1).

    Cosine (even) filters first, then sine (odd) filters, as `torch.cat([cos, sin])` does.
    """
    low_hz_, band_hz_, window_, n_ = (np.asarray(t, dtype=np.float64) for t in (low_hz_, band_hz_, window_, n_))
    low = min_low_hz + np.abs(low_hz_)  # (filters/2, 1)
    high = np.clip(low + min_band_hz + np.abs(band_hz_), min_low_hz, sample_rate / 2)
    band = (high - low)[:, 0]
    ft_low, ft_high = low @ n_, high @ n_  # (filters/2, half_kernel)

    cos_left = ((np.sin(ft_high) - np.sin(ft_low)) / (n_ / 2)) * window_
    cos_filters = np.concatenate([cos_left, 2 * band[:, None], cos_left[:, ::-1]], axis=1)
    sin_left = ((np.cos(ft_low) - np.cos(ft_high)) / (n_ / 2)) * window_
    sin_filters = np.concatenate([sin_left, np.zeros_like(band[:, None]), -sin_left[:, ::-1]], axis=1)

    filters = np.concatenate([cos_filters, sin_filters]) / (2 * np.concatenate([band, band])[:, None])
    return filters[:, :, None]


def conv2d_layout(weight: np.ndarray) -> np.ndarray:
    """Conv2d weight: PyTorch (out, in, height, width) -> MLX (out, height, width, in)."""
    return weight.transpose(0, 2, 3, 1)


def batchnorm_running_var(running_var: np.ndarray, num_batches_tracked: np.ndarray | None) -> np.ndarray:
    """The running variance as stored; the batch counter beside it must be a plain integer count."""
    if num_batches_tracked is not None and (
        num_batches_tracked.dtype.kind not in "iu" or num_batches_tracked.size != 1
    ):
        raise ValueError("num_batches_tracked is not an integer count")
    if (running_var < 0).any():
        raise ValueError("negative running variance")
    return running_var
