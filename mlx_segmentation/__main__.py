"""`python -m mlx_segmentation AUDIO [--model PATH]`: speech regions of a recording, as RTTM.

`python -m mlx_segmentation diarize AUDIO ...` diarizes it instead (`diarize_cli.py`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from .audio import AudioError
from .binarize import MULTILABEL_SPEECH, POWERSET_SPEECH, BinarizeParams, default_speech_params
from .config import Specifications
from .families import CONFIG, family
from .loading import ModelLoadError, load
from .manifest import CONFIG_FILE
from .outputs import check_output_file
from .progress import PROGRESS_AFTER_SECONDS, expected_file_windows
from .pyannet import PyanNet
from .speech import detect_speech
from .windows import default_step

DEFAULT_MODEL = Path("dist/segmentation-3.0")  # where `python -m converter build` writes the main recipe
THRESHOLDS = ("onset", "offset", "min-duration-on", "min-duration-off")


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line; its help shows the defaults of the model `argv` names (else of the default model)."""
    model = _model_option(argv) or str(DEFAULT_MODEL)
    defaults = _defaults_help(model, _local_specifications(model))
    p = argparse.ArgumentParser(prog="python -m mlx_segmentation", description=__doc__)
    p.add_argument(
        "audio", type=Path, help="a recording in any format soundfile reads (wav, flac, ogg, ...), any sample rate"
    )
    p.add_argument(
        "--model",
        help="a converted model folder, or a Hugging Face Hub repo id ORG/NAME "
        f"(default: {DEFAULT_MODEL}, which `python -m converter build` writes)",
    )
    p.add_argument("--rttm", type=Path, help="write speech regions here (default: stdout)")
    p.add_argument("--scores", type=Path, help="write the aggregated speech scores here (.npz)")
    p.add_argument("--step", type=float, help=f"seconds between windows ({defaults['step']})")
    p.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32)")
    for name in THRESHOLDS:
        p.add_argument(f"--{name}", type=float, help=f"speech detection parameter ({defaults[name]})")
    return p


def _model_option(argv: Sequence[str] | None) -> str | None:
    """The value of `--model` in `argv`, if it has one."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--model")
    try:
        return pre.parse_known_args(argv)[0].model
    except argparse.ArgumentError:  # `--model` without a value: the real parser says so
        return None


def _local_specifications(model: str) -> Specifications | None:
    """A local model folder's segmentation specifications, from its config.json alone; None if not readable."""
    try:
        config = CONFIG.validate_json((Path(model) / CONFIG_FILE).read_bytes())
    except (OSError, ValueError):  # no such folder (a Hub repo id, say), or not a valid config
        return None
    return getattr(config, "specifications", None)  # embedding models have none


def _defaults_help(model: str, spec: Specifications | None) -> dict[str, str]:
    """What the help says of each option's default: the model's own, or pyannote's rule if it cannot be read."""
    if spec is not None:
        values = {"step": default_step(spec), **_by_option(default_speech_params(spec))}
        shown = model.replace("%", "%%")  # argparse %-formats help
        return {name: f"default for {shown}: {value:g}" for name, value in values.items()}
    multilabel, powerset = _by_option(MULTILABEL_SPEECH), _by_option(POWERSET_SPEECH)
    rule = {
        name: f"default: pyannote's for the model, {multilabel[name]:g} for pyannote/segmentation, "
        f"{powerset[name]:g} for powerset models"
        for name in THRESHOLDS
    }
    return {"step": "default: pyannote's for the model, 10%% of its window unless it has a warm-up", **rule}


def _by_option(params: BinarizeParams) -> dict[str, float]:
    return {key.replace("_", "-"): value for key, value in params.model_dump().items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["diarize"]:
        from .diarize_cli import main as diarize

        return diarize(argv[1:])
    args = parser(argv).parse_args(argv)
    try:
        for path in (args.rttm, args.scores):
            check_output_file(path)
        if args.batch_size < 1:
            raise ValueError("--batch-size must be at least 1")
        if args.step is not None and not (math.isfinite(args.step) and args.step > 0):
            raise ValueError(f"--step must be a positive number of seconds, got {args.step}")
        chosen = _chosen_model(args.model)
        model = load(chosen)
        task = family(model.config).task
        if task != "segmentation":
            raise ValueError(f"{chosen} holds a speaker-{task} model; speech detection needs a segmentation model")
        params = speech_params(args, model)
        step = args.step or default_step(model.specifications)
        expected = expected_file_windows(args.audio, model.specifications.duration, step)
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


def _chosen_model(option: str | None) -> str | Path:
    """`--model`, else the default folder, which must exist (as a Path, never taken for a Hub repo id)."""
    if option is not None:
        return option
    if not DEFAULT_MODEL.is_dir():
        raise ValueError(
            f"no model folder {DEFAULT_MODEL} here: run `python -m converter build` first, "
            "or pass --model (a model folder or a Hub repo id ORG/NAME)"
        )
    return DEFAULT_MODEL


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


if __name__ == "__main__":
    code = main()
    # Exit without running C++ static destructors: MLX's teardown at interpreter exit once aborted
    # ("terminate called without an active exception", SIGABRT) after a refused model folder, turning
    # exit code 2 into -6 (seen once in a full test run). Every output file is closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
