"""`python -m converter`: build, check, publish (and fetch sources for) MLX models from pyannote checkpoints.

The command line is where the converter and the parity checks meet: it hands the checks to a build
as a checker, and the report they return to the writer; neither package imports the other.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlx_segmentation.config import first_error
from mlx_segmentation.manifest import MANIFEST_FILE, Manifest

from .build import BuildResult, Checker, build
from .card import CardInfo
from .errors import ConverterError
from .families import model_config
from .pipeline_build import PipelineChecker, PipelineChecksFailed, build_pipeline
from .pipeline_source import PipelineFolder, read_pipeline_folder
from .publish import push
from .reader import read_checkpoint
from .recipe import RECIPES_DIR, Recipe, load_recipe, load_recipes
from .sources import cached_source, fetch_source
from .uptodate import current_build, current_pipeline, source_sha256
from .writer import DTYPES, check_output, check_output_path, record_checks, seal


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m converter", description=__doc__)
    verbs = root.add_subparsers(dest="verb", required=True)

    build_verb = verbs.add_parser("build", help="convert checkpoints to MLX model folders and check them")
    build_verb.add_argument(
        "--checkpoint",
        type=Path,
        help="a pyannote.audio checkpoint: PyanNet or WeSpeakerResNet34 (default: every recipe)",
    )
    build_verb.add_argument(
        "--pipeline",
        type=Path,
        help="a pyannote speaker-diarization pipeline folder (config.yaml and the files it names); needs --out",
    )
    build_verb.add_argument("--out", type=Path, help="output folder (default: dist/<recipe name>)")
    build_verb.add_argument("--recipes", type=Path, default=RECIPES_DIR, help="folder of recipes (default: models/)")
    build_verb.add_argument("--dist", type=Path, default=Path("dist"), help="where recipe builds go (default: dist/)")
    build_verb.add_argument(
        "--dtype", choices=sorted(DTYPES), help="weights dtype (default: the recipe's, else float32)"
    )
    build_verb.add_argument("--force", action="store_true", help="replace an existing output folder")
    build_verb.add_argument(
        "--no-checks", action="store_true", help="skip the parity checks (the model cannot be published)"
    )
    build_verb.add_argument(
        "--push", action="store_true", help="publish each recipe's model to its target repo once it passes"
    )
    build_verb.add_argument("--license", help="with --checkpoint: the weights' license, a Hub id (mit, cc-by-4.0, ...)")
    build_verb.add_argument("--base-model", help="with --checkpoint: the original model's Hub repo (ORG/NAME)")

    push_verb = verbs.add_parser("push", help="publish a checked model or pipeline folder to the Hugging Face Hub")
    push_verb.add_argument("folder", type=Path)
    push_verb.add_argument("--repo", required=True, help="ORG/NAME on the Hub")
    push_verb.add_argument("--private", action="store_true", help="create the repo private")
    push_verb.add_argument("--revision", help="branch to commit to (created if needed; default: main)")
    push_verb.add_argument("--commit-message")
    push_verb.add_argument(
        "--dry-run", action="store_true", help="print the files, sizes, hashes and card; send nothing"
    )

    check_verb = verbs.add_parser("check", help="run the parity checks again on a model folder, against its checkpoint")
    check_verb.add_argument("folder", type=Path, help="a model folder written by `python -m converter build`")
    check_verb.add_argument(
        "--checkpoint", type=Path, required=True, help="the PyTorch checkpoint it was converted from"
    )
    check_verb.add_argument("--recipe", type=Path, help="take the gates from this recipe (default: the built-in gates)")

    fetch_verb = verbs.add_parser("fetch", help="download every recipe's source checkpoint (pinned by sha256)")
    fetch_verb.add_argument("--recipes", type=Path, default=RECIPES_DIR)
    return root


def terminated(signum: int, frame) -> None:
    """SIGTERM handler for the command line: unwind like Ctrl-C, so staging folders and locks are removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.verb == "fetch":
            for recipe in load_recipes(args.recipes):
                path = fetch_source(recipe, log=log)
                print(f"{recipe.name}: {path}")
            return 0
        if args.verb == "check":
            return _check(args)
        if args.verb == "push":
            push(
                args.folder,
                args.repo,
                private=args.private,
                revision=args.revision,
                commit_message=args.commit_message,
                dry_run=args.dry_run,
                log=log,
            )
            return 0
        return _build(args)
    except ConverterError as error:
        log(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        log("error: interrupted; nothing was written")
        return 130


def build_and_check(
    checkpoint: Path,
    out: Path,
    *,
    force: bool = False,
    dtype: str = "float32",
    recipe: Recipe | None = None,
    card: CardInfo | None = None,
    run_checks: bool = True,
    log: Callable[[str], None] = log,
) -> BuildResult:
    """A build, with the parity checks unless `run_checks` is False: what `python -m converter build` runs.

    The card's origin and license come from the recipe, else from `card` (`--license`, `--base-model`)."""
    check = parity_checker(dtype, recipe.gates if recipe else None, label=str(out), log=log) if run_checks else None
    card = CardInfo.of(recipe) if recipe else card
    return build(checkpoint, out, force=force, dtype=dtype, card=card, check=check, log=log)


def parity_checker(
    dtype: str, recipe_gates: Mapping[str, Any] | None, label: str, log: Callable[[str], None] = log
) -> Checker:
    """The parity checks with their gates, as a build's checker; refused at once without torch or with bad gates."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConverterError(
            "the parity checks need torch: pip install '.[convert]' in a clone of the repository "
            "(torch and pyannote.audio, their reference), or pass --no-checks"
        ) from None
    from checks.gates import gates_for
    from checks.run import ChecksError, run_checks

    try:
        gates = gates_for(dtype, recipe_gates)
    except ValidationError as error:
        raise ConverterError(f"invalid {dtype} gates ({first_error(error)})") from None

    def check(folder: Path, source) -> Any:
        try:
            return run_checks(folder, source, gates, label=label, log=log)
        except ChecksError as error:
            raise ConverterError(str(error)) from None

    return check


def _check(args: argparse.Namespace) -> int:
    try:
        manifest = Manifest.model_validate_json((args.folder / MANIFEST_FILE).read_text())
    except (OSError, ValidationError) as error:
        raise ConverterError(f"{args.folder}: not a model folder ({str(error).splitlines()[0]})") from None
    recipe_gates = load_recipe(args.recipe).gates if args.recipe else None
    check = parity_checker(manifest.dtype, recipe_gates, label=str(args.folder))
    source = read_checkpoint(args.checkpoint)
    from mlx_segmentation import ModelLoadError, load

    try:
        stored = load(args.folder).config
    except ModelLoadError as error:
        raise ConverterError(str(error)) from None
    if manifest.source.sha256 != source.sha256:
        raise ConverterError(
            f"{args.folder} was converted from a checkpoint with sha256 {manifest.source.sha256[:12]}..., "
            f"not from {args.checkpoint} ({source.sha256[:12]}...)"
        )
    if model_config(source) != stored:
        raise ConverterError(f"{args.folder}: config.json does not match the architecture stored in {args.checkpoint}")
    report = check(args.folder, source)
    record_checks(args.folder, report)
    seal(args.folder)
    print(report.table())
    print(report.summary())
    return 0 if report.passed else 1


def pipeline_checker(label: str, log: Callable[[str], None] = log) -> PipelineChecker:
    """The pipeline checks (both pipelines on sample.wav), as a pipeline build's checker; torch is checked by
    `parity_checker`, which every checked pipeline build asks for first."""
    from checks.diarization import run_pipeline_checks

    def check(folder: Path, source: PipelineFolder) -> Any:
        try:
            segmentation, embedding = read_checkpoint(source.segmentation), read_checkpoint(source.embedding)
            return run_pipeline_checks(folder, segmentation, embedding, source.plda, label=label, log=log)
        except RuntimeError as error:
            raise ConverterError(f"{label}: the pipeline checks cannot run ({str(error).splitlines()[0]})") from None

    return check


def _build(args: argparse.Namespace) -> int:
    if args.pipeline is not None:
        return _build_pipeline(args)
    if args.push and (args.checkpoint is not None or args.no_checks):
        raise ConverterError("--push publishes recipe builds, with their checks: drop --checkpoint and --no-checks")
    if args.checkpoint is not None:
        if args.out is None:
            raise ConverterError("--checkpoint needs --out DIR")
        jobs = [(args.checkpoint, args.out, args.dtype or "float32", None)]
    else:
        if args.out is not None:
            raise ConverterError("--out needs --checkpoint (recipe builds go to --dist)")
        if args.license or args.base_model:
            raise ConverterError("--license and --base-model describe a --checkpoint build (recipes give their own)")
        jobs = [(cached_source(r), args.dist / r.name, args.dtype or r.dtype, r) for r in load_recipes(args.recipes)]
    # Every output path and every check's gates, before any work; outputs that hold their build already are skipped.
    current = [None if args.force else _current_build(*job) for job in jobs]
    for (checkpoint, out, dtype, recipe), manifest in zip(jobs, current):
        if manifest is None:
            check_output(out, args.force, protected=[checkpoint])
            if not args.no_checks:
                parity_checker(dtype, recipe.gates if recipe else None, label=str(out))
    for (checkpoint, _, _, recipe), manifest in zip(jobs, current):
        if manifest is None and recipe is not None and not checkpoint.is_file():
            fetch_source(recipe, log=log)

    card = CardInfo(license=args.license, base_model=args.base_model)
    results = [
        BuildResult(out, manifest, report=None)
        if manifest is not None
        else build_and_check(
            checkpoint, out, force=args.force, dtype=dtype, recipe=recipe, card=card, run_checks=not args.no_checks
        )
        for (checkpoint, out, dtype, recipe), manifest in zip(jobs, current)
    ]
    for result in results:
        if result.report is not None:
            print(f"{result.out}\n{result.report.table()}")
        manifest = result.manifest
        parameters = sum(math.prod(t.shape) for t in manifest.tensors.values())
        summary = "not run" if manifest.checks is None else manifest.checks.summary
        print(
            f"{result.out}: {len(manifest.tensors)} tensors, {parameters:,} parameters, "
            f"{manifest.dtype}, source sha256 {manifest.source.sha256[:12]}; checks {summary}"
        )
    if not all(r.checks_passed is not False for r in results):
        return 1
    if args.push:
        for result, (_, _, _, recipe) in zip(results, jobs):
            push(result.out, recipe.target_repo, log=log)
    return 0


def _build_pipeline(args: argparse.Namespace) -> int:
    """`build --pipeline DIR --out OUT`: the two models (parity-checked unless --no-checks), the PLDA and parameters."""
    if args.checkpoint is not None or args.push or args.license or args.base_model:
        raise ConverterError("--pipeline takes --out, --dtype, --force and --no-checks only")
    if args.out is None:
        raise ConverterError("--pipeline needs --out DIR")
    dtype = args.dtype or "float32"
    if not args.force and check_output_path(args.out, protected=[args.pipeline]).is_dir():
        source = read_pipeline_folder(args.pipeline)
        manifest = current_pipeline(args.out, source, dtype)
        print(
            f"{args.out} is up to date (config.yaml sha256 {manifest.source.config_sha256[:12]}, "
            f"converter {manifest.converter_version}, model and pipeline checks passed)",
            flush=True,
        )
        return 0
    check_output(args.out, args.force, protected=[args.pipeline])
    check = None if args.no_checks else parity_checker(dtype, None, label=str(args.out))
    check_pipeline = None if args.no_checks else pipeline_checker(label=str(args.out))
    try:
        result = build_pipeline(
            args.pipeline, args.out, force=args.force, dtype=dtype, check=check, check_pipeline=check_pipeline, log=log
        )
    except PipelineChecksFailed as failed:
        print(failed.report.table())
        log(f"error: {failed}")
        return 1
    models = [result.segmentation, result.embedding]
    for model in models:
        if model.report is not None:
            print(f"{result.out}/{model.out.name}\n{model.report.table()}")
    if result.report is not None:
        print(f"{result.out}\n{result.report.table()}")
    checks = "not run" if result.manifest.checks is None else result.manifest.checks.summary
    print(f"{result.out}: {len(result.manifest.source.files)} source files converted; pipeline checks {checks}")
    return 1 if False in [m.checks_passed for m in models] else 0  # a failing pipeline raised above


def _current_build(checkpoint: Path, out: Path, dtype: str, recipe: Recipe | None) -> Manifest | None:
    """The manifest of `out` if it holds this build already (said on stdout); None if there is no such folder."""
    if not check_output_path(out, protected=[checkpoint]).is_dir():
        return None
    sha256 = recipe.source.sha256 if recipe else source_sha256(checkpoint)
    manifest = current_build(out, sha256, dtype)
    print(
        f"{out} is up to date (source sha256 {sha256[:12]}, converter {manifest.converter_version}, checks passed)",
        flush=True,
    )
    return manifest
