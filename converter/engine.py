"""The generic rule engine: every source tensor used once, every MLX parameter produced once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import MappingError
from .rules import Rule


@dataclass(frozen=True)
class Mapped:
    """One produced MLX parameter and where it came from."""

    array: np.ndarray
    source_keys: list[str]
    rule: str
    transform: str


def apply_rules(
    tensors: Mapping[str, np.ndarray], rules: Sequence[Rule], expected_shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, Mapped]:
    """Map source tensors to MLX parameters, or fail listing everything left over or misfit."""
    non_finite = [key for key, value in tensors.items() if value.dtype.kind == "f" and not np.isfinite(value).all()]
    if non_finite:
        raise MappingError(f"source tensors hold NaN or Inf values: {_listing(non_finite)}")

    produced: dict[str, Mapped] = {}
    used_by: dict[str, str] = {}
    problems: list[str] = []
    keys = sorted(tensors)
    for rule in rules:
        for binding in rule.bindings(keys):
            target = rule.target_key(binding)
            sources = rule.source_keys(binding)
            missing = [key for key, optional in sources if not optional and key not in tensors]
            if missing:
                problems.append(f"{target} needs missing {_listing(missing)}")
                continue
            present = [key for key, _ in sources if key in tensors]
            twice = [key for key in present if key in used_by]
            if twice:
                problems.append(f"{_listing(twice)} used by two rules ({used_by[twice[0]]}, {rule.name})")
                continue
            if target in produced:
                problems.append(f"{target} produced twice")
                continue
            try:
                array = rule.transform(*(tensors.get(key) for key, _ in sources), **rule.params)
            except ValueError as error:
                problems.append(f"{target}: {error}")
                continue
            array = np.asarray(array)
            if array.dtype.kind != "f":
                problems.append(f"{target} (from {', '.join(present)}) is {array.dtype}, not floating point")
                continue
            used_by.update({key: rule.name for key in present})
            produced[target] = Mapped(np.ascontiguousarray(array), present, rule.name, rule.transform.__name__)

    unused = sorted(set(tensors) - set(used_by))
    if unused:
        problems.append(f"unused source tensors {_listing(unused)}")
    not_produced = sorted(set(expected_shapes) - set(produced))
    if not_produced:
        problems.append(f"MLX parameters not produced {_listing(not_produced)}")
    unexpected = sorted(set(produced) - set(expected_shapes))
    if unexpected:
        problems.append(f"produced tensors the MLX model does not have {_listing(unexpected)}")
    for target in sorted(set(produced) & set(expected_shapes)):
        shape, expected = tuple(produced[target].array.shape), tuple(expected_shapes[target])
        if shape != expected:
            sources = ", ".join(produced[target].source_keys)
            problems.append(f"{target} (from {sources}) has shape {shape}, the model expects {expected}")
    if problems:
        raise MappingError("cannot map checkpoint: " + "; ".join(problems))
    return produced


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}]"
