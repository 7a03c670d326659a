"""Mapping rules, as data: which source keys make which MLX parameter, by which transform.

A rule reads like a line of a table. Source patterns may hold `{name}` placeholders that match a
number (`lstm.weight_ih_l{k}`); the first pattern decides where the rule applies, the others are
filled in with the same numbers. A pattern ending in `?` may be absent (the reverse direction of a
unidirectional LSTM). Rules know tensors and names only: never files, torch or MLX modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Transform = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Rule:
    name: str
    sources: tuple[str, ...]
    target: str
    transform: Transform
    params: Mapping[str, Any] = field(default_factory=dict)

    def bindings(self, keys: list[str]) -> Iterator[dict[str, str]]:
        """Placeholder values for every source key that the first pattern matches."""
        anchor = _regex(self.sources[0].rstrip("?"))
        for key in keys:
            match = anchor.fullmatch(key)
            if match:
                yield match.groupdict()

    def source_keys(self, binding: dict[str, str]) -> list[tuple[str, bool]]:
        """(key, optional) for each source pattern, placeholders filled in."""
        return [(pattern.rstrip("?").format(**binding), pattern.endswith("?")) for pattern in self.sources]

    def target_key(self, binding: dict[str, str]) -> str:
        return self.target.format(**binding)


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(p) if i % 2 == 0 else rf"(?P<{p}>\d+)" for i, p in enumerate(parts))
    return re.compile(regex)
