"""Where an hour's time goes in our pipelines: Python's cProfile of speech detection and of speaker diarization.

    PYTHONPATH=.:tests python benchmarks/profile_hour.py --segmentation SEG.bin [--embedding WESPEAKER.ckpt] \
        [--minutes 60] [--batches 32 1024] [--out profile.txt]

Converts the checkpoints (no checks; the diarization as community-1's layout, tests/pipeline_sources.py), then,
on `checks.audio.long_recording`, for each batch size: speech detection (`inference.segment`) once to warm up,
once timed (with MLX's peak memory), once under cProfile; with `--embedding`, the diarization likewise (warmed up
on 30 s). Writes each profile's functions by own time and by cumulative time: time blocked in `mlx.core.eval` (or
in `np.asarray` of an array still being computed) is the host waiting for the device; the rest is the host's own.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlx_segmentation
import mlx.core as mx

from checks.audio import long_recording
from converter.build import build
from mlx_segmentation.audio import open_audio
from mlx_segmentation.inference import segment

SAMPLE_RATE = 16000


def profiled(name: str, run: Callable[[], object], lines: int) -> str:
    """`run` once to warm up, once timed, once under cProfile: a report of the last two."""
    run()
    mx.synchronize()
    mx.clear_cache()
    mx.reset_peak_memory()
    start = time.perf_counter()
    run()
    mx.synchronize()
    seconds, peak = time.perf_counter() - start, mx.get_peak_memory() / 2**20
    profile = cProfile.Profile()
    profile.enable()
    run()
    mx.synchronize()
    profile.disable()
    report = io.StringIO()
    report.write(f"== {name}: {seconds:.3f} s, peak memory {peak:,.0f} MiB (timed run, without the profiler)\n")
    stats = pstats.Stats(profile, stream=report)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumtime").print_stats(lines)
    print(f"{name}: {seconds:.3f} s, peak memory {peak:,.0f} MiB", flush=True)
    return report.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmentation", type=Path, required=True, help="pyannote segmentation checkpoint")
    parser.add_argument("--embedding", type=Path, help="pyannote WeSpeakerResNet34 checkpoint (diarization)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--batches", type=int, nargs="*", default=[32, 1024], help="speech detection's (none: skip it)")
    parser.add_argument("--lines", type=int, default=30, help="functions listed per ordering")
    parser.add_argument("--out", type=Path, default=Path("profile.txt"))
    args = parser.parse_args()

    recording = long_recording(args.minutes * 60)
    reports = [f"# {mx.default_device()}, MLX {mx.__version__}, {args.minutes:g} min of checks.audio.long_recording\n"]
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(args.segmentation, Path(tmp) / "model", log=lambda m: None).out)
        for batch in args.batches:

            def detect(batch: int = batch) -> object:
                return segment(model, open_audio(recording, SAMPLE_RATE, source_rate=SAMPLE_RATE), batch_size=batch)

            reports.append(profiled(f"speech detection, batch {batch}", detect, args.lines))
        if args.embedding:
            from community_1 import community_1  # needs tests/ on the path

            pipeline = community_1(Path(tmp), args.segmentation, args.embedding)
            pipeline(recording[: 30 * SAMPLE_RATE], sample_rate=SAMPLE_RATE)
            reports.append(
                profiled("diarization (community-1)", lambda: pipeline(recording, sample_rate=SAMPLE_RATE), args.lines)
            )
    args.out.write_text("\n".join(reports))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
