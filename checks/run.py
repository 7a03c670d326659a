"""Run every check of a model folder against its source checkpoint; return the report (writing nothing)."""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import mlx.core as mx
import numpy as np

import mlx_segmentation
from mlx_segmentation.binarize import default_speech_params
from mlx_segmentation.config import Specifications
from mlx_segmentation.manifest import MANIFEST_FILE, Manifest
from mlx_segmentation.pyannet import PyanNet
from mlx_segmentation.wespeaker import WeSpeakerResNet34

from . import reference
from .audio import read_mono, sample_wav, speech_chunks, speech_segments
from .components import component_outputs
from .embedding_components import component_checks
from .embedding_metrics import full_model_check as embedding_check
from .embedding_metrics import ranking_check
from .gates import Gates
from .metrics import compare, decide, full_model_check, probabilities
from .pipeline import pipeline_check
from .reference import Checkpoint
from .report import CheckReport, Drift, EmbeddingCheckReport, environment_versions
from .signals import Signal, full_model_signals

COMPONENT_WINDOWS = 2  # windows of real speech through the component checks
CONDITIONING_DRAWS = 4  # perturbed float64 runs measuring an input's conditioning, where 2e is not enough
EMBEDDING_LENGTHS = (1.0, 3.3, 10.0)  # seconds of speech per full-model check of an embedding model
WEIGHT_SEED = 0


class ChecksError(Exception):
    """The checks could not run (as opposed to: they ran and failed)."""


def run_checks(
    folder: Path, source: Checkpoint, gates: Gates, label: str | None = None, log: Callable[[str], None] = print
) -> CheckReport | EmbeddingCheckReport:
    """Compare the MLX model in `folder` with the PyTorch reference built from `source`."""
    model = mlx_segmentation.load(folder)
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    header = dict(
        created=datetime.now(timezone.utc),
        model_folder=label or str(folder),
        dtype=manifest.dtype,
        source_sha256=source.sha256,
        weights_sha256=manifest.weights_sha256,  # `load` just hashed the weights it read against this
        gates=gates,
        versions=environment_versions(),
        platform=platform.platform(),
    )
    from .families import RUNNERS  # the table names this module's runners

    try:
        return RUNNERS[model.config.model_type](model, source, gates, header, log)
    except RuntimeError as error:  # torch refusing the checkpoint's tensors, say
        raise ChecksError(f"{label or folder}: the checks cannot run ({str(error).splitlines()[0]})") from None


def run_pyannet_checks(model: PyanNet, source: Checkpoint, gates: Gates, header: dict, log) -> CheckReport:
    """Components on real speech, the full model on real speech and hostile signals, and the pipeline."""
    config = model.config
    spec = config.specifications
    ref32, reference_name = reference.reference_model(source, config)
    ref64 = reference.as_float64(ref32)
    components, full_model, drift_parts, pipeline = [], [], [], []

    def check_components() -> None:
        speech = speech_chunks(spec.duration, config.sample_rate)[:COMPONENT_WINDOWS]
        for c in component_outputs(model, ref32, ref64, speech):
            components.append(compare(c.name, c.ours, c.ref32, c.ref64, gates, relative_floor=True))

    def check_signal(signal: Signal) -> None:
        ours = np.array(model(mx.array(signal.waveforms)).astype(mx.float32)).astype(np.float64)
        out32, out64 = reference.run(ref32, signal.waveforms), reference.run(ref64, signal.waveforms)
        perturbed = partial(reference.perturbed_runs, ref64, signal.waveforms, CONDITIONING_DRAWS)
        full_model.append(full_model_check(signal.name, signal.description, ours, out32, out64, spec, gates, perturbed))
        if signal.name.startswith("speech"):
            drift_parts.append((ours, out32))

    def check_pipeline() -> None:
        waveform, _ = read_mono(sample_wav())
        truth = sample_wav().with_suffix(".rttm")
        pipeline.append(pipeline_check(model, ref32, waveform, "sample", default_speech_params(spec), truth))

    steps = [(f"component checks on {COMPONENT_WINDOWS} windows of real speech", check_components)]
    steps += [(f"full-model check on {s.name}", partial(check_signal, s)) for s in full_model_signals(model)]
    if reference_name == "pyannote.audio":
        steps.append(
            ("pipeline check on sample.wav: speech detection against pyannote's VoiceActivityDetection", check_pipeline)
        )
    else:
        log("pipeline check not run: it needs pyannote.audio's own VoiceActivityDetection")
    run_steps(steps, log)

    first_failure = next((c.name for c in components if not c.passed), None)
    passed = all(c.passed for c in components + full_model + pipeline)
    if not passed and first_failure is None:
        first_failure = "none of the components alone (the full model fails)"
    return CheckReport(
        **header,
        passed=passed,
        first_failure=first_failure,
        reference=reference_name,
        components=components,
        full_model=full_model,
        pipeline=pipeline,
        drift_vs_float32=_drift(drift_parts, spec),
    )


def run_wespeaker_checks(
    model: WeSpeakerResNet34, source: Checkpoint, gates: Gates, header: dict, log
) -> EmbeddingCheckReport:
    """Components on real speech, full-model embeddings with and without frame weights, and a ranking."""
    ref32, reference_name = reference.wespeaker_reference(source, model.config)
    ref64 = reference.as_float64(ref32)
    components, full, rankings = [], [], []
    rng = np.random.default_rng(WEIGHT_SEED)

    def check_components() -> None:
        components.extend(component_checks(model, ref32, ref64, speech_segments(3.3, 2), gates))

    def check_length(seconds: float) -> None:
        waveforms = speech_segments(seconds, 2)
        full.append(embedding_check(f"speech {seconds:g} s", model, ref32, ref64, waveforms, None, gates))
        frames = int(seconds * model.config.sample_rate) // 270  # a segmentation frame rate; pooling resizes them
        weights = rng.random((2, 2, frames)).astype(np.float32)
        full.append(
            embedding_check(
                f"speech {seconds:g} s, 2 speakers' weights", model, ref32, ref64, waveforms, weights, gates
            )
        )

    steps = [("embedding component checks on 2 segments of real speech", check_components)]
    steps += [
        (f"full-model check on {seconds:g} s of speech, without and with frame weights", partial(check_length, seconds))
        for seconds in EMBEDDING_LENGTHS
    ]
    steps.append(
        ("ranking check on single-speaker segments of sample.wav", lambda: rankings.append(ranking_check(model, ref32)))
    )
    run_steps(steps, log)
    (ranking,) = rankings
    first_failure = next((c.name for c in components if not c.passed), None)
    passed = all(c.passed for c in components) and all(c.passed for c in full) and ranking.passed
    if not passed and first_failure is None:
        first_failure = next((c.input for c in full if not c.passed), "ranking")
    return EmbeddingCheckReport(
        **header,
        passed=passed,
        first_failure=first_failure,
        reference=reference_name,
        components=components,
        full_model=full,
        ranking=ranking,
    )


def run_steps(steps: list[tuple[str, Callable[[], None]]], log: Callable[[str], None]) -> None:
    """Run the steps in order, each announced with its place: "check 3/14: full-model check on speech[1]"."""
    for number, (description, step) in enumerate(steps, 1):
        log(f"check {number}/{len(steps)}: {description}")
        step()


def _drift(parts: list[tuple[np.ndarray, np.ndarray]], spec: Specifications) -> Drift:
    to_probs = probabilities(spec)
    differences = np.concatenate([np.abs(to_probs(a) - to_probs(b)).ravel() for a, b in parts])
    agreements = np.concatenate(
        [(decide(to_probs(a), spec)[0] == decide(to_probs(b), spec)[0]).ravel() for a, b in parts]
    )
    return Drift(
        max_abs_probability=float(differences.max()),
        mean_abs_probability=float(differences.mean()),
        decision_agreement=float(agreements.mean()),
    )
