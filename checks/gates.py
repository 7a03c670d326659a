"""Parity gates: how close to pyannote.audio a converted model must be, per weights dtype."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


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

    def tolerance(self, reference_error: float, floor_scale: float = 1.0) -> float:
        """max(exactness_factor * reference_error, exactness_floor * floor_scale): max |MLX - float64|'s gate."""
        return max(self.exactness_factor * reference_error, self.exactness_floor * floor_scale)


# float16 and bfloat16 compute in that dtype (instance-norm statistics excepted): they cannot be
# exact, so their gates bound the drift a user would notice instead.
LOW_PRECISION_GATES = Gates(
    exactness_factor=0.0, exactness_floor=0.05, min_correlation=0.999, max_decision_mismatch_rate=0.005
)
DEFAULT_GATES: dict[str, Gates] = {"float32": Gates(), "float16": LOW_PRECISION_GATES, "bfloat16": LOW_PRECISION_GATES}


def gates_for(dtype: str, recipe_gates: Mapping[str, Mapping[str, Any]] | None = None) -> Gates:
    """The recipe's gates for this dtype if it gives some, else the defaults (raises ValidationError on bad ones)."""
    if recipe_gates and dtype in recipe_gates:
        return Gates.model_validate(recipe_gates[dtype])
    return DEFAULT_GATES[dtype]
