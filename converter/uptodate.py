"""Whether an existing output folder already holds the build asked for, so that building again skips it."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from mlx_segmentation.loading import ModelLoadError
from mlx_segmentation.manifest import MANIFEST_FILE, Manifest, sha256_file
from mlx_segmentation.pipeline_config import EMBEDDING_FOLDER, SEGMENTATION_FOLDER
from mlx_segmentation.pipeline_loading import verify_pipeline_files
from mlx_segmentation.pipeline_manifest import PIPELINE_MANIFEST_FILE, PipelineManifest

from . import __version__
from .errors import CheckpointError, OutputError
from .pipeline_source import PipelineFolder
from .publish import PublishError, verify_for_publishing


def current_build(out: Path, source_sha256: str, dtype: str) -> Manifest:
    """The manifest of the folder `out` if it holds this build: converted from these source bytes, by this
    converter, in this dtype, its checks passed, every file as sealed; else an `OutputError` naming the difference.

    Reads the manifest and hashes the files; converts and checks nothing."""
    try:
        manifest = Manifest.model_validate_json((out / MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        raise _refusal(out, f"is not a model folder (no {MANIFEST_FILE})") from None
    except (OSError, ValidationError):
        raise _refusal(out, f"is not a model folder (its {MANIFEST_FILE} is unreadable or invalid)") from None
    if manifest.source.sha256 != source_sha256:
        raise _refusal(
            out, f"differs: converted from source sha256 {manifest.source.sha256[:12]}..., not {source_sha256[:12]}..."
        )
    if manifest.converter_version != __version__:
        raise _refusal(out, f"differs: built by converter {manifest.converter_version}, this is {__version__}")
    if manifest.dtype != dtype:
        raise _refusal(out, f"differs: its weights are {manifest.dtype}, not {dtype}")
    if manifest.checks is None:
        raise _refusal(out, "was built with --no-checks")
    if not manifest.checks.passed:
        raise _refusal(out, "its checks did not pass")
    try:
        verify_for_publishing(out)
    except PublishError as error:
        raise _refusal(out, f"was changed since it was sealed ({error})") from None
    return manifest


def source_sha256(checkpoint: Path) -> str:
    """The sha256 a build of `checkpoint` records; a one-line error if it cannot be read."""
    try:
        return sha256_file(checkpoint)
    except FileNotFoundError:
        raise CheckpointError(f"{checkpoint}: no such file") from None
    except OSError as error:
        raise CheckpointError(f"{checkpoint}: cannot be read ({error.strerror or error})") from None


def _refusal(out: Path, reason: str) -> OutputError:
    return OutputError(f"{out} exists and {reason}; pass --force to replace it")


def current_pipeline(out: Path, source: PipelineFolder, dtype: str) -> PipelineManifest:
    """The pipeline manifest of `out` if it holds this pipeline build: the same source files, by this converter,
    both models up to date (checked, passed, as sealed), the pipeline checks passed, every file as sealed."""
    try:
        manifest = PipelineManifest.model_validate_json((out / PIPELINE_MANIFEST_FILE).read_bytes())
    except FileNotFoundError:
        raise _refusal(out, f"is not a pipeline folder (no {PIPELINE_MANIFEST_FILE})") from None
    except (OSError, ValidationError):
        raise _refusal(out, f"is not a pipeline folder ({PIPELINE_MANIFEST_FILE} unreadable or invalid)") from None
    if manifest.source != source.record:
        built, given = manifest.source.files, source.record.files
        names = sorted(name for name in set(built) | set(given) if built.get(name) != given.get(name))
        raise _refusal(out, f"differs: converted from other sources ({', '.join(names)})")
    if manifest.converter_version != __version__:
        raise _refusal(out, f"differs: built by converter {manifest.converter_version}, this is {__version__}")
    for folder, checkpoint in ((SEGMENTATION_FOLDER, source.segmentation), (EMBEDDING_FOLDER, source.embedding)):
        current_build(out / folder, source.record.files[checkpoint.relative_to(source.folder).as_posix()].sha256, dtype)
    if manifest.checks is None:
        raise _refusal(out, "was built without the pipeline checks")
    if not manifest.checks.passed:  # not written by this converter, which refuses to seal a failing pipeline
        raise _refusal(out, "its pipeline checks did not pass")
    try:
        verify_pipeline_files(out, manifest)
    except ModelLoadError as error:
        raise _refusal(out, f"was changed since it was sealed ({error})") from None
    return manifest
