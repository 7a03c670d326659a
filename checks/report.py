"""The check report (`checks.json`) and its readable table."""

from __future__ import annotations

import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from pydantic import BaseModel

from converter.recipe import Gates

from .metrics import FullModelCheck, Metrics
from .pipeline import PipelineCheck


class Drift(BaseModel):
    """How far this model's probabilities and decisions are from the float32 reference's, on real speech."""

    max_abs_probability: float
    mean_abs_probability: float
    decision_agreement: float  # fraction of all frame decisions equal to float32's


class ReportHeader(BaseModel):
    """What every check report starts with: the outcome, and the exact weights and setting it is about."""

    passed: bool
    first_failure: str | None  # the first failing component in forward order, if any check failed
    created: datetime
    model_folder: str
    dtype: str
    source_sha256: str
    weights_sha256: str
    reference: str  # which PyTorch model the checks compared against
    gates: Gates
    versions: dict[str, str]  # python, mlx, numpy, torch, pyannote.audio
    platform: str


class CheckReport(ReportHeader):
    components: list[Metrics]
    full_model: list[FullModelCheck]
    pipeline: list[PipelineCheck]
    drift_vs_float32: Drift

    def summary(self) -> str:
        worst = max(self.full_model, key=lambda c: c.output.max_abs_vs_float64 / c.output.tolerance)
        status = "passed" if self.passed else f"FAILED (first failure: {self.first_failure})"
        return (
            f"{status}: {len(self.components)} component, {len(self.full_model)} full-model and "
            f"{len(self.pipeline)} pipeline checks, {self.dtype}; "
            f"worst max|MLX-float64| {worst.output.max_abs_vs_float64:.2e} on {worst.input} "
            f"(reference float32 error there {worst.output.reference_float32_error:.2e}); "
            f"decisions equal to float32's: {100 * self.drift_vs_float32.decision_agreement:.3f}%"
        )

    def table(self) -> str:
        head = f"{'check':<38} {'|mlx-f64|':>9} {'e(f32)':>9} {'gate':>9} {'pearson':>11}"
        lines = [f"{head} {'':>12}  ok"]
        for c in self.components:
            lines.append(f"{c.name:<38} {_row(c)} {'':>12}  {_ok(c.passed)}")
        lines.append(f"{'full model':<38} {'':>9} {'':>9} {'':>9} {'':>11} {'excl/diff':>12}")
        for check in self.full_model:
            d = check.decisions
            lines.append(f"{check.input:<38} {_row(check.output)} {f'{d.excluded}/{d.mismatches}':>12}  {_ok(check.passed)}")
        for p in self.pipeline:
            truth = "" if p.detection_error_vs_truth is None else (
                f", vs {p.recording}.rttm: ours {100 * p.detection_error_vs_truth:.2f}% pyannote {100 * p.reference_detection_error_vs_truth:.2f}%"
            )
            lines.append(
                f"pipeline {p.recording} ({p.duration:.0f} s): scores max |diff| {p.max_abs_score_diff:.2e} "
                f"(vs float64 {p.max_abs_score_diff_vs_float64:.2e}, pyannote's own {p.reference_score_error:.2e}), detection error vs "
                f"pyannote {100 * p.detection_error_vs_pyannote:.2f}%, regions {p.regions}/{p.reference_regions}{truth}  {_ok(p.passed)}"
            )
        for check in self.full_model:
            o = check.output
            if o.reference_conditioning is not None:
                lines.append(
                    f"{check.input}: float32 rounding alone moves float64's output by c = {o.reference_conditioning:.2e} "
                    f"(e = {o.reference_float32_error:.2e}): gated at max(2 max(e, c), floor)"
                )
        drift = self.drift_vs_float32
        lines.append(
            f"drift vs float32 reference on real speech: max |dp| {drift.max_abs_probability:.2e}, mean {drift.mean_abs_probability:.2e}, "
            f"decisions equal {100 * drift.decision_agreement:.3f}%"
        )
        if self.first_failure:
            lines.append(f"first failing component: {self.first_failure}")
        return "\n".join(lines)


def _row(m: Metrics) -> str:
    return f"{m.max_abs_vs_float64:>9.2e} {m.reference_float32_error:>9.2e} {m.tolerance:>9.2e} {m.pearson:>11.8f}"


def _ok(passed: bool) -> str:
    return "yes" if passed else "NO"


def environment_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("mlx", "numpy", "torch", "pyannote.audio"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
