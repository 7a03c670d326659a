"""Rules and the rule engine: transforms against their PyTorch originals, and strictness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from asteroid_filterbanks import ParamSincFB
from mlx.utils import tree_flatten

from converter.engine import apply_rules
from converter.errors import MappingError
from converter.families import model_config
from converter.reader import read_checkpoint
from converter.rules.pyannet import pyannet_rules
from converter.rules.transforms import lstm_fuse_biases, sinc_filters
from mlx_segmentation.pyannet import PyanNet, frame_timing


@pytest.fixture(scope="module")
def source(real_checkpoint):
    return read_checkpoint(real_checkpoint)


@pytest.fixture(scope="module")
def expected(source):
    return {name: tuple(p.shape) for name, p in tree_flatten(PyanNet(model_config(source)).parameters())}


def test_sinc_filters_equal_asteroid_in_float64(source):
    """Our numpy filters equal asteroid's ParamSincFB.filters() run in float64 on the trained parameters."""
    filterbank = ParamSincFB(80, 251, stride=10, sample_rate=16000, min_low_hz=50, min_band_hz=50).double()
    prefix = "sincnet.conv1d.0.filterbank."
    filterbank.load_state_dict(
        {k[len(prefix) :]: torch.from_numpy(v) for k, v in source.tensors.items() if k.startswith(prefix)}
    )
    with torch.no_grad():
        theirs = filterbank.filters().numpy()  # (80, 1, 251)
    ours = sinc_filters(
        *(source.tensors[prefix + k] for k in ("low_hz_", "band_hz_", "window_", "n_")),
        min_low_hz=50.0,
        min_band_hz=50.0,
        sample_rate=16000.0,
    )
    np.testing.assert_allclose(ours.transpose(0, 2, 1), theirs, rtol=0, atol=1e-12)


def test_lstm_bias_fusion_adds_both_biases():
    fused = lstm_fuse_biases(
        np.ones(4, np.float32), np.full(4, 2, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)
    )
    np.testing.assert_array_equal(fused, [[3, 3, 3, 3], [1, 1, 1, 1]])


def test_every_tensor_is_accounted_for(source, expected):
    mapped = apply_rules(source.tensors, pyannet_rules(16000), expected)
    assert set(mapped) == set(expected)
    used = [key for item in mapped.values() for key in item.source_keys]
    assert sorted(used) == sorted(source.tensors)
    assert mapped["lstm.layers.2.bias"].source_keys == [
        "lstm.bias_ih_l2",
        "lstm.bias_hh_l2",
        "lstm.bias_ih_l2_reverse",
        "lstm.bias_hh_l2_reverse",
    ]
    assert mapped["sincnet.conv1d.1.weight"].array.shape == (60, 5, 80)


def test_unused_source_tensor_fails(source, expected):
    with pytest.raises(MappingError, match=r"unused source tensors \[extra.weight\]"):
        apply_rules({**source.tensors, "extra.weight": np.zeros(3, np.float32)}, pyannet_rules(16000), expected)


def test_missing_source_tensor_fails(source, expected):
    tensors = {k: v for k, v in source.tensors.items() if k != "lstm.bias_hh_l1"}
    with pytest.raises(MappingError, match=r"lstm.layers.1.bias needs missing \[lstm.bias_hh_l1\]"):
        apply_rules(tensors, pyannet_rules(16000), expected)


def test_misshapen_tensor_fails(source, expected):
    tensors = {**source.tensors, "linear.0.weight": np.zeros((128, 255), np.float32)}
    with pytest.raises(
        MappingError, match=r"linear.0.weight .* has shape \(128, 255\), the model expects \(128, 256\)"
    ):
        apply_rules(tensors, pyannet_rules(16000), expected)


def test_parameter_not_produced_fails(source, expected):
    with pytest.raises(MappingError, match=r"MLX parameters not produced \[extra.bias\]"):
        apply_rules(source.tensors, pyannet_rules(16000), {**expected, "extra.bias": (3,)})


def test_non_finite_weights_fail(source, expected):
    bad = source.tensors["classifier.bias"].copy()
    bad[1] = np.nan
    with pytest.raises(MappingError, match=r"NaN or Inf values: \[classifier.bias\]"):
        apply_rules({**source.tensors, "classifier.bias": bad}, pyannet_rules(16000), expected)


def test_frame_timing_matches_pyannote(real_checkpoint):
    from pyannote.audio import Model

    model = Model.from_pretrained(real_checkpoint)
    ours = frame_timing(16000, 10)
    theirs = model.receptive_field
    assert (ours.start, ours.duration, ours.step) == (theirs.start, theirs.duration, theirs.step)
    assert (ours.step_samples, ours.receptive_field_size) == (270, 991)
    assert PyanNet(model_config(read_checkpoint(real_checkpoint))).num_frames(80000) == model.num_frames(80000) == 293
