"""`python -m checks DIR --checkpoint SOURCE`: run the parity checks on a converted model folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converter.errors import ConverterError
from converter.reader import read_checkpoint
from converter.recipe import default_gates, load_recipe
from converter.writer import seal
from mlx_segmentation import ModelLoadError
from mlx_segmentation.manifest import MANIFEST_FILE, Manifest

from .run import ChecksError, run_checks


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks", description=__doc__)
    parser.add_argument("folder", type=Path, help="a model folder written by `python -m converter build`")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the PyTorch checkpoint it was converted from")
    parser.add_argument("--recipe", type=Path, help="take the gates from this recipe (default: the built-in gates)")
    args = parser.parse_args(argv)
    try:
        manifest = Manifest.model_validate_json((args.folder / MANIFEST_FILE).read_text())
        gates = load_recipe(args.recipe).gates.get(manifest.dtype) if args.recipe else None
        source = read_checkpoint(args.checkpoint)
        report = run_checks(args.folder, source, gates or default_gates(manifest.dtype), log=log)
        seal(args.folder)
    except (ConverterError, ChecksError, ModelLoadError, OSError, ValueError) as error:
        log(f"error: {str(error).splitlines()[0]}")
        return 2
    print(report.table())
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
