"""Who may import whom, and one table of model families (README: "Architecture")."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every package a module imports, at any depth of its code (relative imports excluded)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


FORBIDDEN = {
    "mlx_segmentation": {"converter", "checks", "torch", "torchaudio", "pyannote"},
    "converter": {"checks", "torch", "torchaudio", "pyannote"},
    "checks": {"converter"},
}
COMPOSERS = {ROOT / "converter" / "cli.py"}  # the command line composes converter and checks


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_what_they_may(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    offences = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in modules
        if path not in COMPOSERS
    }
    assert {k: v for k, v in offences.items() if v} == {}


def test_the_cli_imports_checks_only_when_checks_run():
    """converter/cli.py may compose the two, lazily: `python -m converter build --no-checks` needs no torch."""
    tree = ast.parse((ROOT / "converter" / "cli.py").read_text())
    top_level = {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert "checks" not in top_level


def test_one_row_per_family_in_every_layer():
    from checks.families import RUNNERS
    from converter.families import FAMILIES as CONVERTER
    from mlx_segmentation.families import CONFIG, FAMILIES

    assert set(FAMILIES) == set(CONVERTER) == set(RUNNERS) == {"pyannet", "wespeaker_resnet"}
    for model_type, family in FAMILIES.items():
        assert family.config.model_fields["model_type"].default == model_type
    union = CONFIG.json_schema()["discriminator"]["mapping"]
    assert set(union) == set(FAMILIES)


RUNTIME_ONLY = """
import os, sys
from converter.cli import main as convert
from mlx_segmentation.__main__ import main as speech

checkpoint, out, audio = sys.argv[1:]
assert convert(["build", "--no-checks", "--checkpoint", checkpoint, "--out", out]) == 0
assert speech([audio, "--model", out, "--rttm", out + ".rttm"]) == 0
print(sorted({name.split(".")[0] for name in sys.modules} & {"torch", "torchaudio", "pyannote", "lightning", "checks"}))
sys.stdout.flush()
os._exit(0)
"""


def test_runtime_and_unchecked_builds_load_no_torch(tmp_path):
    """What the runtime install runs (`build --no-checks`, the speech CLI) loads no torch or pyannote at run time."""
    from forge import small_pyannet

    from checks.audio import sample_wav

    checkpoint = small_pyannet().write(tmp_path / "small.ckpt")
    run = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, str(checkpoint), str(tmp_path / "model"), str(sample_wav())],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "[]"
