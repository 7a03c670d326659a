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
    """Parity gates for one dtype; the defaults are float32's, from the conversion issue.

    max |MLX - float64| <= max(exactness_factor * e, exactness_floor), e being the float32
    reference's own error on the same input; Pearson with the float32 reference >= min_correlation;
    at most a fraction max_decision_mismatch_rate of the decisions outside that noise band differing
    from float64's.
    """

    model_config = ConfigDict(extra="forbid")
    exactness_factor: float = 2.0
    exactness_floor: float = 1e-5
    min_correlation: float = 0.99999
    max_decision_mismatch_rate: float = 0.0


# float16 and bfloat16 compute in that dtype (instance-norm statistics excepted): they cannot be
# exact, so their gates bound the drift a user would notice instead.
LOW_PRECISION_GATES = Gates(exactness_factor=0.0, exactness_floor=0.05, min_correlation=0.999, max_decision_mismatch_rate=0.005)


DEFAULT_GATES: dict[str, Gates] = {"float32": Gates(), "float16": LOW_PRECISION_GATES, "bfloat16": LOW_PRECISION_GATES}


def default_gates(dtype: str) -> Gates:
    """The gates used when no recipe gives any for this dtype."""
    return DEFAULT_GATES[dtype]


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    base_model: str  # the original model's Hub repo
    license: str
    target_repo: str
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    source: SourceSpec
    gates: dict[Literal["float32", "float16", "bfloat16"], Gates] = {"float32": Gates()}


def load_recipe(path: Path) -> Recipe:
    try:
        return Recipe(**tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise RecipeError(f"{path}: invalid recipe ({error})") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RecipeError(f"{path}: invalid recipe ({where}: {first['msg']})") from None


def load_recipes(folder: Path = RECIPES_DIR) -> list[Recipe]:
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise RecipeError(f"{folder}: no recipes (*.toml)")
    return [load_recipe(path) for path in paths]
