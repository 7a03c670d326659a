"""Tampered model folders: every file of a checked build edited, removed, or one added, given to
`mlx_segmentation.load`, to the speech CLI and to `python -m converter push --dry-run`.

`load` reads config.json, manifest.json and model.safetensors, and verifies each against the
manifest before parsing it; push verifies all of that plus every other file and the agreement of the
manifest with checks.json. A change to a file that load does not read (the card, the report) does not
stop load, and must stop push."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import mlx_segmentation
from checks.audio import sample_wav
from converter.writer import seal
from mlx_segmentation import ModelLoadError


def _edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        change(data)
        (folder / name).write_text(json.dumps(data, indent=2))

    return edit


def _flip_byte(name: str, at: int = -10) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = bytearray((folder / name).read_bytes())
        data[at] ^= 0x40
        (folder / name).write_bytes(bytes(data))

    return edit


def _first_tensor_hash(manifest: dict) -> None:
    first = sorted(manifest["tensors"])[0]
    manifest["tensors"][first]["sha256"] = "0" * 64


def _checks_failed(report: dict) -> None:
    report["passed"] = False


def _failed_report_resealed(folder: Path) -> None:
    """checks.json says failed while the manifest says passed, and every file hash is re-recorded."""
    _edit_json("checks.json", _checks_failed)(folder)
    seal(folder)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _add(name: str, folder_instead: bool = False) -> Callable[[Path], None]:
    def add(folder: Path) -> None:
        (folder / name).mkdir() if folder_instead else (folder / name).write_text("extra")

    return add


# case: (tamper, what load() says or None when load does not read that file, what push says)
CASES: dict[str, tuple[Callable[[Path], None], str | None, str]] = {
    "config.json edited (MULTI_LABEL to MONO_LABEL)": (
        lambda f: (f / "config.json").write_text((f / "config.json").read_text().replace("MULTI_LABEL", "MONO_LABEL")),
        "config.json: does not match its sha256",
        "config.json: does not match its sha256",
    ),
    "config.json removed": (_remove("config.json"), "config.json: missing", "config.json: missing"),
    "config.json replaced by a folder": (
        lambda f: ((f / "config.json").unlink(), (f / "config.json").mkdir()),
        "config.json: cannot be read",
        "config.json: cannot be read",
    ),
    "manifest.json tensor hash edited": (
        _edit_json("manifest.json", _first_tensor_hash),
        "does not match its sha256 in the manifest",
        "does not match its sha256",
    ),
    "manifest.json says a file has another hash": (
        _edit_json("manifest.json", lambda m: m["files"].update({"config.json": "0" * 64})),
        "config.json: does not match its sha256",
        "config.json: does not match",
    ),
    "manifest.json not JSON": (lambda f: (f / "manifest.json").write_text("{"), "invalid Manifest", "invalid Manifest"),
    "manifest.json removed": (_remove("manifest.json"), "manifest.json: missing", "no manifest.json"),
    "model.safetensors byte flipped": (
        _flip_byte("model.safetensors"),
        "model.safetensors: does not match its sha256",
        "model.safetensors: does not match",
    ),
    "model.safetensors truncated": (
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:1000]),
        "does not match its sha256",
        "does not match",
    ),
    "model.safetensors removed": (
        _remove("model.safetensors"),
        "model.safetensors: missing",
        "model.safetensors: missing",
    ),
    "checks.json edited": (_edit_json("checks.json", _checks_failed), None, "checks.json changed after the checks"),
    "checks.json says failed, hashes re-recorded": (_failed_report_resealed, None, "disagree on the checks' outcome"),
    "checks.json removed": (_remove("checks.json"), None, "missing ['checks.json']"),
    "README.md edited": (
        lambda f: (f / "README.md").write_text("# my model\n"),
        None,
        "README.md changed after the checks",
    ),
    "README.md removed": (_remove("README.md"), None, "missing ['README.md']"),
    "a file added": (_add("notes.txt"), None, "unexpected ['notes.txt']"),
    "a folder added": (_add("extra", folder_instead=True), None, "unexpected ['extra']"),
}


@pytest.fixture
def tampered(request, small_checked, tmp_path) -> tuple[Path, str | None, str]:
    tamper, load_says, push_says = CASES[request.param]
    folder = tmp_path / "segmentation"
    shutil.copytree(small_checked, folder)
    tamper(folder)
    return folder, load_says, push_says


def one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("tampered", sorted(CASES), indirect=True)
def test_load(tampered):
    folder, load_says, _ = tampered
    if load_says is None:
        assert mlx_segmentation.load(folder).specifications.classes == ["speaker#1", "speaker#2"]
    else:
        with pytest.raises(ModelLoadError, match=load_says.replace("[", r"\[")):
            mlx_segmentation.load(folder)


@pytest.mark.parametrize("tampered", sorted(c for c in CASES if CASES[c][1] is not None), indirect=True)
def test_speech_cli(tampered):
    folder, load_says, _ = tampered
    result = subprocess.run(
        [sys.executable, "-m", "mlx_segmentation", str(sample_wav()), "--model", str(folder)],
        capture_output=True,
        text=True,
    )
    assert load_says in one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("tampered", sorted(CASES), indirect=True)
def test_push_dry_run(tampered):
    folder, _, push_says = tampered
    result = subprocess.run(
        [sys.executable, "-m", "converter", "push", str(folder), "--repo", "me/seg", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert push_says in one_error_line(result)


def test_untampered_folder_passes_all_three(small_checked):
    assert mlx_segmentation.load(small_checked).specifications.duration == 5.0
    result = subprocess.run(
        [sys.executable, "-m", "converter", "push", str(small_checked), "--repo", "me/seg", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
