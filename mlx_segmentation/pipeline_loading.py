"""Load a converted speaker-diarization pipeline folder, verifying every file against its manifest first."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors

from .loading import ModelLoadError, _looks_like_repo_id, _parse, _read_file, download, load_verified
from .manifest import sha256_bytes
from .pipeline_config import EMBEDDING_FOLDER, PIPELINE_CONFIG_FILE, PLDA_FILE, SEGMENTATION_FOLDER, DiarizationConfig
from .pipeline_manifest import PIPELINE_MANIFEST_FILE, PipelineManifest
from .plda import PLDA, PLDA_NAMES, expected_shapes
from .pyannet import PyanNet
from .wespeaker import WeSpeakerResNet34

if TYPE_CHECKING:
    from .pipeline import SpeakerDiarization


class PipelineParts(NamedTuple):
    """A pipeline folder's verified contents."""

    segmentation: PyanNet
    embedding: WeSpeakerResNet34
    config: DiarizationConfig
    plda: PLDA | None  # VBx clustering only
    manifest: PipelineManifest


def load_pipeline(path_or_repo: str | Path, *, revision: str | None = None) -> SpeakerDiarization:
    """The speaker-diarization pipeline of a folder or a Hub repo ("org/name"), every file verified."""
    from .pipeline import SpeakerDiarization

    parts = load_pipeline_parts(path_or_repo, revision=revision)
    return SpeakerDiarization(parts.segmentation, parts.embedding, parts.config, parts.plda)


def load_pipeline_parts(path_or_repo: str | Path, *, revision: str | None = None) -> PipelineParts:
    """Verify every file the manifest records (and that it records every file), then load the parts."""
    folder = Path(path_or_repo)
    local = folder.is_dir()
    if not local:
        if isinstance(path_or_repo, Path) or not _looks_like_repo_id(str(path_or_repo)):
            raise ModelLoadError(f"{folder}: no such pipeline folder")
        folder = _download(str(path_or_repo), revision)
    manifest = _parse(folder / PIPELINE_MANIFEST_FILE, _read_file(folder / PIPELINE_MANIFEST_FILE), PipelineManifest)
    verified = verify_pipeline_files(folder, manifest, refuse_extra=local)
    config = _parse(folder / PIPELINE_CONFIG_FILE, _required(verified, PIPELINE_CONFIG_FILE, folder), DiarizationConfig)
    segmentation = load_verified(folder / SEGMENTATION_FOLDER, _inside(verified, manifest, SEGMENTATION_FOLDER))
    embedding = load_verified(folder / EMBEDDING_FOLDER, _inside(verified, manifest, EMBEDDING_FOLDER))
    if not isinstance(segmentation, PyanNet) or not isinstance(embedding, WeSpeakerResNet34):
        raise ModelLoadError(
            f"{folder}: {SEGMENTATION_FOLDER}/ must hold a PyanNet, {EMBEDDING_FOLDER}/ a WeSpeaker model"
        )
    plda = None
    if config.clustering.name == "VBxClustering":
        dimension = embedding.config.resnet.embed_dim
        plda = PLDA(**_plda_arrays(folder / PLDA_FILE, _required(verified, PLDA_FILE, folder), dimension))
    elif PLDA_FILE in verified:
        raise ModelLoadError(f"{folder / PLDA_FILE}: a PLDA, but the pipeline's clustering is {config.clustering.name}")
    return PipelineParts(segmentation, embedding, config, plda, manifest)


def _download(repo_id: str, revision: str | None) -> Path:
    """The manifest, then exactly the files it records (the hashes are checked once they are here)."""
    try:
        snapshot = download(repo_id, revision, files=[PIPELINE_MANIFEST_FILE])
        manifest = _parse(
            snapshot / PIPELINE_MANIFEST_FILE, _read_file(snapshot / PIPELINE_MANIFEST_FILE), PipelineManifest
        )
        return download(repo_id, revision, files=[PIPELINE_MANIFEST_FILE, *sorted(manifest.files)])
    except ModelLoadError as error:
        raise ModelLoadError(f"no pipeline folder {repo_id} here, nor on the Hub: {error}") from None


def verify_pipeline_files(folder: Path, manifest: PipelineManifest, refuse_extra: bool = True) -> dict[str, bytes]:
    """Every recorded file's bytes, each refused unless it hashes to its record; unrecorded files refused too."""
    verified = {}
    for name, sha256 in sorted(manifest.files.items()):
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ModelLoadError(f"{folder / PIPELINE_MANIFEST_FILE}: records a path outside the folder ({name!r})")
        data = _read_file(folder / relative)
        if sha256_bytes(data) != sha256:
            raise ModelLoadError(f"{folder / relative}: does not match its sha256 in the pipeline manifest (changed?)")
        verified[name] = data
    if refuse_extra:
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()}
        extra = sorted(present - set(manifest.files) - {PIPELINE_MANIFEST_FILE})
        if extra:
            raise ModelLoadError(f"{folder}: files the pipeline manifest does not record: {', '.join(extra[:5])}")
    return verified


def _inside(verified: dict[str, bytes], manifest: PipelineManifest, subfolder: str) -> dict[str, tuple[bytes, str]]:
    """The verified files of one model subfolder, by name inside it, with the sha256 they were checked against."""
    prefix = f"{subfolder}/"
    return {
        name.removeprefix(prefix): (data, manifest.files[name])
        for name, data in verified.items()
        if name.startswith(prefix)
    }


def _required(verified: dict[str, bytes], name: str, folder: Path) -> bytes:
    if name not in verified:
        raise ModelLoadError(f"{folder / PIPELINE_MANIFEST_FILE}: records no {name} (not a sealed pipeline folder)")
    return verified[name]


def _plda_arrays(path: Path, data: bytes, dimension: int) -> dict[str, np.ndarray]:
    """mean1 (D,), mean2 (L,), lda (D, L), mu (L,), tr (L, L), psi (L,), float64, D the embeddings' dimension."""
    try:
        arrays = load_safetensors(data)
    except (SafetensorError, ValueError) as error:
        raise ModelLoadError(f"{path}: not a safetensors file ({str(error)[:200]})") from None
    if set(arrays) != set(PLDA_NAMES):
        raise ModelLoadError(f"{path}: holds {sorted(arrays)}, expected {list(PLDA_NAMES)}")
    shapes = expected_shapes(arrays, dimension)
    for name, array in arrays.items():
        if array.dtype != np.float64 or array.shape != shapes[name] or not np.isfinite(array).all():
            raise ModelLoadError(
                f"{path}: {name} is {array.dtype} {array.shape}, not finite float64 as the pipeline needs"
            )
    return arrays
