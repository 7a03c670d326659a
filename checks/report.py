"""The check report (`checks.json`) and its readable table."""

from __future__ import annotations

import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from pydantic import BaseModel

from .embedding_metrics import EmbeddingCheck, RankingCheck
from .gates import Gates
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
            lines.append(
                f"{check.input:<38} {_row(check.output)} {f'{d.excluded}/{d.mismatches}':>12}  {_ok(check.passed)}"
            )
        for p in self.pipeline:
            truth = ""
            if p.detection_error_vs_truth is not None:
                ours, theirs = 100 * p.detection_error_vs_truth, 100 * p.reference_detection_error_vs_truth
                truth = f", vs {p.recording}.rttm: ours {ours:.2f}% pyannote {theirs:.2f}%"
            lines.append(
                f"pipeline {p.recording} ({p.duration:.0f} s): scores max |diff| {p.max_abs_score_diff:.2e} "
                f"(vs float64 {p.max_abs_score_diff_vs_float64:.2e}, pyannote's own {p.reference_score_error:.2e}), "
                f"detection error vs pyannote {100 * p.detection_error_vs_pyannote:.2f}%, "
                f"regions {p.regions}/{p.reference_regions}{truth}  {_ok(p.passed)}"
            )
        for check in self.full_model:
            o = check.output
            if o.reference_conditioning is not None:
                lines.append(
                    f"{check.input}: float32 rounding alone moves float64's output by "
                    f"c = {o.reference_conditioning:.2e} "
                    f"(e = {o.reference_float32_error:.2e}): gated at max(2 max(e, c), floor)"
                )
        drift = self.drift_vs_float32
        lines.append(
            f"drift vs float32 reference on real speech: max |dp| {drift.max_abs_probability:.2e}, "
            f"mean {drift.mean_abs_probability:.2e}, decisions equal {100 * drift.decision_agreement:.3f}%"
        )
        if self.first_failure:
            lines.append(f"first failing component: {self.first_failure}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The model card's parity section."""
        rows = [
            "| input | max \\|MLX − pyannote float64\\| | pyannote float32's own error | Pearson vs float32 "
            "| decisions differing |",
            "| --- | --- | --- | --- | --- |",
        ]
        for check in self.full_model:
            o = check.output
            rows.append(
                f"| {check.input} | {o.max_abs_vs_float64:.1e} | {o.reference_float32_error:.1e} | {o.pearson:.7f} "
                f"| {check.decisions.mismatches} |"
            )
        for p in self.pipeline:
            rows.append("")
            rows.append(
                f"Speech detection on `{p.recording}.wav` ({p.duration:.0f} s) against pyannote's "
                f"VoiceActivityDetection: scores max |diff| {p.max_abs_score_diff:.1e}, "
                f"detection error {100 * p.detection_error_vs_pyannote:.2f}%, "
                f"{p.regions} regions (pyannote {p.reference_regions})."
            )
        return (
            f"{_status(self)}: {len(self.components)} component and {len(self.full_model)} full-model checks against "
            f"{self.reference} {self.versions.get('pyannote.audio', '')}, mlx {self.versions.get('mlx', '')}, "
            f"on {self.platform}.\n\n" + "\n".join(rows)
        )


class EmbeddingCheckReport(ReportHeader):
    components: list[Metrics]
    full_model: list[EmbeddingCheck]
    ranking: RankingCheck

    def summary(self) -> str:
        status = "passed" if self.passed else f"FAILED (first failure: {self.first_failure})"
        worst = min(c.min_cosine for c in self.full_model)
        return (
            f"{status}: {len(self.components)} component and {len(self.full_model)} full-model checks and a ranking of "
            f"{self.ranking.pairs} pairs, {self.dtype}; lowest cosine with pyannote float32 {worst:.8f}; "
            f"similarity order {'identical' if self.ranking.same_order else 'DIFFERENT'}"
        )

    def table(self) -> str:
        lines = [f"{'check':<38} {'|mlx-f64|':>9} {'e(f32)':>9} {'gate':>9} {'pearson':>11}  ok"]
        for c in self.components:
            lines.append(f"{c.name:<38} {_row(c)}  {_ok(c.passed)}")
        lines.append(f"{'full model':<38} {'|mlx-f64|':>9} {'e(f32)':>9} {'gate':>9} {'min cos':>11}")
        for c in self.full_model:
            errors = f"{c.max_abs_vs_float64:>9.2e} {c.reference_float32_error:>9.2e} {c.tolerance:>9.2e}"
            lines.append(f"{c.input:<38} {errors} {c.min_cosine:>11.8f}  {_ok(c.passed)}")
        r = self.ranking
        lines.append(
            f"ranking of {r.pairs} pairwise similarities over {len(r.segments)} segments: "
            f"{'same order' if r.same_order else 'DIFFERENT order'}, "
            f"max |cos diff| {r.largest_similarity_difference:.2e}  {_ok(r.passed)}"
        )
        return "\n".join(lines)

    def markdown(self) -> str:
        """The model card's parity section."""
        rows = [
            "| input | max \\|MLX − pyannote float64\\| | pyannote float32's own error "
            "| lowest cosine with pyannote float32 |",
            "| --- | --- | --- | --- |",
        ]
        rows += [
            f"| {c.input} | {c.max_abs_vs_float64:.1e} | {c.reference_float32_error:.1e} | {c.min_cosine:.8f} |"
            for c in self.full_model
        ]
        ranking = "identical" if self.ranking.same_order else "DIFFERENT"
        return (
            f"{_status(self)}: {len(self.components)} component and {len(self.full_model)} full-model checks against "
            f"{self.reference} {self.versions.get('pyannote.audio', '')}, mlx {self.versions.get('mlx', '')}, "
            f"on {self.platform}; the order of {self.ranking.pairs} pairwise similarities between speakers is "
            f"{ranking}.\n\n" + "\n".join(rows)
        )


def _status(report: ReportHeader) -> str:
    return "All checks passed" if report.passed else f"Checks FAILED (first failure: {report.first_failure})"


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
