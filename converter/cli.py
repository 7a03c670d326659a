"""`python -m converter`: build (and fetch sources for) MLX models from pyannote checkpoints."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .build import build
from .publish import push
from .errors import ConverterError
from .recipe import RECIPES_DIR, load_recipes
from .sources import cached_source, fetch_source
from .writer import DTYPES, check_output


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m converter", description=__doc__)
    verbs = root.add_subparsers(dest="verb", required=True)

    build_verb = verbs.add_parser("build", help="convert checkpoints to MLX model folders and check them")
    build_verb.add_argument("--checkpoint", type=Path, help="a pyannote PyanNet checkpoint (default: every recipe)")
    build_verb.add_argument("--out", type=Path, help="output folder (default: dist/<recipe name>)")
    build_verb.add_argument("--recipes", type=Path, default=RECIPES_DIR, help="folder of recipes (default: models/)")
    build_verb.add_argument("--dist", type=Path, default=Path("dist"), help="where recipe builds go (default: dist/)")
    build_verb.add_argument("--dtype", choices=sorted(DTYPES), help="weights dtype (default: the recipe's, else float32)")
    build_verb.add_argument("--force", action="store_true", help="replace an existing output folder")
    build_verb.add_argument("--no-checks", action="store_true", help="skip the parity checks (the model cannot be published)")
    build_verb.add_argument("--push", action="store_true", help="publish each recipe's model to its target repo once it passes")

    push_verb = verbs.add_parser("push", help="publish a checked model folder to the Hugging Face Hub")
    push_verb.add_argument("folder", type=Path)
    push_verb.add_argument("--repo", required=True, help="ORG/NAME on the Hub")
    push_verb.add_argument("--private", action="store_true", help="create the repo private")
    push_verb.add_argument("--revision", help="branch to commit to (created if needed; default: main)")
    push_verb.add_argument("--commit-message")
    push_verb.add_argument("--dry-run", action="store_true", help="print the files, sizes, hashes and card; send nothing")

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
        if args.verb == "push":
            push(args.folder, args.repo, private=args.private, revision=args.revision,
                 commit_message=args.commit_message, dry_run=args.dry_run, log=log)
            return 0
        return _build(args)
    except ConverterError as error:
        log(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        log("error: interrupted; nothing was written")
        return 130


def _build(args: argparse.Namespace) -> int:
    if args.push and (args.checkpoint is not None or args.no_checks):
        raise ConverterError("--push publishes recipe builds, with their checks: drop --checkpoint and --no-checks")
    if args.checkpoint is not None:
        if args.out is None:
            raise ConverterError("--checkpoint needs --out DIR")
        jobs = [(args.checkpoint, args.out, args.dtype or "float32", None)]
    else:
        if args.out is not None:
            raise ConverterError("--out needs --checkpoint (recipe builds go to --dist)")
        jobs = [(cached_source(r), args.dist / r.name, args.dtype or r.dtype, r) for r in load_recipes(args.recipes)]
    for checkpoint, out, _, _ in jobs:  # every output path, before any work
        check_output(out, args.force, protected=[checkpoint])
    for checkpoint, _, _, recipe in jobs:
        if recipe is not None and not checkpoint.is_file():
            fetch_source(recipe, log=log)

    results = [
        build(checkpoint, out, force=args.force, dtype=dtype, recipe=recipe, run_checks=not args.no_checks, log=log)
        for checkpoint, out, dtype, recipe in jobs
    ]
    for result in results:
        if result.checks_table:
            print(f"{result.out}\n{result.checks_table}")
        parameters = sum(math.prod(t.shape) for t in result.manifest.tensors.values())
        print(
            f"{result.out}: {len(result.manifest.tensors)} tensors, {parameters:,} parameters, "
            f"{result.manifest.dtype}, source sha256 {result.manifest.source.sha256[:12]}; checks {result.checks_summary}"
        )
    if not all(r.checks_passed is not False for r in results):
        return 1
    if args.push:
        for result, (_, _, _, recipe) in zip(results, jobs):
            push(result.out, recipe.target_repo, log=log)
    return 0
