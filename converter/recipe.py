"""Recipes: one TOML file in models/ per model we publish (source, hash, target repo, license, gates)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import RecipeError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "models"


class PyPIMember(BaseModel):
    """A file inside a wheel on PyPI (how the real checkpoint reaches machines without Hub access)."""

    model_config = ConfigDict(extra="forbid")
    requirement: str  # e.g. whisperx==3.8.6
    member: str  # path inside the wheel


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_name: str
    sha256: str
    size: int
    pypi: PyPIMember


class Gates(BaseModel):
    """Parity gates; the defaults are those of the conversion issue."""

    model_config = ConfigDict(extra="forbid")
    exactness_factor: float = 2.0  # max |MLX - float64| <= max(factor * e, floor)
    exactness_floor: float = 1e-5
    min_correlation: float = 0.99999


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    base_model: str  # the original model's Hub repo
    license: str
    target_repo: str
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    source: SourceSpec
    gates: Gates = Gates()


def load_recipe(path: Path) -> Recipe:
    try:
        return Recipe(**tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as error:
        raise RecipeError(f"{path}: invalid recipe ({str(error).splitlines()[0]})") from None


def load_recipes(folder: Path = RECIPES_DIR) -> list[Recipe]:
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise RecipeError(f"{folder}: no recipes (*.toml)")
    return [load_recipe(path) for path in paths]
