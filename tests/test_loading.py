"""`mlx_segmentation.load`: a working nn.Module, and refusal of tampered or incomplete folders."""

from __future__ import annotations

import json
import shutil

import mlx.core as mx
import mlx.nn as nn
import pytest

import mlx_segmentation
from converter.writer import seal
from mlx_segmentation import ModelLoadError


@pytest.fixture
def folder(converted, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(converted["segmentation-2022"], copy)
    return copy


def test_load_gives_a_module_with_its_config(converted):
    model = mlx_segmentation.load(converted["segmentation-2022"])
    assert isinstance(model, nn.Module)
    assert model.specifications.classes == ["speaker#1", "speaker#2", "speaker#3"]
    assert model.specifications.activation == "sigmoid"
    assert model.frames.step == 270 / 16000
    outputs = model(mx.zeros((2, 80000)))
    assert outputs.shape == (2, 293, 3) and outputs.dtype == mx.float32


def test_powerset_model_returns_log_probabilities(converted):
    model = mlx_segmentation.load(converted["powerset"])
    assert model.specifications.num_outputs == 7
    assert model.specifications.powerset_classes() == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    outputs = model(mx.random.normal((1, 160000)) * 0.1)
    assert outputs.shape == (1, 589, 7)
    assert mx.allclose(mx.exp(outputs).sum(axis=-1), mx.ones((1, 589)), atol=1e-5).item()


def test_too_short_input_is_refused(converted):
    model = mlx_segmentation.load(converted["segmentation-2022"])
    assert model.frames.min_num_samples == 1261  # pyannote's introspection: min_num_samples 1261, 2 frames
    assert model(mx.zeros((1, 1261))).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="1260 samples is too short: the model needs at least 1261"):
        model(mx.zeros((1, 1260)))


def test_tampered_weights_are_refused(folder):
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x40
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its sha256"):
        mlx_segmentation.load(folder)


def reseal(folder):
    """Re-record every file's sha256 in the manifest, as someone who edits the manifest too would."""
    manifest = seal(folder)
    manifest.weights_sha256 = manifest.files["model.safetensors"]
    (folder / "manifest.json").write_text(manifest.model_dump_json())


def test_truncated_weights_are_refused(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match="does not match its sha256"):
        mlx_segmentation.load(folder)
    reseal(folder)  # the hashes agree now: the parser must still refuse the file
    with pytest.raises(ModelLoadError, match="truncated or not a safetensors file"):
        mlx_segmentation.load(folder)


def test_manifest_that_disagrees_is_refused(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["tensors"]["classifier.bias"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"differ from the manifest .*classifier.bias"):
        mlx_segmentation.load(folder)


def test_missing_files_are_named(folder, tmp_path):
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json: missing"):
        mlx_segmentation.load(folder)
    with pytest.raises(ModelLoadError, match="no such model folder"):
        mlx_segmentation.load(tmp_path / "elsewhere")


def test_edited_frame_timing_is_refused(folder):
    config = json.loads((folder / "config.json").read_text())
    config["frames"]["step"] = 0.017
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="config.json: does not match its sha256"):
        mlx_segmentation.load(folder)
    reseal(folder)
    with pytest.raises(ModelLoadError, match="frame timing disagrees with the layers"):
        mlx_segmentation.load(folder)
