"""The runtime install, `pip install .` into a fresh venv: it loads and runs converted models without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checks.audio import sample_wav

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".*_cache")


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A venv holding only `pip install .` (dependencies from PyPI), blind to this environment's site-packages."""
    folder = tmp_path_factory.mktemp("install")
    source = folder / "source"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    subprocess.run([sys.executable, "-m", "venv", folder / "venv"], check=True)
    python = folder / "venv" / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "-q", source], env=clean_env(), capture_output=True)
    assert install.returncode == 0, install.stderr.decode()[-3000:]
    return python


def clean_env() -> dict[str, str]:
    """This environment without what would let a child see its packages (PYTHONPATH, the user site)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PYTHONNOUSERSITE": "1"}


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], capture_output=True, text=True, cwd=cwd, env=clean_env(), timeout=600)


@pytest.mark.slow
def test_runtime_install_runs_models_without_torch(runtime_venv, converted, tmp_path):
    for module in ("torch", "pyannote.audio"):
        missing = run(runtime_venv, "-c", f"import {module}", cwd=tmp_path)
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, module
    installed = run(runtime_venv, "-c", "import mlx_segmentation; print(mlx_segmentation.__file__)", cwd=tmp_path)
    assert installed.returncode == 0 and "site-packages" in installed.stdout, installed.stderr

    folder = str(converted["segmentation-3.0"])
    code = f"import mlx_segmentation; print(type(mlx_segmentation.load({folder!r})).__name__)"
    loaded = run(runtime_venv, "-c", code, cwd=tmp_path)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "PyanNet", loaded.stderr

    speech = run(runtime_venv, "-m", "mlx_segmentation", str(sample_wav()), "--model", folder, cwd=tmp_path)
    assert speech.returncode == 0, speech.stderr
    lines = speech.stdout.splitlines()
    assert lines and all(line.startswith("SPEAKER sample 1 ") and " SPEECH " in line for line in lines)


@pytest.mark.slow
def test_runtime_install_builds_without_checks_only(runtime_venv, tmp_path):
    """`build --no-checks` works without torch; a checked build says which extra to install."""
    from forge import small_pyannet

    checkpoint = str(small_pyannet().write(tmp_path / "small.ckpt"))
    build = ["-m", "converter", "build", "--checkpoint", checkpoint]
    unchecked = run(runtime_venv, *build, "--no-checks", "--out", str(tmp_path / "model"), cwd=tmp_path)
    assert unchecked.returncode == 0, unchecked.stderr
    checked = run(runtime_venv, *build, "--out", str(tmp_path / "checked"), cwd=tmp_path)
    assert checked.returncode == 2 and "pip install '.[convert]'" in checked.stderr, checked.stderr
