"""Who may import whom, and one table of model families (README: "Architecture")."""

from __future__ import annotations

import ast
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
