"""`python -m mlx_segmentation AUDIO --model PATH`: speech regions of a recording, as RTTM."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tqdm import tqdm

from .audio import AudioError
from .binarize import BinarizeParams, default_speech_params
from .loading import ModelLoadError, load
from .speech import detect_speech

PROGRESS_AFTER_SECONDS = 60.0  # show a progress bar for recordings longer than this


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlx_segmentation", description=__doc__)
    p.add_argument("audio", type=Path, help="a recording in any format soundfile reads (wav, flac, ogg, ...), any sample rate")
    p.add_argument("--model", required=True, help="a converted model folder")
    p.add_argument("--rttm", type=Path, help="write speech regions here (default: stdout)")
    p.add_argument("--scores", type=Path, help="write the aggregated speech scores here (.npz)")
    p.add_argument("--step", type=float, help="seconds between windows (default: 10%% of the model's window)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32)")
    for name in ("onset", "offset", "min-duration-on", "min-duration-off"):
        p.add_argument(f"--{name}", type=float, help="speech detection parameter (default: pyannote's for this model)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        model = load(args.model)
        defaults = default_speech_params(model.specifications).model_dump()
        chosen = {key: getattr(args, key) for key in defaults if getattr(args, key) is not None}
        params = BinarizeParams(**{**defaults, **chosen})
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        with tqdm(total=_expected_windows(args, model), unit="window", file=sys.stderr, disable=None, leave=False) as bar:
            if bar.total is None or bar.total * (args.step or 0.1 * model.specifications.duration) < PROGRESS_AFTER_SECONDS:
                bar.disable = True
            result = detect_speech(model, args.audio, params=params, step=args.step, batch_size=args.batch_size, progress=bar.update)
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
    print(f"{len(result.regions)} speech regions, {speech:.1f} s of speech in {result.segmentation.num_samples / model.config.sample_rate:.1f} s", file=sys.stderr)
    return 0


def _expected_windows(args: argparse.Namespace, model) -> int | None:
    import soundfile

    try:
        duration = soundfile.info(str(args.audio)).duration
    except Exception:
        return None
    window = model.specifications.duration
    step = args.step or 0.1 * window
    return 1 if duration <= window else math.floor((duration - window) / step) + 2


if __name__ == "__main__":
    sys.exit(main())
