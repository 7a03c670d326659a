"""Reading checkpoints safely: real files read, code-running pickles refused before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from converter.errors import CheckpointError, ForbiddenGlobalError
from converter.reader import read_checkpoint


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reads_the_2022_lightning_checkpoint(real_checkpoint):
    source = read_checkpoint(real_checkpoint)
    assert source.sha256 == "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea"
    assert len(source.tensors) == 54
    assert source.tensors["lstm.weight_ih_l0"].shape == (512, 60)
    assert source.hyper_parameters["lstm"] == {
        "hidden_size": 128,
        "num_layers": 4,
        "bidirectional": True,
        "monolithic": True,
        "dropout": 0.5,
        "batch_first": True,
    }
    assert source.specifications["problem"] == "MULTI_LABEL_CLASSIFICATION"
    assert source.specifications["classes"] == ["speaker#1", "speaker#2", "speaker#3"]
    assert source.versions == {"torch": "1.10.0+cu102", "pyannote.audio": "0.0.1", "pytorch-lightning": "1.5.4"}


def test_tensors_equal_torch_load(fixture_checkpoints):
    ours = read_checkpoint(fixture_checkpoints["per-layer"])
    theirs = torch.load(fixture_checkpoints["per-layer"], weights_only=False)  # our own trusted fixture
    assert ours.architecture == "pyannote.audio.models.segmentation.PyanNet.PyanNet"
    assert ours.versions["pyannote.audio"] == "4.0.7"
    assert ours.specifications["powerset_max_classes"] is None
    assert set(ours.tensors) == set(theirs["state_dict"])
    for key, tensor in theirs["state_dict"].items():
        np.testing.assert_array_equal(ours.tensors[key], tensor.numpy())


def test_pickle_that_runs_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": RunsACommand(marker)}, path)
    with pytest.raises(ForbiddenGlobalError, match=r"forbidden pickle global '(posix|os)\.system'"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [eval, getattr, zipfile.ZipFile])
def test_other_globals_are_refused_by_name(tmp_path, payload):
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {}, "x": payload}, path)
    with pytest.raises(ForbiddenGlobalError, match=payload.__name__):
        read_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(path)


def test_truncated_checkpoint(tmp_path, real_checkpoint):
    path = tmp_path / "truncated.bin"
    path.write_bytes(real_checkpoint.read_bytes()[:5_000_000])
    with pytest.raises(CheckpointError, match="not a zip archive, or truncated"):
        read_checkpoint(path)


def test_plain_state_dict_is_not_a_pyannote_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not a pyannote.audio checkpoint"):
        read_checkpoint(path)


def test_reading_and_converting_need_neither_torch_nor_pyannote(real_checkpoint, tmp_path):
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from converter.build import build\n"
        f"build(Path({str(real_checkpoint)!r}), Path({str(tmp_path / 'out')!r}), log=lambda m: None)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pyannote', 'lightning'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert (tmp_path / "out" / "model.safetensors").is_file()
