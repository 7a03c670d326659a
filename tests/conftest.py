"""Shared fixtures: the real 2022 checkpoint, checkpoints made with pyannote.audio's classes, builds."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from converter.build import build
from converter.cli import build_and_check
from converter.recipe import load_recipes
from converter.sources import fetch_source

warnings.filterwarnings("ignore", message=".*torchcodec.*")


@pytest.fixture(scope="session")
def real_checkpoint() -> Path:
    """pyannote/segmentation (2022), pinned by sha256 in models/segmentation.toml."""
    (recipe,) = [r for r in load_recipes() if r.name == "segmentation"]
    return fetch_source(recipe)


@pytest.fixture(scope="session")
def fixture_checkpoints(tmp_path_factory, real_checkpoint) -> dict[str, Path]:
    from make_fixtures import FIXTURES, make_fixture

    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: make_fixture(name, folder / f"{name}.ckpt", trained=real_checkpoint) for name in FIXTURES}


@pytest.fixture(scope="session")
def checkpoints(real_checkpoint, fixture_checkpoints) -> dict[str, Path]:
    """Every convertible segmentation (PyanNet) checkpoint, by name."""
    segmentation = {k: v for k, v in fixture_checkpoints.items() if k not in ("not-pyannet", "wespeaker")}
    return {"segmentation-2022": real_checkpoint, **segmentation}


@pytest.fixture(scope="session")
def converted(tmp_path_factory, checkpoints) -> dict[str, Path]:
    """Each checkpoint converted without the build's own checks (the tests check independently)."""
    folder = tmp_path_factory.mktemp("converted")
    return {
        name: build(path, folder / name, log=lambda message: None).out
        for name, path in checkpoints.items()
    }


@pytest.fixture(scope="session")
def published(real_checkpoint, tmp_path_factory) -> Path:
    """A checked build of the default recipe, as `python -m converter build` makes it."""
    (recipe,) = [r for r in load_recipes() if r.name == "segmentation"]
    out = tmp_path_factory.mktemp("published") / "segmentation"
    build_and_check(real_checkpoint, out, recipe=recipe, log=lambda m: None)
    return out
