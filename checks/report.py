"""The check report (`checks.json`) and its readable table."""

from __future__ import annotations

import platform
from datetime import datetime

from pydantic import BaseModel

from .parity import OutputComparison


class CheckReport(BaseModel):
    passed: bool
    created: datetime
    model_folder: str
    source_sha256: str
    weights_sha256: str
    versions: dict[str, str]  # mlx, torch, pyannote.audio, numpy, python
    platform: str
    full_model: list[OutputComparison]

    def summary(self) -> str:
        failed = [c.input for c in self.full_model if not c.passed]
        worst = max(self.full_model, key=lambda c: c.max_abs_vs_float64 / c.tolerance)
        status = "passed" if self.passed else f"FAILED on {', '.join(failed)}"
        return (
            f"{status}: {len(self.full_model)} full-model checks; worst max|MLX-float64| "
            f"{worst.max_abs_vs_float64:.2e} on {worst.input} (pyannote float32 error there {worst.reference_float32_error:.2e})"
        )

    def table(self) -> str:
        header = f"{'input':<24} {'frames':>6} {'|mlx-f64|':>10} {'e(f32)':>10} {'gate':>10} {'pearson':>12} {'excl':>5} {'diff':>5}  ok"
        rows = [
            f"{c.input:<24} {c.frames:>6} {c.max_abs_vs_float64:>10.2e} {c.reference_float32_error:>10.2e} "
            f"{c.tolerance:>10.2e} {c.pearson:>12.9f} {c.decisions_excluded:>5} {c.decision_mismatches:>5}  "
            f"{'yes' if c.passed else 'NO'}"
            for c in self.full_model
        ]
        return "\n".join([header, *rows])


def environment_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("mlx", "numpy", "torch", "pyannote.audio"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
