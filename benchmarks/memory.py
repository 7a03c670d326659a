"""Peak memory of whole-recording speech detection against recording length.

    python benchmarks/memory.py --model dist/segmentation [--minutes 10 60 120] [--step S] [--out memory.json]

For each length, writes a 16 kHz, 16-bit WAV of real speech (sample.wav excerpts with pauses, as in
checks.audio.long_recording), then runs `python -m mlx_segmentation` on it in a child process and
reads the child's peak resident memory. Flat numbers mean memory does not grow with the recording.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile

from checks.audio import long_recording
from mlx_segmentation.config import PyanNetConfig
from mlx_segmentation.windows import default_step, expected_windows


def write_recording(path: Path, minutes: float) -> None:
    """Write `minutes` of speech in 10-minute pieces, so that the writer's own memory stays small."""
    with soundfile.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as file:
        written, piece = 0.0, 0
        while written < minutes * 60:
            seconds = min(600.0, minutes * 60 - written)
            file.write(long_recording(seconds, seed=piece)[: int(seconds * 16000)])
            written, piece = written + seconds, piece + 1


def peak_memory(model: str, audio: Path, step: float | None) -> tuple[float, float]:
    """(peak resident MiB, seconds) of one run, measured through a fresh intermediate process."""
    command = [sys.executable, "-m", "mlx_segmentation", str(audio), "--model", model, "--rttm", "/dev/null"]
    if step is not None:
        command += ["--step", str(step)]
    measure = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", measure, *command], check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120])
    parser.add_argument("--step", type=float, help="seconds between windows (default: pyannote's for the model)")
    parser.add_argument("--out", type=Path, default=Path("memory.json"))
    args = parser.parse_args()
    config = PyanNetConfig.model_validate_json((Path(args.model) / "config.json").read_text())
    window = config.specifications.duration
    step = args.step or default_step(config.specifications)
    rows = []
    print(f"{'minutes':>8} {'windows':>8} {'peak MiB':>9} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            audio = Path(tmp) / f"{minutes:g}min.wav"
            write_recording(audio, minutes)
            peak, seconds = peak_memory(args.model, audio, args.step)
            audio.unlink()
            rows.append(
                {
                    "minutes": minutes,
                    "windows": expected_windows(minutes * 60, window, step),
                    "peak_mib": round(peak, 1),
                    "seconds": round(seconds, 1),
                }
            )
            print(f"{minutes:>8g} {rows[-1]['windows']:>8} {peak:>9.1f} {seconds:>8.1f}")
    args.out.write_text(json.dumps({"platform": platform.platform(), "step": args.step, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
