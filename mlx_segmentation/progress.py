"""Progress bars on stderr for the command lines (tqdm), their totals read from the recording's header."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from .windows import expected_windows

PROGRESS_AFTER_SECONDS = 60.0  # show progress for recordings longer than this


def expected_file_windows(audio: Path, window: float, step: float) -> int | None:
    """How many windows of `window` seconds every `step` the recording takes (exactly, at the model's rate;
    to a sample's rounding after resampling); None if its header does not say."""
    import soundfile

    try:
        duration = soundfile.info(str(audio)).duration
    except Exception:
        return None
    return expected_windows(duration, window, step)


class StageBars:
    """`progress(stage, windows)` for a pipeline: one bar per stage, each over the recording's `total` windows."""

    def __init__(self, total: int | None, step: float):
        self.total = total
        self.enabled = total is not None and total * step >= PROGRESS_AFTER_SECONDS
        self.bar: tqdm | None = None
        self.stage: str | None = None

    def __call__(self, stage: str, windows: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.bar = tqdm(total=self.total, desc=stage, unit="window", file=sys.stderr, disable=None, leave=False)
            self.stage = stage
        self.bar.update(windows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
