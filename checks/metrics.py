"""Compare outputs with the float32 and float64 references, and apply the gates."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

from mlx_segmentation.config import Specifications

from .gates import Gates


class Metrics(BaseModel):
    """One output against the references; `e` is the float32 reference's own error."""

    name: str
    shape: list[int]
    max_abs_vs_float64: float
    reference_float32_error: float  # e = max |reference float32 - reference float64|
    # c = max |perturbed float64 - float64| (reference.run_perturbed): how far float32 rounding alone
    # moves float64's output; measured only where 2e is not enough, else None
    reference_conditioning: float | None = None
    tolerance: float
    max_abs_vs_float32: float
    mean_abs_vs_float32: float
    pearson: float  # with the float32 reference
    cosine: float  # with the float32 reference
    pearson_vs_float64: float
    reference_pearson: float  # the float32 reference with float64
    passed: bool


class DecisionMetrics(BaseModel):
    """Frame decisions against float64 (outside the noise band) and float32 (all frames)."""

    compared: int
    excluded: int  # float64 lies within `tolerance` of the decision boundary
    mismatches: int  # outside the band, against float64
    agreement_vs_float32: float  # fraction of all decisions equal to the float32 reference's
    speaker_mismatches: int | None = None  # powerset: decoded per-speaker activity against float64
    passed: bool


class FullModelCheck(BaseModel):
    input: str
    description: str
    output: Metrics  # on probabilities for max |diff| vs float64, raw outputs otherwise
    decisions: DecisionMetrics
    passed: bool


def _correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pearson and cosine; for constant or zero signals, 1.0 when the two are close, else 0.0."""
    close = float(np.allclose(a, b, rtol=0, atol=1e-6))
    pearson = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else close
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norms) if norms > 0 else close
    return pearson, cosine


def compare(
    name: str,
    ours: np.ndarray,
    ref32: np.ndarray,
    ref64: np.ndarray,
    gates: Gates,
    *,
    probabilities=lambda x: x,
    relative_floor: bool = False,
    perturbed: Sequence[np.ndarray] = (),
) -> Metrics:
    """Exactness: max |ours - float64| <= max(factor * max(e, c), floor).

    c is the spread of the `perturbed` float64 runs around float64 (0 without them): on an
    ill-conditioned input (a 10 s LSTM on digital silence) float32 rounding anywhere moves the exact
    output by more than PyTorch's own float32 run happens to, and no float32 computation can be held
    closer to float64 than float64 itself stays under such rounding.

    Correlation: Pearson with the float32 reference >= min_correlation, or, where the reference's
    own float32 run correlates worse than that with float64 (ill-conditioned inputs such as
    silence), 1 - Pearson(ours, float64) <= factor * (1 - Pearson(float32, float64)), the latter
    Pearson being the worst of the float32 and perturbed runs: the same "as exact as PyTorch
    itself" rule as exactness.

    With `relative_floor` (intermediate activations, whose scale is not 1), the floor is multiplied by
    max(1, max |float64|): 1e-5 of an activation of 50 is a fraction of a float32 ulp otherwise.
    """
    if not ours.shape == ref32.shape == ref64.shape:
        raise ValueError(f"{name}: shapes differ: ours {ours.shape}, float32 {ref32.shape}, float64 {ref64.shape}")
    ours, ref32, ref64 = (np.asarray(a, dtype=np.float64) for a in (ours, ref32, ref64))
    p_ours, p32, p64 = probabilities(ours), probabilities(ref32), probabilities(ref64)
    e = float(np.abs(p32 - p64).max())
    perturbed = [np.asarray(p, dtype=np.float64) for p in perturbed]
    c = max((float(np.abs(probabilities(p) - p64).max()) for p in perturbed), default=0.0)
    tolerance = gates.tolerance(max(e, c), max(1.0, float(np.abs(p64).max())) if relative_floor else 1.0)
    error = float(np.abs(p_ours - p64).max())
    pearson, cosine = _correlation(ours.ravel(), ref32.ravel())
    pearson_64, _ = _correlation(ours.ravel(), ref64.ravel())
    reference_pearson = min(_correlation(r.ravel(), ref64.ravel())[0] for r in (ref32, *perturbed))
    correlated = pearson >= gates.min_correlation or (1 - pearson_64) <= gates.exactness_factor * (
        1 - reference_pearson
    )
    return Metrics(
        name=name,
        shape=list(ours.shape),
        max_abs_vs_float64=error,
        reference_float32_error=e,
        reference_conditioning=c if perturbed else None,
        tolerance=tolerance,
        max_abs_vs_float32=float(np.abs(ours - ref32).max()),
        mean_abs_vs_float32=float(np.abs(ours - ref32).mean()),
        pearson=pearson,
        cosine=cosine,
        pearson_vs_float64=pearson_64,
        reference_pearson=reference_pearson,
        passed=error <= tolerance and correlated,
    )


def probabilities(spec: Specifications):
    return np.exp if spec.activation == "log_softmax" else (lambda x: x)


def decide(probs: np.ndarray, spec: Specifications) -> tuple[np.ndarray, np.ndarray]:
    """Frame decisions and their distance to the boundary.

    Multilabel: each speaker active above 0.5, distance |p - 0.5|. Powerset: the argmax class,
    distance = its margin over the runner-up.
    """
    if spec.powerset:
        ordered = np.sort(probs, axis=-1)
        return probs.argmax(axis=-1), ordered[..., -1] - ordered[..., -2]
    return probs > 0.5, np.abs(probs - 0.5)


def compare_decisions(
    ours: np.ndarray, ref32: np.ndarray, ref64: np.ndarray, spec: Specifications, tolerance: float, gates: Gates
) -> DecisionMetrics:
    to_probs = probabilities(spec)
    d_ours, _ = decide(to_probs(ours), spec)
    d32, _ = decide(to_probs(ref32), spec)
    d64, margin = decide(to_probs(ref64), spec)
    clear = margin > tolerance
    mismatches = int(((d_ours != d64) & clear).sum())
    speaker_mismatches = None
    if spec.powerset:
        mapping = spec.powerset_mapping()
        differ = (mapping[d_ours] != mapping[d64]).any(axis=-1)
        speaker_mismatches = int((differ & clear).sum())
    return DecisionMetrics(
        compared=int(clear.sum()),
        excluded=int((~clear).sum()),
        mismatches=mismatches,
        agreement_vs_float32=float((d_ours == d32).mean()),
        speaker_mismatches=speaker_mismatches,
        passed=max(mismatches, speaker_mismatches or 0) <= gates.max_decision_mismatch_rate * clear.sum(),
    )


def full_model_check(
    name: str,
    description: str,
    ours: np.ndarray,
    ref32: np.ndarray,
    ref64: np.ndarray,
    spec: Specifications,
    gates: Gates,
    perturbed: Callable[[], Sequence[np.ndarray]] | None = None,
) -> FullModelCheck:
    """The gates with e; where they fail and `perturbed` is given, again with c (see `compare`).

    c only ever widens the tolerance, so measuring it only where 2e is not enough (its float64 runs
    are slow) gives the same outcome as measuring it everywhere.
    """
    output = compare(name, ours, ref32, ref64, gates, probabilities=probabilities(spec))
    decisions = compare_decisions(ours, ref32, ref64, spec, output.tolerance, gates)
    if perturbed is not None and gates.exactness_factor > 0 and not (output.passed and decisions.passed):
        output = compare(name, ours, ref32, ref64, gates, probabilities=probabilities(spec), perturbed=perturbed())
        decisions = compare_decisions(ours, ref32, ref64, spec, output.tolerance, gates)
    return FullModelCheck(
        input=name,
        description=description,
        output=output,
        decisions=decisions,
        passed=output.passed and decisions.passed,
    )
