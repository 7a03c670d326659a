"""Time bookkeeping as pyannote.core does it: sliding windows of frames or chunks, and regions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENT_PRECISION = 1e-6  # pyannote.core: a segment shorter than this is empty


@dataclass(frozen=True)
class SlidingWindow:
    """Window i spans [start + i * step, start + i * step + duration] seconds (pyannote.core.SlidingWindow)."""

    start: float
    duration: float
    step: float

    def window_start(self, i: int | np.ndarray) -> float | np.ndarray:
        return self.start + i * self.step

    def middle(self, i: int | np.ndarray) -> float | np.ndarray:
        start = self.window_start(i)
        return 0.5 * (start + (start + self.duration))

    def middles(self, count: int) -> np.ndarray:
        """`middle(i)` for i in range(count), as one float64 array (the same operations, element by element)."""
        return self.middle(np.arange(count))

    def closest_frame(self, t: float) -> int:
        return int(np.rint((t - self.start - 0.5 * self.duration) / self.step))


@dataclass(frozen=True)
class Region:
    """A time span in seconds, such as one speech region."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def __repr__(self) -> str:
        """Rounded to the microsecond (pyannote.core's segment precision); the fields keep every digit."""
        return f"Region(start={round(self.start, 6)!r}, end={round(self.end, 6)!r})"
