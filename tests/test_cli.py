"""`python -m converter build`: outputs, bad input (one line, non-zero exit, nothing left behind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from converter import build as build_module
from converter.build import build


def converter(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "converter", *args], capture_output=True, text=True)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow
def test_default_build_converts_and_checks_every_recipe(published_run):
    result, out = published_run.run, published_run.folder
    assert result.returncode == 0, result.stderr
    assert leftovers(out.parent) == ["segmentation", "segmentation-3.0"]
    assert leftovers(out) == ["README.md", "checks.json", "config.json", "manifest.json", "model.safetensors"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checks"]["passed"] is True
    assert manifest["source"]["sha256"] == "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea"
    assert manifest["model_type"] == "pyannet" and manifest["conversion"] == {"sincnet_filters": "precomputed"}
    assert "reading" in result.stderr and "running parity checks" in result.stderr
    assert f"{out}: 31 tensors" in result.stdout and "checks passed" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["frames"]["step_samples"] == 270 and config["frames"]["receptive_field_size"] == 991


@pytest.mark.slow
def test_default_build_converts_segmentation_3(published_run):
    """The genuine pyannote/segmentation-3.0 (powerset) recipe: every check passes against pyannote.audio,
    its pipeline included, and its card says what it is."""
    from huggingface_hub import ModelCard

    from checks.report import CheckReport

    out = published_run.folder.parent / "segmentation-3.0"
    report = CheckReport.model_validate_json((out / "checks.json").read_text())
    assert report.passed and report.reference == "pyannote.audio" and len(report.pipeline) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298"
    speech = [c.output for c in report.full_model if c.input.startswith("speech")]
    assert len(speech) == 3 and all(o.max_abs_vs_float64 <= o.tolerance for o in speech)
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "pyannote/segmentation-3.0" and card.data.license == "mit"
    assert "powerset, 7 classes (at most 2 speakers at once)" in card.text and "10 s at 16000 Hz" in card.text
    assert 'mlx_segmentation.load("mlx-community/pyannote-segmentation-3.0")' in card.text and "Plaquet23" in card.text


@pytest.mark.slow
def test_a_second_default_build_is_up_to_date(published_run):
    """Building again into the same dist skips both recipes at once (no conversion, no checks), touching nothing."""
    dist = published_run.folder.parent
    before = {p: p.stat().st_mtime_ns for p in dist.rglob("*")}
    start = time.monotonic()
    result = converter("build", "--dist", str(dist))
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    for name in ("segmentation", "segmentation-3.0"):
        assert f"{dist / name} is up to date (source sha256 " in result.stdout
    assert f"{dist / 'segmentation'}: 31 tensors" in result.stdout and "checks passed" in result.stdout
    assert "reading" not in result.stderr and "check 1/" not in result.stderr
    assert {p: p.stat().st_mtime_ns for p in dist.rglob("*")} == before
    assert elapsed < 60, elapsed  # the checks alone take minutes


def test_manifest_records_every_tensor(fixture_checkpoints, tmp_path):
    result = build(fixture_checkpoints["per-layer"], tmp_path / "m", log=lambda m: None)
    manifest = result.manifest
    assert manifest.source.file_name == "per-layer.ckpt"
    assert manifest.source.versions["pyannote.audio"] == "4.0.7"
    record = manifest.tensors["lstm.layers.0.Wx"]
    assert record.source_keys == ["lstm.0.weight_ih_l0", "lstm.0.weight_ih_l0_reverse"]
    assert (record.rule, record.transform, record.shape, record.dtype) == (
        "lstm-input-weights",
        "lstm_stack_directions",
        [2, 256, 60],
        "float32",
    )
    assert manifest.tensors["sincnet.conv1d.0.weight"].source_keys == [
        "sincnet.conv1d.0.filterbank.low_hz_",
        "sincnet.conv1d.0.filterbank.band_hz_",
        "sincnet.conv1d.0.filterbank.window_",
        "sincnet.conv1d.0.filterbank.n_",
    ]


def test_existing_output_needs_force(fixture_checkpoints, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = converter(
        "build", "--checkpoint", str(fixture_checkpoints["unidirectional"]), "--out", str(out), "--no-checks"
    )
    assert_one_line_error(result, "exists and is not a model folder (no manifest.json)", "--force")
    assert leftovers(out) == ["keep.txt"]
    result = converter(
        "build", "--checkpoint", str(fixture_checkpoints["unidirectional"]), "--out", str(out), "--no-checks", "--force"
    )
    assert result.returncode == 0, result.stderr
    assert leftovers(out) == ["config.json", "manifest.json", "model.safetensors"]
    assert leftovers(tmp_path) == ["out"]


def _save_variant(source: Path, path: Path, change) -> Path:
    checkpoint = torch.load(source, weights_only=False)  # our own trusted fixture
    change(checkpoint["state_dict"])
    torch.save(checkpoint, path)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _nan(state):
    state["linear.0.weight"][0, 0] = float("nan")


BAD_INPUTS = {
    "not a checkpoint": (lambda src, path: _write(path, b"not a model"), ["not a PyTorch checkpoint"]),
    "truncated": (lambda src, path: _write(path, src.read_bytes()[: src.stat().st_size // 2]), ["truncated"]),
    "missing tensor": (
        lambda src, path: _save_variant(src, path, lambda s: s.pop("lstm.0.bias_hh_l0")),
        ["needs missing [lstm.0.bias_hh_l0]"],
    ),
    "extra tensor": (
        lambda src, path: _save_variant(src, path, lambda s: s.update(extra=torch.zeros(2))),
        ["unused source tensors [extra]"],
    ),
    "misshapen tensor": (
        lambda src, path: _save_variant(src, path, lambda s: s.update({"classifier.bias": torch.zeros(5)})),
        ["classifier.bias", "shape (5,)"],
    ),
    "NaN weights": (lambda src, path: _save_variant(src, path, _nan), ["NaN or Inf", "linear.0.weight"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_checkpoints_give_one_line_and_leave_nothing(case, fixture_checkpoints, tmp_path):
    make, fragments = BAD_INPUTS[case]
    bad = make(fixture_checkpoints["per-layer"], tmp_path / "bad.ckpt")
    result = converter("build", "--checkpoint", str(bad), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, *fragments)
    assert leftovers(tmp_path) == ["bad.ckpt"]


def test_forbidden_global_is_named(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "f": np.load}, path)
    result = converter("build", "--checkpoint", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "forbidden pickle global 'numpy.load'")
    assert leftovers(tmp_path) == ["evil.ckpt"]


def test_other_architecture_is_refused(fixture_checkpoints, tmp_path):
    result = converter("build", "--checkpoint", str(fixture_checkpoints["not-pyannet"]), "--out", str(tmp_path / "out"))
    assert_one_line_error(
        result, "SimpleSegmentationModel is none of the families we convert (PyanNet, WeSpeakerResNet34)"
    )
    assert leftovers(tmp_path) == []


def test_missing_checkpoint_file(tmp_path):
    result = converter("build", "--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "no such file")


def test_crash_halfway_leaves_nothing(fixture_checkpoints, tmp_path, monkeypatch):
    def crash(folder, *args, **kwargs):
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(build_module, "write_model", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build(fixture_checkpoints["per-layer"], tmp_path / "out", log=lambda m: None)
    assert leftovers(tmp_path) == []


def test_crash_during_forced_rebuild_keeps_the_old_folder(fixture_checkpoints, tmp_path, monkeypatch):
    out = build(fixture_checkpoints["per-layer"], tmp_path / "out", log=lambda m: None).out
    before = (out / "manifest.json").read_text()
    monkeypatch.setattr(build_module, "write_model", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        build(fixture_checkpoints["per-layer"], out, force=True, log=lambda m: None)
    assert (out / "manifest.json").read_text() == before
    assert leftovers(tmp_path) == ["out"]


@pytest.mark.parametrize(
    ("out", "message", "force"),
    [
        ("{tmp}/link", "is a symbolic link", False),
        ("{tmp}/file.txt/model", "not a writable folder", False),
        (".", "holds the current folder", True),
        ("..", "holds the current folder", True),
        ("{tmp}/inputs", "holds {tmp}/inputs/model.ckpt, which the build reads", True),
        ("/proc/no/such/place", "cannot create", False),
    ],
    ids=[
        "dangling symlink",
        "parent is a file",
        "out is .",
        "out is ..",
        "out holds the checkpoint",
        "unwritable place",
    ],
)
def test_output_paths_are_checked_before_any_work(out, message, force, fixture_checkpoints, tmp_path):
    checkpoint = tmp_path / "inputs" / "model.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(fixture_checkpoints["unidirectional"].read_bytes())
    (tmp_path / "work").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("a file")
    before = leftovers(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "converter",
            "build",
            "--checkpoint",
            str(checkpoint),
            "--out",
            out.replace("{tmp}", str(tmp_path)),
            *(["--force"] if force else []),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path / "work",
    )
    assert_one_line_error(result, message.replace("{tmp}", str(tmp_path)))
    assert "reading" not in result.stderr  # refused before the checkpoint was opened
    assert leftovers(tmp_path) == before


def test_non_utf8_output_path_is_refused(fixture_checkpoints, tmp_path):
    out = os.fsencode(tmp_path) + b"/\xff\xfe"
    result = subprocess.run(
        [
            sys.executable.encode(),
            b"-m",
            b"converter",
            b"build",
            b"--checkpoint",
            os.fsencode(fixture_checkpoints["unidirectional"]),
            b"--out",
            out,
        ],
        capture_output=True,
        text=True,
    )
    assert_one_line_error(result, "the path is not valid UTF-8")
    assert leftovers(tmp_path) == []


def test_every_recipe_output_is_checked_before_the_first_build(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for name in ("a", "b"):
        (recipes / f"{name}.toml").write_text(
            (Path(__file__).parent.parent / "models" / "segmentation.toml")
            .read_text()
            .replace('name = "segmentation"', f'name = "{name}"')
        )
    (tmp_path / "dist" / "b").mkdir(parents=True)
    result = converter("build", "--recipes", str(recipes), "--dist", str(tmp_path / "dist"), "--no-checks")
    assert_one_line_error(result, "b exists and is not a model folder")
    assert leftovers(tmp_path / "dist") == ["b"]


@pytest.mark.parametrize("field", ["size", "sha256"])
def test_a_source_that_differs_from_its_recipe_is_refused(field, real_checkpoint):
    from converter.errors import RecipeError
    from converter.recipe import load_recipes
    from converter.sources import verify_source

    (recipe,) = [r for r in load_recipes() if r.name == "segmentation"]
    assert verify_source(real_checkpoint, recipe) == real_checkpoint
    wrong = recipe.source.size + 1 if field == "size" else "0" * 64
    edited = recipe.model_copy(update={"source": recipe.source.model_copy(update={field: wrong})})
    with pytest.raises(RecipeError, match="bytes, expected" if field == "size" else "has sha256"):
        verify_source(real_checkpoint, edited)
