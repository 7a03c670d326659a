"""One pipeline build: a pyannote speaker-diarization folder to an MLX pipeline folder, atomically.

The folder holds `segmentation/` and `embedding/` (model folders, as `build` writes them), `plda.safetensors`
(VBx only), `pipeline.json` (`DiarizationConfig`), `checks.json` (the pipeline checks' report, when they ran and
passed: a failing pipeline is not written), `README.md` and the pipeline `manifest.json`, sealed last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
from pydantic import ValidationError
from safetensors.numpy import save_file

from mlx_segmentation.config import PyanNetConfig, WeSpeakerConfig, first_error
from mlx_segmentation.manifest import CARD_FILE, CHECKS_FILE, sha256_file
from mlx_segmentation.pipeline_config import (
    EMBEDDING_FOLDER,
    PIPELINE_CONFIG_FILE,
    PLDA_FILE,
    SEGMENTATION_FOLDER,
    DiarizationConfig,
)
from mlx_segmentation.pipeline_manifest import PIPELINE_MANIFEST_FILE, PipelineChecks, PipelineManifest

from . import __version__
from .build import BuildResult, Checker, build
from .errors import ConverterError
from .families import model_config
from .pipeline_card import render_pipeline_card
from .pipeline_source import PipelineFolder, PipelineSourceError, read_pipeline_folder
from .plda_source import check_dimension, read_plda
from .reader import SourceCheckpoint, read_checkpoint
from .writer import output_lock, staging_folder

ModelConfig = TypeVar("ModelConfig", PyanNetConfig, WeSpeakerConfig)


class PipelineReport(Protocol):
    """What a pipeline build needs of the pipeline checks' report."""

    passed: bool

    def summary(self) -> str: ...

    def table(self) -> str: ...

    def model_dump_json(self, *, indent: int) -> str: ...


class PipelineChecksFailed(ConverterError):
    """The pipeline checks ran and failed: nothing was written."""

    def __init__(self, report: PipelineReport):
        super().__init__(f"the pipeline checks failed, nothing written: {report.summary()}")
        self.report = report


PipelineChecker = Callable[[Path, PipelineFolder], PipelineReport]  # (the written pipeline folder, its source)


@dataclass(frozen=True)
class PipelineResult:
    out: Path
    manifest: PipelineManifest
    segmentation: BuildResult
    embedding: BuildResult
    report: PipelineReport | None  # the pipeline checks' report, if they ran


def build_pipeline(
    pipeline_dir: Path,
    out: Path,
    *,
    force: bool = False,
    dtype: str = "float32",
    check: Checker | None = None,
    check_pipeline: PipelineChecker | None = None,
    log: Callable[[str], None] = print,
) -> PipelineResult:
    """Convert the pyannote pipeline folder `pipeline_dir` into `out`; each model checked by `check`, the
    pipeline by `check_pipeline`, where given."""
    log(f"reading {pipeline_dir}")
    source = read_pipeline_folder(pipeline_dir)
    plda = read_plda(*source.plda) if source.plda else None
    # Everything the folder says is checked before either model is converted.
    log(f"reading {source.segmentation} and {source.embedding}")
    segmentation_source = read_checkpoint(source.segmentation)
    embedding_source = read_checkpoint(source.embedding)
    config = diarization_config(source, _source_config(segmentation_source, source.segmentation, PyanNetConfig))
    embedding_config = _source_config(embedding_source, source.embedding, WeSpeakerConfig)
    if plda is not None:
        check_dimension(plda, embedding_config.resnet.embed_dim, source.plda[0])
    with output_lock(out, force, protected=[pipeline_dir]) as target, staging_folder(target) as staging:
        options = {"dtype": dtype, "check": check, "log": log}
        segmentation = build(source.segmentation, staging / SEGMENTATION_FOLDER, source=segmentation_source, **options)
        embedding = build(source.embedding, staging / EMBEDDING_FOLDER, source=embedding_source, **options)
        if plda is not None:
            save_file({name: np.ascontiguousarray(array) for name, array in plda.items()}, str(staging / PLDA_FILE))
        (staging / PIPELINE_CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n")
        manifest = PipelineManifest(
            converter_version=__version__, created=datetime.now(timezone.utc), source=source.record
        )
        report = None
        if check_pipeline is not None:
            seal_pipeline(staging, manifest)  # the checks load the folder as users do, verifying every hash
            log("running pipeline checks")
            report = check_pipeline(staging, source)
            if not report.passed:
                raise PipelineChecksFailed(report)
            (staging / CHECKS_FILE).write_text(report.model_dump_json(indent=2) + "\n")
            manifest.checks = PipelineChecks(passed=report.passed, summary=report.summary())
        (staging / CARD_FILE).write_text(render_pipeline_card(config, manifest, target.name))
        manifest = seal_pipeline(staging, manifest)
    return PipelineResult(out, manifest, segmentation, embedding, report)


def diarization_config(source: PipelineFolder, segmentation: PyanNetConfig) -> DiarizationConfig:
    """`pipeline.json`, from config.yaml's parameters; a segmentation threshold exactly where the model needs one."""
    threshold = source.parameters["segmentation_threshold"]
    where = source.folder / "config.yaml"
    if segmentation.specifications.powerset and threshold is not None:
        raise PipelineSourceError(
            f"{where}: params.segmentation.threshold is for multilabel models; this one is powerset"
        )
    if not segmentation.specifications.powerset and threshold is None:
        raise PipelineSourceError(f"{where}: the segmentation model is multilabel: params.segmentation needs threshold")
    try:
        return DiarizationConfig.model_validate(source.parameters)
    except ValidationError as error:
        raise PipelineSourceError(f"{where}: invalid pipeline parameters ({first_error(error)})") from None


def seal_pipeline(folder: Path, manifest: PipelineManifest) -> PipelineManifest:
    """Record the sha256 of every file in the folder (sub-folders included) but the pipeline manifest itself."""
    manifest.files = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != PIPELINE_MANIFEST_FILE
    }
    (folder / PIPELINE_MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest


def _source_config(source: SourceCheckpoint, checkpoint: Path, kind: type[ModelConfig]) -> ModelConfig:
    """The checkpoint's config (every hyper-parameter validated), refused if of the wrong family."""
    config = model_config(source)
    if not isinstance(config, kind):
        needed = kind.model_fields["model_type"].default
        raise ConverterError(f"{checkpoint}: a {config.model_type} model, where the pipeline needs a {needed} model")
    return config
