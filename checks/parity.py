"""Compare model outputs with the float32 and float64 references, and apply the gates."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from converter.recipe import Gates
from mlx_segmentation.config import Specifications


class OutputComparison(BaseModel):
    """Metrics of one input through the full model; `e` is pyannote float32's own error."""

    input: str
    frames: int
    max_abs_vs_float64: float  # on probabilities
    reference_float32_error: float  # e = max |pyannote float32 - pyannote float64|
    tolerance: float  # max(factor * e, floor)
    max_abs_vs_float32: float  # on raw outputs
    mean_abs_vs_float32: float
    pearson: float
    cosine: float
    decisions: int  # decisions compared with float64
    decisions_excluded: int  # within `tolerance` of the decision boundary
    decision_mismatches: int
    passed: bool


def probabilities(outputs: np.ndarray, spec: Specifications) -> np.ndarray:
    return np.exp(outputs) if spec.activation == "log_softmax" else outputs


def decisions(probs: np.ndarray, spec: Specifications) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame decisions and each decision's distance to its boundary.

    Multilabel: each speaker active above 0.5. Powerset: the argmax class, its margin over the
    runner-up class.
    """
    if spec.powerset:
        ordered = np.sort(probs, axis=-1)
        return probs.argmax(axis=-1), (ordered[..., -1] - ordered[..., -2])
    return probs > 0.5, np.abs(probs - 0.5)


def compare(
    name: str, ours: np.ndarray, ref32: np.ndarray, ref64: np.ndarray, spec: Specifications, gates: Gates
) -> OutputComparison:
    if ours.shape != ref32.shape or ref32.shape != ref64.shape:
        raise ValueError(f"{name}: output shapes differ: ours {ours.shape}, float32 {ref32.shape}, float64 {ref64.shape}")
    ours, ref32, ref64 = (np.asarray(a, dtype=np.float64) for a in (ours, ref32, ref64))
    p_ours, p32, p64 = (probabilities(a, spec) for a in (ours, ref32, ref64))
    e = float(np.abs(p32 - p64).max())
    tolerance = max(gates.exactness_factor * e, gates.exactness_floor)
    max_abs_64 = float(np.abs(p_ours - p64).max())

    ours_flat, ref_flat = ours.ravel(), ref32.ravel()
    pearson = float(np.corrcoef(ours_flat, ref_flat)[0, 1]) if ref_flat.std() > 0 else float(np.allclose(ours_flat, ref_flat))
    norms = np.linalg.norm(ours_flat) * np.linalg.norm(ref_flat)
    cosine = float(ours_flat @ ref_flat / norms) if norms > 0 else float(np.allclose(ours_flat, ref_flat))

    d_ours, _ = decisions(p_ours, spec)
    d64, margin = decisions(p64, spec)
    clear = margin > tolerance
    mismatches = int(((d_ours != d64) & clear).sum())
    passed = max_abs_64 <= tolerance and pearson >= gates.min_correlation and mismatches == 0
    return OutputComparison(
        input=name,
        frames=int(ours.shape[-2]),
        max_abs_vs_float64=max_abs_64,
        reference_float32_error=e,
        tolerance=tolerance,
        max_abs_vs_float32=float(np.abs(ours - ref32).max()),
        mean_abs_vs_float32=float(np.abs(ours - ref32).mean()),
        pearson=pearson,
        cosine=cosine,
        decisions=int(clear.size),
        decisions_excluded=int((~clear).sum()),
        decision_mismatches=mismatches,
        passed=passed,
    )
