"""Run every check on a model folder against its source checkpoint, and record the outcome."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import mlx.core as mx
import numpy as np

import mlx_segmentation
from converter.architecture import model_config
from converter.errors import ConverterError
from converter.reader import SourceCheckpoint
from converter.recipe import Gates
from mlx_segmentation.binarize import default_speech_params
from mlx_segmentation.manifest import CHECKS_FILE, MANIFEST_FILE, ChecksSummary, Manifest, sha256_file
from mlx_segmentation.wespeaker import WeSpeakerResNet34

from . import reference
from .audio import read_mono, sample_wav, speech_chunks
from .components import component_outputs
from .embedding import EmbeddingCheckReport, run_embedding_checks
from .metrics import compare, decide, full_model_check, probabilities
from .pipeline import pipeline_check
from .report import CheckReport, Drift, environment_versions
from .signals import full_model_signals

COMPONENT_WINDOWS = 2  # windows of real speech through the component checks
CONDITIONING_DRAWS = 4  # perturbed float64 runs measuring an input's conditioning, where 2e is not enough


class ChecksError(ConverterError):
    """The checks could not run (as opposed to: they ran and failed)."""


def run_checks(folder: Path, source: SourceCheckpoint, gates: Gates, label: str | None = None, log=print) -> CheckReport | EmbeddingCheckReport:
    """Compare the MLX model in `folder` with the PyTorch reference; write checks.json and the manifest summary."""
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    if manifest.source.sha256 != source.sha256:
        raise ChecksError(
            f"{label or folder} was converted from a checkpoint with sha256 {manifest.source.sha256[:12]}..., "
            f"not from {source.path} ({source.sha256[:12]}...)"
        )
    model = mlx_segmentation.load(folder)
    config = model_config(source)
    if config != model.config:
        raise ChecksError(f"{label or folder}: config.json does not match the architecture stored in {source.path}")
    if isinstance(model, WeSpeakerResNet34):
        try:
            report = run_embedding_checks(
                model, source.path, gates, folder=label or str(folder), dtype=manifest.dtype, source_sha256=source.sha256,
                weights_sha256=sha256_file(folder / manifest.weights_file), log=log,
            )
        except RuntimeError as error:
            raise ChecksError(str(error)) from None
        return _record(folder, manifest, report)
    spec = config.specifications
    ref32, reference_name = reference.reference_model(source, config)
    ref64 = reference.as_float64(ref32)

    log(f"component checks on {COMPONENT_WINDOWS} windows of real speech")
    speech = speech_chunks(spec.duration, config.sample_rate)[:COMPONENT_WINDOWS]
    components = [
        compare(c.name, c.ours, c.ref32, c.ref64, gates, relative_floor=True)
        for c in component_outputs(model, ref32, ref64, speech)
    ]

    full_model, drift_parts = [], []
    for signal in full_model_signals(model):
        log(f"full-model check: {signal.name}")
        ours = np.array(model(mx.array(signal.waveforms)).astype(mx.float32)).astype(np.float64)
        out32, out64 = reference.run(ref32, signal.waveforms), reference.run(ref64, signal.waveforms)
        perturbed = partial(reference.perturbed_runs, ref64, signal.waveforms, CONDITIONING_DRAWS)
        full_model.append(full_model_check(signal.name, signal.description, ours, out32, out64, spec, gates, perturbed))
        if signal.name.startswith("speech"):
            drift_parts.append((ours, out32))

    pipeline = []
    if reference_name == "pyannote.audio":
        log("pipeline check: speech detection on sample.wav against pyannote's VoiceActivityDetection")
        waveform, _ = read_mono(sample_wav())
        pipeline.append(
            pipeline_check(model, ref32, waveform, "sample", default_speech_params(spec), sample_wav().with_suffix(".rttm"))
        )
    else:
        log("pipeline check not run: it needs pyannote.audio's own VoiceActivityDetection")

    first_failure = next((c.name for c in components if not c.passed), None)
    passed = all(c.passed for c in components + full_model + pipeline)
    if not passed and first_failure is None:
        first_failure = "none of the components alone (the full model fails)"
    report = CheckReport(
        passed=passed,
        first_failure=first_failure,
        created=datetime.now(timezone.utc),
        model_folder=label or str(folder),
        dtype=manifest.dtype,
        source_sha256=source.sha256,
        weights_sha256=sha256_file(folder / manifest.weights_file),
        reference=reference_name,
        gates=gates,
        versions=environment_versions(),
        platform=platform.platform(),
        components=components,
        full_model=full_model,
        pipeline=pipeline,
        drift_vs_float32=_drift(drift_parts, spec),
    )
    return _record(folder, manifest, report)


def _record(folder: Path, manifest: Manifest, report: CheckReport | EmbeddingCheckReport) -> CheckReport | EmbeddingCheckReport:
    """Write checks.json and the summary in the manifest, tied to the weights' sha256."""
    (folder / CHECKS_FILE).write_text(report.model_dump_json(indent=2) + "\n")
    manifest.checks = ChecksSummary(passed=report.passed, weights_sha256=report.weights_sha256, summary=report.summary())
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    return report


def _drift(parts: list[tuple[np.ndarray, np.ndarray]], spec) -> Drift:
    to_probs = probabilities(spec)
    differences = np.concatenate([np.abs(to_probs(a) - to_probs(b)).ravel() for a, b in parts])
    agreements = np.concatenate([(decide(to_probs(a), spec)[0] == decide(to_probs(b), spec)[0]).ravel() for a, b in parts])
    return Drift(
        max_abs_probability=float(differences.max()),
        mean_abs_probability=float(differences.mean()),
        decision_agreement=float(agreements.mean()),
    )
