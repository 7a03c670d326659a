"""Read a pyannote.audio speaker-diarization pipeline folder: its config.yaml and the files it names.

Two layouts: speaker-diarization-community-1 (`$model/segmentation`, `$model/embedding`, `$model/plda`, VBx) and
speaker-diarization-3.1 (agglomerative clustering, no PLDA), with `$model/...` or paths relative to the folder.
`$model/NAME` means `NAME/pytorch_model.bin` for a model and `NAME/xvec_transform.npz` + `NAME/plda.npz` for the
PLDA, as pyannote.audio 4.0.7's `Pipeline.from_pretrained` expands it for a local folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mlx_segmentation.config import first_error
from mlx_segmentation.manifest import sha256_file
from mlx_segmentation.pipeline_config import AgglomerativeParams, VBxParams
from mlx_segmentation.pipeline_manifest import PipelineSource, SourceFile

from .errors import ConverterError

CONFIG_YAML = "config.yaml"
MODEL_FILE = "pytorch_model.bin"  # pyannote's AssetFileName.Model
PLDA_FILES = ("xvec_transform.npz", "plda.npz")
PIPELINE_NAMES = (
    "pyannote.audio.pipelines.SpeakerDiarization",
    "pyannote.audio.pipelines.speaker_diarization.SpeakerDiarization",
)
CLUSTERINGS = {"VBxClustering": VBxParams, "AgglomerativeClustering": AgglomerativeParams}
TOP_LEVEL_KEYS = {"version", "dependencies", "pipeline", "params"}
# SpeakerDiarization's arguments; `legacy` (the output's type) and `der_variant` (evaluation) change no speaker turn
PIPELINE_ARGUMENTS = {
    "segmentation",
    "segmentation_step",
    "embedding",
    "embedding_exclude_overlap",
    "plda",
    "clustering",
    "embedding_batch_size",
    "segmentation_batch_size",
    "der_variant",
    "legacy",
}
MAX_CONFIG_BYTES = 1 << 20


class PipelineSourceError(ConverterError):
    """The pipeline folder, its config.yaml or a file it names is missing or invalid."""


@dataclass(frozen=True)
class PipelineFolder:
    """A pyannote pipeline folder, read: where its files are, and its parameters as `DiarizationConfig` fields."""

    folder: Path
    segmentation: Path
    embedding: Path
    plda: tuple[Path, Path] | None  # (xvec_transform.npz, plda.npz), VBx only
    parameters: dict[str, Any]  # DiarizationConfig's fields, segmentation_threshold still to check against the model
    record: PipelineSource

    @property
    def clustering(self) -> str:
        return self.parameters["clustering"]["name"]


def read_pipeline_folder(folder: Path) -> PipelineFolder:
    """Parse `folder/config.yaml` and find every file it names; one `PipelineSourceError` for whatever is wrong."""
    config_path = folder / CONFIG_YAML
    if not folder.is_dir():
        raise PipelineSourceError(f"{folder}: no such pipeline folder")
    config = _read_yaml(config_path)
    unknown = sorted(set(config) - TOP_LEVEL_KEYS)
    if unknown:
        raise PipelineSourceError(
            f"{config_path}: unsupported top-level keys {unknown} (known: {sorted(TOP_LEVEL_KEYS)})"
        )
    pipeline = _mapping(config.get("pipeline"), config_path, "pipeline")
    if pipeline.get("name") not in PIPELINE_NAMES:
        raise PipelineSourceError(
            f"{config_path}: pipeline.name is {pipeline.get('name')!r}; only {PIPELINE_NAMES[0]} converts"
        )
    arguments = _mapping(pipeline.get("params", {}), config_path, "pipeline.params")
    unknown = sorted(set(arguments) - PIPELINE_ARGUMENTS)
    if unknown:
        raise PipelineSourceError(f"{config_path}: unknown pipeline.params {unknown}")
    clustering = arguments.get("clustering", "VBxClustering")
    if clustering not in CLUSTERINGS:
        raise PipelineSourceError(
            f"{config_path}: clustering {clustering!r} is not supported (only {', '.join(CLUSTERINGS)})"
        )
    params = _mapping(config.get("params"), config_path, "params")
    unknown = sorted(set(params) - {"segmentation", "clustering"})
    if unknown:
        raise PipelineSourceError(f"{config_path}: unknown params {unknown}")
    segmentation_params = _mapping(params.get("segmentation"), config_path, "params.segmentation")
    unknown = sorted(set(segmentation_params) - {"min_duration_off", "threshold"})
    if unknown:
        raise PipelineSourceError(f"{config_path}: unknown params.segmentation {unknown}")
    clustering_params = _mapping(params.get("clustering"), config_path, "params.clustering")
    try:
        clustering_params = CLUSTERINGS[clustering](name=clustering, **clustering_params).model_dump()
    except (ValidationError, TypeError) as error:
        detail = first_error(error) if isinstance(error, ValidationError) else str(error)
        raise PipelineSourceError(f"{config_path}: invalid params.clustering for {clustering} ({detail})") from None

    segmentation = _model_file(folder, arguments.get("segmentation"), "segmentation")
    embedding = _model_file(folder, arguments.get("embedding"), "embedding")
    plda = _plda_files(folder, arguments.get("plda")) if clustering == "VBxClustering" else None
    parameters = {
        "clustering": clustering_params,
        "segmentation_threshold": segmentation_params.get("threshold"),
        "min_duration_off": segmentation_params.get("min_duration_off", 0.0),
        **{
            key: arguments[key]
            for key in (
                "segmentation_step",
                "embedding_exclude_overlap",
                "segmentation_batch_size",
                "embedding_batch_size",
            )
            if key in arguments
        },
    }
    sources = [config_path, segmentation, embedding, *(plda or ())]
    record = PipelineSource(
        config_sha256=sha256_file(config_path),
        files={
            path.relative_to(folder).as_posix(): SourceFile(size=path.stat().st_size, sha256=sha256_file(path))
            for path in sources
        },
    )
    return PipelineFolder(folder, segmentation, embedding, plda, parameters, record)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise PipelineSourceError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes, not a pipeline config")
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineSourceError(f"{path}: missing (not a pyannote pipeline folder)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PipelineSourceError(f"{path}: cannot be read ({error})") from None
    except yaml.YAMLError as error:
        raise PipelineSourceError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    return _mapping(config, path, "the file")


def _mapping(value: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise PipelineSourceError(f"{path}: {what} must be a mapping with string keys, not {type(value).__name__}")
    return value


def _local_path(folder: Path, value: Any, what: str) -> tuple[Path, bool]:
    """The path a config value names inside `folder`, and whether it was `$model/...`."""
    if not isinstance(value, str) or not value:
        raise PipelineSourceError(f"{folder / CONFIG_YAML}: pipeline.params.{what} must be a path, not {value!r}")
    expanded = value.startswith("$model/")
    relative = value.removeprefix("$model/") if expanded else value
    if "@" in relative and expanded:
        raise PipelineSourceError(
            f"{folder / CONFIG_YAML}: {what} {value!r}: revisions cannot be used in a local folder"
        )
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise PipelineSourceError(
            f"{folder / CONFIG_YAML}: {what} {value!r} is not inside the pipeline folder "
            "(a Hub repo id or an outside path: download it into the folder and name it by a relative path)"
        )
    return folder / path.relative_to(folder.resolve()), expanded


def _model_file(folder: Path, value: Any, what: str) -> Path:
    path, expanded = _local_path(folder, value, what)
    if expanded or path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise PipelineSourceError(f"{path}: missing (the {what} model named by {folder / CONFIG_YAML})")
    return path


def _plda_files(folder: Path, value: Any) -> tuple[Path, Path]:
    path, _ = _local_path(folder, value, "plda")
    transform, plda = (path / name for name in PLDA_FILES)
    for file in (transform, plda):
        if not file.is_file():
            raise PipelineSourceError(f"{file}: missing (the PLDA named by {folder / CONFIG_YAML})")
    return transform, plda
