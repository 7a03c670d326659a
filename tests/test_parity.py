"""The converted models against genuine pyannote.audio (`Model.from_pretrained` then `forward`).

Gates, per input: with e = max |pyannote float32 - pyannote float64| on that input,
- max |MLX - pyannote float64| <= max(2e, 1e-5) on probabilities,
- Pearson correlation of raw outputs with pyannote float32 >= 0.99999,
- decisions identical to float64's wherever float64 lies farther than that tolerance from the boundary.
The metrics are computed here, independently of checks/, so a bug there cannot hide one here.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from pyannote.audio import Model

import mlx_segmentation
from checks import reference
from checks.audio import speech_chunks
from converter.families import model_config
from converter.reader import read_checkpoint

# The two real models and the smallest fixture in the fast tier; the two larger fixtures in the slow one.
NAMES = [
    "segmentation-2022",
    "segmentation-3.0",
    pytest.param("powerset", marks=pytest.mark.slow),
    pytest.param("per-layer", marks=pytest.mark.slow),
    "unidirectional",
]


def pyannote_outputs(model: torch.nn.Module, chunks: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        dtype = next(model.parameters()).dtype
        return model(torch.from_numpy(chunks).to(dtype)[:, None]).double().numpy()


@pytest.fixture(scope="module", params=NAMES)
def outputs(request, checkpoints, converted):
    """(name, spec, MLX, pyannote float32, pyannote float64) outputs on every chunk of sample.wav."""
    name = request.param
    torch32 = Model.from_pretrained(checkpoints[name]).eval()  # trusted: pinned or made by our script
    torch64 = Model.from_pretrained(checkpoints[name]).eval().double()
    mlx_model = mlx_segmentation.load(converted[name])
    chunks = speech_chunks(mlx_model.specifications.duration, mlx_model.config.sample_rate)
    ours = np.stack([np.array(mlx_model(mx.array(chunk[None])))[0] for chunk in chunks]).astype(np.float64)
    return name, mlx_model.specifications, ours, pyannote_outputs(torch32, chunks), pyannote_outputs(torch64, chunks)


def test_shapes_match_pyannote(outputs):
    name, spec, ours, ref32, _ = outputs
    assert ours.shape == ref32.shape
    assert ours.shape[-1] == (7 if name in ("powerset", "segmentation-3.0") else len(spec.classes))


def test_exactness_against_float64(outputs):
    name, spec, ours, ref32, ref64 = outputs
    to_probs = np.exp if spec.powerset else (lambda x: x)
    for i in range(len(ours)):
        e = np.abs(to_probs(ref32[i]) - to_probs(ref64[i])).max()
        error = np.abs(to_probs(ours[i]) - to_probs(ref64[i])).max()
        print(f"{name} chunk {i}: max|MLX-f64| {error:.2e}, pyannote f32 error e {e:.2e}")
        assert error <= max(2 * e, 1e-5), f"{name} chunk {i}: {error:.3e} > max(2 * {e:.3e}, 1e-5)"


def test_correlation_with_float32(outputs):
    name, _, ours, ref32, _ = outputs
    for i in range(len(ours)):
        r = np.corrcoef(ours[i].ravel(), ref32[i].ravel())[0, 1]
        assert r >= 0.99999, f"{name} chunk {i}: Pearson {r}"


def test_decisions_match_float64(outputs):
    name, spec, ours, ref32, ref64 = outputs
    excluded_total = 0
    for i in range(len(ours)):
        if spec.powerset:
            p32, p64 = np.exp(ref32[i]), np.exp(ref64[i])
            tolerance = max(2 * np.abs(p32 - p64).max(), 1e-5)
            top_two = np.sort(p64, axis=-1)[:, -2:]
            clear = (top_two[:, 1] - top_two[:, 0]) > tolerance
            same = ours[i].argmax(-1) == ref64[i].argmax(-1)
        else:
            tolerance = max(2 * np.abs(ref32[i] - ref64[i]).max(), 1e-5)
            clear = np.abs(ref64[i] - 0.5) > tolerance
            same = (ours[i] > 0.5) == (ref64[i] > 0.5)
        excluded_total += int((~clear).sum())
        assert same[clear].all(), f"{name} chunk {i}: {(~same & clear).sum()} decisions differ"
    print(f"{name}: {excluded_total} decisions excluded as within float32 noise of the boundary")
    assert excluded_total <= 0.005 * ours[..., 0].size * (1 if spec.powerset else ours.shape[-1])


@pytest.mark.parametrize("name", NAMES)
def test_reference_equals_from_pretrained(name, checkpoints):
    """checks/ builds pyannote's PyanNet from the safely read checkpoint; it must equal from_pretrained."""
    source = read_checkpoint(checkpoints[name])
    ours = reference.pyannote_model(source, model_config(source))
    theirs = Model.from_pretrained(checkpoints[name]).eval()
    chunks = speech_chunks(theirs.specifications.duration, 16000)[:2]
    np.testing.assert_array_equal(pyannote_outputs(ours, chunks), pyannote_outputs(theirs, chunks))
