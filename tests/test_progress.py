"""Progress on stderr: the window count read from the file's header, one bar per diarization stage."""

from __future__ import annotations

import numpy as np
import soundfile

from checks.audio import sample_wav
from mlx_segmentation import progress
from mlx_segmentation.progress import StageBars, expected_file_windows
from mlx_segmentation.windows import expected_windows, window_batches


class RecordingBar:
    made: list[RecordingBar] = []

    def __init__(self, total, desc, **options):
        self.total, self.desc, self.n, self.closed = total, desc, 0, False
        RecordingBar.made.append(self)

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True


def test_the_total_comes_from_the_header(tmp_path):
    """sample.wav (30 s) in 10 s windows every 1 s: 21, as many as the pipeline checks' segmentation counts."""
    assert soundfile.info(sample_wav()).duration == 30.0
    assert expected_file_windows(sample_wav(), 10.0, 1.0) == 21
    (tmp_path / "not-audio.wav").write_bytes(b"RIFF....nonsense")
    assert expected_file_windows(tmp_path / "not-audio.wav", 10.0, 1.0) is None


def test_one_bar_per_stage_each_over_every_window(monkeypatch):
    monkeypatch.setattr(progress, "tqdm", RecordingBar)
    RecordingBar.made = []
    bars = StageBars(total=100, step=1.0)
    for stage, windows in [("segmentation", 60), ("segmentation", 40), ("embeddings", 30), ("embeddings", 70)]:
        bars(stage, windows)
    bars.close()
    assert [(b.desc, b.total, b.n, b.closed) for b in RecordingBar.made] == [
        ("segmentation", 100, 100, True),
        ("embeddings", 100, 100, True),
    ]


def test_no_bar_for_short_or_unknown_recordings(monkeypatch):
    monkeypatch.setattr(progress, "tqdm", RecordingBar)
    RecordingBar.made = []
    for bars in (StageBars(total=20, step=1.0), StageBars(total=None, step=1.0)):
        bars("segmentation", 20)
        bars.close()
    assert RecordingBar.made == []


def test_expected_windows_counts_what_the_engine_cuts():
    """Shorter than a window, exactly one, ending on a full window, and ending between two."""
    rate, window, step = 16000, 10.0, 1.0
    for seconds in (3.0, 10.0, 10.5, 30.0, 30.25, 31.0, 41.7):
        audio = np.zeros(round(seconds * rate), dtype=np.float32)
        blocks = iter(np.array_split(audio, 3))
        cut = sum(b.count for b in window_batches(blocks, round(window * rate), round(step * rate), batch_size=4))
        assert expected_windows(seconds, window, step, rate) == cut, seconds
