"""The fallback torch PyanNet equals genuine pyannote.audio, and is used only without pyannote.audio."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from checks import reference
from checks.audio import speech_chunks
from converter.families import model_config
from converter.reader import read_checkpoint

# Two small fixtures in the fast tier (the float64 LSTM of the 4-layer models takes a minute each).
NAMES = [
    pytest.param("segmentation-2022", marks=pytest.mark.slow),
    pytest.param("segmentation-3.0", marks=pytest.mark.slow),
    pytest.param("powerset", marks=pytest.mark.slow),
    "per-layer",
    "unidirectional",
]


@pytest.mark.parametrize("name", NAMES)
def test_own_torch_pyannet_equals_pyannote(name, checkpoints):
    source = read_checkpoint(checkpoints[name])
    config = model_config(source)
    ours, theirs = reference.own_torch_model(source, config), reference.pyannote_model(source, config)
    chunks = speech_chunks(config.specifications.duration, config.sample_rate)[:2]
    silence_and_noise = np.stack(
        [np.zeros(chunks.shape[1]), np.random.default_rng(0).normal(0, 0.1, chunks.shape[1])]
    ).astype(np.float32)
    for waveforms in (chunks, silence_and_noise):
        np.testing.assert_array_equal(reference.run(ours, waveforms), reference.run(theirs, waveforms))
        np.testing.assert_array_equal(
            reference.run(reference.as_float64(ours), waveforms), reference.run(reference.as_float64(theirs), waveforms)
        )


def test_reference_constants_are_pyannotes():
    """The fallback's SincNet constants, stated in checks/torch_pyannet.py, are those of pyannote.audio's SincNet."""
    from pyannote.audio.models.blocks.sincnet import SincNet

    from checks import torch_pyannet as ours

    theirs = SincNet(sample_rate=16000, stride=10)
    filterbank = theirs.conv1d[0].filterbank
    assert (filterbank.n_filters, filterbank.kernel_size) == (ours.SINC_FILTERS, ours.SINC_KERNEL)
    assert (filterbank.min_low_hz, filterbank.min_band_hz) == (ours.SINC_MIN_LOW_HZ, ours.SINC_MIN_BAND_HZ)
    for conv in theirs.conv1d[1:]:
        assert (conv.out_channels, conv.kernel_size) == (ours.CONV_CHANNELS, (ours.CONV_KERNEL,))
    assert all(pool.kernel_size == pool.stride == ours.POOL for pool in theirs.pool1d)


def test_fallback_is_used_without_pyannote(checkpoints, monkeypatch):
    source = read_checkpoint(checkpoints["segmentation-2022"])
    _, name = reference.reference_model(source, model_config(source))
    assert name == "pyannote.audio"
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)  # makes `import pyannote.audio` fail
    model, name = reference.reference_model(source, model_config(source))
    assert name.startswith("checks.torch_pyannet") and type(model).__name__ == "TorchPyanNet"
