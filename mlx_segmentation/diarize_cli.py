"""`python -m mlx_segmentation diarize AUDIO [--pipeline PATH]`: who spoke when, as RTTM."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .audio import AudioError
from .diarization import set_num_speakers
from .loading import ModelLoadError
from .outputs import check_output_file
from .pipeline_loading import load_pipeline
from .progress import StageBars, expected_file_windows

DEFAULT_PIPELINE = Path("dist/speaker-diarization")  # where the README's `converter build --pipeline` writes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlx_segmentation diarize", description=__doc__)
    p.add_argument(
        "audio", type=Path, help="a recording in any format soundfile reads (wav, flac, ogg, ...), any sample rate"
    )
    p.add_argument(
        "--pipeline",
        help="a converted pipeline folder (`python -m converter build --pipeline`), or a Hugging Face Hub repo id "
        f"ORG/NAME (default: {DEFAULT_PIPELINE})",
    )
    p.add_argument("--num-speakers", type=int, help="the number of speakers, when known")
    p.add_argument("--min-speakers", type=int, help="at least this many speakers")
    p.add_argument("--max-speakers", type=int, help="at most this many speakers")
    p.add_argument("--exclusive", action="store_true", help="one speaker at a time (pyannote's exclusive diarization)")
    p.add_argument("--rttm", type=Path, help="write the speaker turns here (default: stdout)")
    p.add_argument("--embeddings", type=Path, help="write one embedding per speaker here (.npy), in label order")
    for stage in ("segmentation", "embedding"):
        p.add_argument(
            f"--{stage}-batch-size",
            type=int,
            help=f"{stage} windows per forward (default: the pipeline's); the output does not change, only speed "
            "and memory (on an H100, 256 segmentation windows took an hour's segmentation from 5.2 s to 1.2 s)",
        )
    return p


def batch_sizes(args: argparse.Namespace) -> dict[str, int]:
    """The batch sizes the command line overrides, each at least 1 (refused before any work otherwise)."""
    chosen = {f"{stage}_batch_size": getattr(args, f"{stage}_batch_size") for stage in ("segmentation", "embedding")}
    for name, size in chosen.items():
        if size is not None and size < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {size}")
    return {name: size for name, size in chosen.items() if size is not None}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        for path in (args.rttm, args.embeddings):
            check_output_file(path)
        set_num_speakers(args.num_speakers, args.min_speakers, args.max_speakers)  # refused before any work
        overrides = batch_sizes(args)
        where = args.pipeline or str(DEFAULT_PIPELINE)
        if args.pipeline is None and not DEFAULT_PIPELINE.is_dir():
            raise ValueError(
                f"no pipeline folder {DEFAULT_PIPELINE} here: build one with `python -m converter build --pipeline "
                "PIPELINE_DIR --out dist/speaker-diarization`, or pass --pipeline (a folder or a Hub repo id)"
            )
        pipeline = load_pipeline(where)
        pipeline.config = pipeline.config.model_copy(update=overrides)
        window = pipeline.segmentation.specifications.duration
        step = pipeline.config.segmentation_step * window
        bars = StageBars(expected_file_windows(args.audio, window, step), step)
        try:
            result = pipeline(
                args.audio,
                num_speakers=args.num_speakers,
                min_speakers=args.min_speakers,
                max_speakers=args.max_speakers,
                progress=bars,
            )
        finally:
            bars.close()
    except (AudioError, ModelLoadError, ValueError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    rttm = result.to_rttm(args.audio.stem, exclusive=args.exclusive)
    if args.rttm:
        args.rttm.write_text(rttm)
    else:
        sys.stdout.write(rttm)
    if args.embeddings:
        np.save(args.embeddings, result.speaker_embeddings)
    print(f"{len(result.labels)} speakers, {len(result.turns)} turns", file=sys.stderr)
    return 0
