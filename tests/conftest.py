"""Shared fixtures: the real 2022 checkpoint, checkpoints made with pyannote.audio's classes, builds.

Checked builds are the expensive part of the suite; each is made once per session and shared by the
tests that only read it (they copy it before changing anything):
- `small_checked`: a checked build of a small forged PyanNet (fast tier);
- `published`: `python -m converter build` on the default recipe, the real model (slow tier).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from converter.build import build
from converter.cli import build_and_check
from converter.recipe import load_recipes
from converter.sources import fetch_source


def quiet(message: str) -> None:
    pass


@pytest.fixture(scope="session")
def real_checkpoint() -> Path:
    """pyannote/segmentation (2022), pinned by sha256 in models/segmentation.toml."""
    (recipe,) = [r for r in load_recipes() if r.name == "segmentation"]
    return fetch_source(recipe)


@pytest.fixture(scope="session")
def real_checkpoint_3() -> Path:
    """pyannote/segmentation-3.0 (powerset, 10 s windows), pinned by sha256 in models/segmentation-3.0.toml."""
    (recipe,) = [r for r in load_recipes() if r.name == "segmentation-3.0"]
    return fetch_source(recipe)


@pytest.fixture(scope="session")
def fixture_checkpoints(tmp_path_factory, real_checkpoint) -> dict[str, Path]:
    from make_fixtures import FIXTURES, make_fixture

    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: make_fixture(name, folder / f"{name}.ckpt", trained=real_checkpoint) for name in FIXTURES}


@pytest.fixture(scope="session")
def checkpoints(real_checkpoint, real_checkpoint_3, fixture_checkpoints) -> dict[str, Path]:
    """Every convertible segmentation (PyanNet) checkpoint, by name."""
    segmentation = {k: v for k, v in fixture_checkpoints.items() if k not in ("not-pyannet", "wespeaker")}
    return {"segmentation-2022": real_checkpoint, "segmentation-3.0": real_checkpoint_3, **segmentation}


@pytest.fixture(scope="session")
def converted(tmp_path_factory, checkpoints) -> dict[str, Path]:
    """Each checkpoint converted without the build's own checks (the tests check independently)."""
    folder = tmp_path_factory.mktemp("converted")
    return {name: build(path, folder / name, log=quiet).out for name, path in checkpoints.items()}


@pytest.fixture(scope="session")
def small_checked(tmp_path_factory) -> Path:
    """A checked, carded and sealed build of a small forged PyanNet (hidden size 8): publishable, and cheap."""
    from forge import small_pyannet

    folder = tmp_path_factory.mktemp("small")
    checkpoint = small_pyannet().write(folder / "small.ckpt")
    result = build_and_check(checkpoint, folder / "model", log=quiet)
    assert result.checks_passed, result.report.table()
    return result.out


@dataclass(frozen=True)
class Published:
    folder: Path
    run: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def published_run(tmp_path_factory) -> Published:
    """`python -m converter build --dist DIR`: every recipe converted, checked and sealed, as users run it."""
    dist = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-m", "converter", "build", "--dist", str(dist)], capture_output=True, text=True
    )
    return Published(dist / "segmentation", run)


@pytest.fixture(scope="session")
def published(published_run) -> Path:
    assert published_run.run.returncode == 0, published_run.run.stderr
    return published_run.folder
