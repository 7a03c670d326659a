"""Run the parity checks on a model folder against its source checkpoint."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import mlx.core as mx
import numpy as np

import mlx_segmentation
from converter.architecture import model_config
from converter.reader import SourceCheckpoint
from converter.recipe import Gates
from mlx_segmentation.manifest import CHECKS_FILE, MANIFEST_FILE, ChecksSummary, Manifest, sha256_file

from . import reference
from .audio import speech_chunks
from .parity import compare
from .report import CheckReport, environment_versions


class ChecksError(Exception):
    """The checks could not run (as opposed to: they ran and failed)."""


def run_checks(folder: Path, source: SourceCheckpoint, gates: Gates, label: str | None = None, log=print) -> CheckReport:
    """Compare the MLX model in `folder` with pyannote.audio on real speech; write checks.json."""
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    if manifest.source.sha256 != source.sha256:
        raise ChecksError(
            f"{folder} was converted from a checkpoint with sha256 {manifest.source.sha256}, not {source.path} ({source.sha256})"
        )
    model = mlx_segmentation.load(folder)
    config = model_config(source)
    if config != model.config:
        raise ChecksError(f"{folder}: config.json does not match the architecture stored in {source.path}")
    spec = config.specifications
    torch32 = reference.pyannote_model(source, config)
    torch64 = reference.as_float64(torch32)

    chunks = speech_chunks(spec.duration, config.sample_rate)
    inputs = {f"sample.wav[{i}]": chunk[None] for i, chunk in enumerate(chunks)}
    inputs["sample.wav batch"] = chunks
    comparisons = []
    for name, waveforms in inputs.items():
        log(f"checking {name}")
        ours = np.array(model(mx.array(waveforms)))
        comparisons.append(
            compare(name, ours, reference.run(torch32, waveforms), reference.run(torch64, waveforms), spec, gates)
        )

    report = CheckReport(
        passed=all(c.passed for c in comparisons),
        created=datetime.now(timezone.utc),
        model_folder=label or str(folder),
        source_sha256=source.sha256,
        weights_sha256=sha256_file(folder / manifest.weights_file),
        versions=environment_versions(),
        platform=platform.platform(),
        full_model=comparisons,
    )
    (folder / CHECKS_FILE).write_text(report.model_dump_json(indent=2) + "\n")
    manifest.checks = ChecksSummary(passed=report.passed, weights_sha256=report.weights_sha256, summary=report.summary())
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    return report
