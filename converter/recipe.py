"""Recipes: one TOML file in models/ per model we publish (source, hash, target repo, license, gates)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mlx_segmentation.config import first_error

from .errors import RecipeError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "models"


class PyPIMember(BaseModel):
    """A file inside a wheel on PyPI (how the real checkpoint reaches machines without Hub access)."""

    model_config = ConfigDict(extra="forbid")
    requirement: str  # e.g. whisperx==3.8.6
    member: str  # path inside the wheel
    # For a wheel built per platform: which one to download, whatever machine fetches it (the member is the same).
    platform: str | None = None  # e.g. manylinux_2_28_x86_64
    python_version: str | None = None  # e.g. 3.11


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_name: str
    sha256: str
    size: int
    pypi: PyPIMember


DType = Literal["float32", "float16", "bfloat16"]


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    base_model: str  # the original model's Hub repo
    license: str
    target_repo: str
    dtype: DType = "float32"
    source: SourceSpec
    # Parity gates by dtype, as the checks define them (checks/gates.py); absent: the checks' defaults.
    gates: dict[DType, dict[str, float]] = {}


def load_recipe(path: Path) -> Recipe:
    try:
        return Recipe(**tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RecipeError(f"{path}: invalid recipe ({error})") from None
    except ValidationError as error:
        raise RecipeError(f"{path}: invalid recipe ({first_error(error)})") from None


def load_recipes(folder: Path = RECIPES_DIR) -> list[Recipe]:
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise RecipeError(f"{folder}: no recipes (*.toml)")
    return [load_recipe(path) for path in paths]
