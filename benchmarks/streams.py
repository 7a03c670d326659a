"""Can the segmentation model's forwards run beside the ResNet's on a GPU? Two MLX streams against one.

    python benchmarks/streams.py SEGMENTATION_CHECKPOINT WESPEAKER_CHECKPOINT [--batches 20] [--batch 32]

Converts both checkpoints (no checks), then times `--batches` forwards of `--batch` windows of the segmentation
model's duration (random audio; the ResNet with three speakers' frame weights, as the diarization runs it): the
segmentation alone, the ResNet alone, both queued in turn on one stream, and both with the segmentation on a
stream of its own (each model evaluated in its parts as the runtime does, `parts.Parts`). If the two-stream row
is near the ResNet's alone, the diarization's segmentation could hide under its embeddings.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import numpy as np

from converter.build import build
from mlx_segmentation.inference import parts_ahead
from mlx_segmentation.parts import Parts
from timing import timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("segmentation", type=Path)
    parser.add_argument("embedding", type=Path)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        segmentation = mlx_segmentation.load(build(args.segmentation, Path(tmp) / "s", log=lambda m: None).out)
        embedding = mlx_segmentation.load(build(args.embedding, Path(tmp) / "e", log=lambda m: None).out)
    rate, duration = segmentation.config.sample_rate, segmentation.specifications.duration
    rng = np.random.default_rng(0)
    audio = mx.array(rng.normal(0, 0.1, (args.batch, round(duration * rate))).astype(np.float32))
    frames = segmentation(audio[:1]).shape[1]
    weights = mx.array((rng.random((args.batch, 3, frames)) > 0.5).astype(np.float32))
    seg_parts, emb_parts = Parts(parts_ahead(args.batch)), Parts()
    side = mx.new_stream(mx.default_device())

    def segment() -> mx.array:
        return segmentation(audio, parts=seg_parts)

    def embed() -> mx.array:
        return embedding(audio, weights, parts=emb_parts)

    def segment_beside() -> mx.array:
        with mx.stream(side):
            return segmentation(audio, parts=seg_parts)

    def queued(*forwards: Callable[[], mx.array]) -> Callable[[], list[mx.array]]:
        def run() -> list[mx.array]:
            outputs = []
            for _ in range(args.batches):
                for forward in forwards:
                    outputs.append(forward())
                    mx.async_eval(outputs[-1])
            return outputs

        return run

    print(f"{mx.default_device()}, MLX {mx.__version__}: {args.batches} batches of {args.batch} x {duration:g} s")
    rows = {
        "segmentation alone": queued(segment),
        "ResNet alone": queued(embed),
        "both, one stream": queued(segment, embed),
        "both, segmentation on its own stream": queued(segment_beside, embed),
    }
    for name, run in rows.items():
        seconds = timed(lambda run=run: [np.asarray(output) for output in run()], repeats=3)
        print(f"{name:<40} {seconds:.3f} s", flush=True)


if __name__ == "__main__":
    main()
