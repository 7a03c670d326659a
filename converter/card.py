"""The model card (`README.md` with Hub metadata) written into every checked model folder."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from mlx_segmentation.config import EmbeddingConfig
from mlx_segmentation.loading import AnyConfig
from mlx_segmentation.manifest import CHECKS_FILE, CONFIG_FILE, MANIFEST_FILE, Manifest

from .recipe import Recipe

TAGS = ["mlx", "pyannote", "speaker-segmentation", "speaker-diarization"]
TASK = "voice-activity-detection"
PYPI_NAME = "mlx-segmentation"


def render_card(folder: Path, recipe: Recipe | None, repo_id: str | None = None) -> str:
    """The card's text: Hub YAML metadata, what the model is, usage, parity, provenance, license."""
    config = AnyConfig.validate_json((folder / CONFIG_FILE).read_text())
    if isinstance(config, EmbeddingConfig):
        return render_embedding_card(folder, recipe, repo_id)
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    spec = config.specifications
    data = ModelCardData(
        library_name="mlx",
        license=recipe.license if recipe else "other",
        base_model=recipe.base_model if recipe else None,
        pipeline_tag=TASK,
        tags=[*TAGS, TASK],
    )
    name = repo_id or (recipe.target_repo if recipe else folder.name)
    kind = f"powerset, {spec.num_outputs} classes (at most {spec.powerset_max_classes} speakers at once)" if spec.powerset else "multilabel"
    source = f"[{recipe.base_model}](https://huggingface.co/{recipe.base_model})" if recipe else f"`{manifest.source.file_name}`"
    body = f"""
# {name}

{recipe.description if recipe else "A pyannote.audio PyanNet speaker-segmentation model"}, converted from PyTorch
to [MLX](https://github.com/ml-explore/mlx) from {source}, and checked against genuine pyannote.audio.

| | |
| --- | --- |
| classes | {", ".join(spec.classes)} ({kind}) |
| output | {"log-probabilities (log-softmax)" if spec.activation == "log_softmax" else "probabilities (sigmoid)"}, shaped (batch, frames, {spec.num_outputs}) |
| window | {spec.duration:g} s at {config.sample_rate} Hz |
| frame step | {config.frames.step_samples} samples ({config.frames.step:g} s); receptive field {config.frames.receptive_field_size} samples |
| architecture | SincNet, LSTM {config.lstm.num_layers} x {config.lstm.hidden_size} ({"bidirectional" if config.lstm.bidirectional else "unidirectional"}), {config.linear.num_layers} linear layers |
| weights | {manifest.dtype} |

## Usage

```python
# pip install {PYPI_NAME}
import mlx.core as mx
import mlx_segmentation
from mlx_segmentation.speech import detect_speech

model = mlx_segmentation.load("{name}")
scores = model(mx.zeros((1, {int(spec.duration * config.sample_rate)})))  # (batch, samples) -> (batch, frames, classes)
speech = detect_speech(model, "meeting.wav")  # whole recordings: speech regions, as pyannote's pipeline
```

or from the command line: `python -m mlx_segmentation meeting.wav --model {name} --rttm meeting.rttm`.

## Parity with pyannote.audio

{_parity(folder)}

## Provenance

- source: `{manifest.source.file_name}`, sha256 `{manifest.source.sha256}`, {manifest.source.size:,} bytes
- recorded versions: {", ".join(f"{k} {v}" for k, v in manifest.source.versions.items())}
- converter: {PYPI_NAME} {manifest.converter_version}, on {manifest.created:%Y-%m-%d}
- every tensor's source keys, mapping rule and sha256 are in `{MANIFEST_FILE}`; every check is in `{CHECKS_FILE}`

## License and attribution

{_license(recipe)}
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


EMBEDDING_TAGS = ["mlx", "pyannote", "speaker-embedding", "speaker-verification", "speaker-diarization"]
EMBEDDING_TASK = "feature-extraction"


def render_embedding_card(folder: Path, recipe: Recipe | None, repo_id: str | None = None) -> str:
    """The card of a speaker-embedding model (WeSpeakerResNet34)."""
    from checks.embedding import EmbeddingCheckReport

    config = EmbeddingConfig.model_validate_json((folder / CONFIG_FILE).read_text())
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    report = EmbeddingCheckReport.model_validate_json((folder / CHECKS_FILE).read_text())
    data = ModelCardData(
        library_name="mlx",
        license=recipe.license if recipe else "other",
        base_model=recipe.base_model if recipe else None,
        pipeline_tag=EMBEDDING_TASK,
        tags=EMBEDDING_TAGS,
    )
    name = repo_id or (recipe.target_repo if recipe else folder.name)
    source = f"[{recipe.base_model}](https://huggingface.co/{recipe.base_model})" if recipe else f"`{manifest.source.file_name}`"
    f, r = config.fbank, config.resnet
    rows = ["| input | max \\|MLX − pyannote float64\\| | pyannote float32's own error | lowest cosine with pyannote float32 |", "| --- | --- | --- | --- |"]
    rows += [f"| {c.input} | {c.max_abs_vs_float64:.1e} | {c.reference_float32_error:.1e} | {c.min_cosine:.8f} |" for c in report.full_model]
    status = "All checks passed" if report.passed else f"Checks FAILED (first failure: {report.first_failure})"
    body = f"""
# {name}

{recipe.description if recipe else "pyannote.audio's WeSpeakerResNet34 speaker-embedding model"}, converted from PyTorch
to [MLX](https://github.com/ml-explore/mlx) from {source}, and checked against {report.reference}.

| | |
| --- | --- |
| output | {r.embed_dim}-dimensional speaker embeddings, shaped (batch, {r.embed_dim}); (batch, speakers, {r.embed_dim}) with per-speaker frame weights |
| input | (batch, samples) at {config.sample_rate} Hz, any length from 0.105 s |
| front end | kaldi fbank, {f.num_mel_bins} mel bins, {f.frame_length:g} ms frames every {f.frame_shift:g} ms, {f.window_type} window, mean over time removed |
| architecture | ResNet34 ({"-".join(map(str, r.num_blocks))} basic blocks, {r.m_channels} base channels), statistics pooling (mean, standard deviation), one linear layer; batch norms {manifest.batchnorm} |
| weights | {manifest.dtype} |

## Usage

```python
# pip install {PYPI_NAME}
import mlx.core as mx
import mlx_segmentation

model = mlx_segmentation.load("{name}")
embeddings = model(mx.zeros((2, 3 * {config.sample_rate})))  # (batch, samples) -> (batch, {r.embed_dim})
```

## Parity with pyannote.audio

{status}: {report.summary()}

{chr(10).join(rows)}

## Provenance

- source: `{manifest.source.file_name}`, sha256 `{manifest.source.sha256}`, {manifest.source.size:,} bytes
- converter: {PYPI_NAME} {manifest.converter_version}, on {manifest.created:%Y-%m-%d}
- every tensor's source keys, mapping rule and sha256 are in `{MANIFEST_FILE}`; every check is in `{CHECKS_FILE}`

## License and attribution

{_license(recipe)}
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def _parity(folder: Path) -> str:
    from checks.report import CheckReport  # the report's schema lives with the checks

    report = CheckReport.model_validate_json((folder / CHECKS_FILE).read_text())
    rows = [
        "| input | max \\|MLX − pyannote float64\\| | pyannote float32's own error | Pearson vs float32 | decisions differing |",
        "| --- | --- | --- | --- | --- |",
    ]
    for check in report.full_model:
        o = check.output
        rows.append(f"| {check.input} | {o.max_abs_vs_float64:.1e} | {o.reference_float32_error:.1e} | {o.pearson:.7f} | {check.decisions.mismatches} |")
    for p in report.pipeline:
        rows.append("")
        rows.append(
            f"Speech detection on `{p.recording}.wav` ({p.duration:.0f} s) against pyannote's VoiceActivityDetection: scores max |diff| "
            f"{p.max_abs_score_diff:.1e}, detection error {100 * p.detection_error_vs_pyannote:.2f}%, {p.regions} regions (pyannote {p.reference_regions})."
        )
    status = "All checks passed" if report.passed else f"Checks FAILED (first failure: {report.first_failure})"
    return (
        f"{status}: {len(report.components)} component and {len(report.full_model)} full-model checks against "
        f"{report.reference} {report.versions.get('pyannote.audio', '')}, mlx {report.versions.get('mlx', '')}, "
        f"on {report.platform}.\n\n" + "\n".join(rows)
    )


def _license(recipe: Recipe | None) -> str:
    if recipe is None:
        return "The license of the source checkpoint applies; it was not recorded at conversion."
    return (
        f"The weights are those of [{recipe.base_model}](https://huggingface.co/{recipe.base_model}), released under the "
        f"`{recipe.license}` license by its authors (pyannote.audio, Hervé Bredin and contributors); this conversion is "
        f"distributed under the same license. Please cite pyannote.audio when you use it."
    )
