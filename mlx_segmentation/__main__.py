"""`python -m mlx_segmentation AUDIO --model PATH`: speech regions of a recording, as RTTM."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from .audio import AudioError
from .binarize import BinarizeParams, default_speech_params
from .families import family
from .loading import ModelLoadError, load
from .pyannet import PyanNet
from .speech import detect_speech
from .windows import default_step, expected_windows

PROGRESS_AFTER_SECONDS = 60.0  # show a progress bar for recordings longer than this


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlx_segmentation", description=__doc__)
    p.add_argument(
        "audio", type=Path, help="a recording in any format soundfile reads (wav, flac, ogg, ...), any sample rate"
    )
    p.add_argument("--model", required=True, help="a converted model folder")
    p.add_argument("--rttm", type=Path, help="write speech regions here (default: stdout)")
    p.add_argument("--scores", type=Path, help="write the aggregated speech scores here (.npz)")
    p.add_argument("--step", type=float, help="seconds between windows (default: pyannote's for the model)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32)")
    for name in ("onset", "offset", "min-duration-on", "min-duration-off"):
        p.add_argument(f"--{name}", type=float, help="speech detection parameter (default: pyannote's for this model)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        for path in (args.rttm, args.scores):
            check_output_file(path)
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if args.step is not None and not (math.isfinite(args.step) and args.step > 0):
            raise ValueError(f"--step must be a positive number of seconds, got {args.step}")
        model = load(args.model)
        task = family(model.config).task
        if task != "segmentation":
            raise ValueError(f"{args.model} holds a speaker-{task} model; speech detection needs a segmentation model")
        params = speech_params(args, model)
        step = args.step or default_step(model.specifications)
        expected = _expected_windows(args.audio, model, step)
        with tqdm(total=expected, unit="window", file=sys.stderr, disable=None, leave=False) as bar:
            if bar.total is None or bar.total * step < PROGRESS_AFTER_SECONDS:
                bar.disable = True
            result = detect_speech(
                model, args.audio, params=params, step=args.step, batch_size=args.batch_size, progress=bar.update
            )
    except (AudioError, ModelLoadError, ValueError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    uri = args.audio.stem
    if args.rttm:
        with open(args.rttm, "w") as file:
            result.write_rttm(file, uri)
    else:
        result.write_rttm(sys.stdout, uri)
    if args.scores:
        result.save_scores(args.scores)
    speech = sum(r.duration for r in result.regions)
    seconds = result.segmentation.num_samples / model.config.sample_rate
    print(f"{len(result.regions)} speech regions, {speech:.1f} s of speech in {seconds:.1f} s", file=sys.stderr)
    return 0


def check_output_file(path: Path | None) -> None:
    """Refuse, before any work, an output file that cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: the folder {parent} is not writable")


def speech_params(args: argparse.Namespace, model: PyanNet) -> BinarizeParams:
    """pyannote's defaults for this model, overridden by the options given; a bad value names its option."""
    defaults = default_speech_params(model.specifications).model_dump()
    chosen = {key: getattr(args, key) for key in defaults if getattr(args, key) is not None}
    try:
        return BinarizeParams(**{**defaults, **chosen})
    except ValidationError as error:
        first = error.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise ValueError(f"{option}: {first['msg'].lower()}, got {first['input']!r}") from None


def _expected_windows(audio: Path, model: PyanNet, step: float) -> int | None:
    import soundfile

    try:
        duration = soundfile.info(str(audio)).duration
    except Exception:
        return None
    return expected_windows(duration, model.specifications.duration, step)


if __name__ == "__main__":
    code = main()
    # Exit without running C++ static destructors: MLX's teardown at interpreter exit once aborted
    # ("terminate called without an active exception", SIGABRT) after a refused model folder, turning
    # exit code 2 into -6 (seen once in a full test run). Every output file is closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
