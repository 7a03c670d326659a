"""Peak GPU memory and time of a recording's embeddings by how the ResNet's parts are evaluated across batches.

    PYTHONPATH=.:tests python benchmarks/embedding_parts.py SEGMENTATION_CHECKPOINT WESPEAKER_CHECKPOINT \
        [--minutes 60] [--ways "per call" shared "shared 0" "shared 2"]

Builds community-1's layout from the two checkpoints (no checks; `community_1.py`), diarizes 30 s to
warm up, segments `checks.audio.long_recording` once, then for each way runs `pipeline.embed_windows` over it
from an emptied cache and prints its time and MLX's peak memory: "per call", each forward with a `Parts()` of
its own (the pipeline before 2026-11-27); "shared", one `Parts()` for every forward (the pipeline's way);
"shared 0" and "shared 2", one `Parts` with 0 or 2 parts in flight. Each way's embeddings are compared with
the first way's, bit for bit (NaN included).
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import tempfile
import time
from pathlib import Path

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np

from checks.audio import long_recording
from community_1 import community_1
from mlx_segmentation.audio import open_audio
from mlx_segmentation.parts import Parts
from mlx_segmentation.pipeline import embed_windows, segment_windows
from mlx_segmentation.wespeaker import WeSpeakerResNet34

SAMPLE_RATE = 16000
AHEAD = {"per call": None, "shared": 1, "shared 0": 0, "shared 2": 2}  # way -> parts in flight of the shared Parts


class WithParts:
    """The embedding model with the parts `embed_windows` hands it replaced: one shared `Parts`, or (None) none,
    so that each call makes its own."""

    def __init__(self, model: WeSpeakerResNet34, ahead: int | None) -> None:
        self.model = model
        self.parts = None if ahead is None else Parts(ahead)

    def __call__(self, waveforms: mx.array, weights: mx.array, parts: Parts | None = None) -> mx.array:
        return self.model(waveforms, weights, parts=self.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("segmentation", type=Path)
    parser.add_argument("embedding", type=Path)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--ways", nargs="+", choices=list(AHEAD), default=["per call", "shared", "shared 0"])
    args = parser.parse_args()

    recording = long_recording(args.minutes * 60)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = community_1(Path(tmp), args.segmentation, args.embedding)
    pipeline(recording[: 30 * SAMPLE_RATE], sample_rate=SAMPLE_RATE)

    def audio():
        return open_audio(recording, SAMPLE_RATE, source_rate=SAMPLE_RATE)

    segmentations = segment_windows(pipeline.segmentation, audio(), pipeline.config)
    masks = pipeline.masks(segmentations.binarized, segmentations.chunks)
    print(f"{mx.default_device()}, MLX {mx.__version__}: {args.minutes:g} min, {len(masks)} windows")
    first = None
    for way in args.ways:
        model = WithParts(pipeline.embedding, AHEAD[way])
        mx.synchronize()
        mx.clear_cache()
        mx.reset_peak_memory()
        start = time.perf_counter()
        embeddings = embed_windows(model, audio(), pipeline.segmentation, masks, pipeline.config)
        mx.synchronize()
        seconds = time.perf_counter() - start
        same = "" if first is None else f", the same as {args.ways[0]!r}'s: {np.array_equal(embeddings, first, True)}"
        first = embeddings if first is None else first
        print(f"{way:<10} {seconds:.3f} s, peak {mx.get_peak_memory() / 2**20:,.0f} MiB{same}", flush=True)


if __name__ == "__main__":
    main()
