"""Load a converted model folder, verifying every file against the manifest before it is parsed."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from pydantic import TypeAdapter, ValidationError

from .families import CONFIG, AnyConfig, build_model
from .manifest import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, Manifest, sha256_bytes


class ModelLoadError(Exception):
    """A model folder that is missing, incomplete, inconsistent or tampered with."""


MODEL_FILES = [CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE]


def load(path_or_repo: str | Path, *, revision: str | None = None) -> nn.Module:
    """Load a converted model of any family from a folder or a Hub repo ("org/name"), verifying every
    file it reads and every tensor; returns its MLX module (`PyanNet`, `WeSpeakerResNet34`)."""
    folder = Path(path_or_repo)
    if not folder.is_dir():
        if isinstance(path_or_repo, Path) or not _looks_like_repo_id(str(path_or_repo)):
            raise ModelLoadError(f"{folder}: no such model folder")
        try:
            folder = download(str(path_or_repo), revision=revision)
        except ModelLoadError as error:
            raise ModelLoadError(f"no model folder {folder} here, nor on the Hub: {error}") from None
    return load_verified(folder)


def load_verified(folder: Path, hashed: dict[str, tuple[bytes, str]] | None = None) -> nn.Module:
    """Load a local model folder (`load`); `hashed`: files already read and hashed, name -> (bytes, sha256)."""
    verified = verify_folder(folder, hashed)
    config, weights = verified.config, verified.weights
    model = build_model(config)
    expected = dict(tree_flatten(model.parameters()))
    if set(expected) != set(weights):
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        raise ModelLoadError(f"{folder / WEIGHTS_FILE}: missing tensors {missing}, unexpected tensors {extra}")
    model.load_weights(list(weights.items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    return model


@dataclass(frozen=True)
class VerifiedFolder:
    """A model folder whose config and weights match the sha256 its manifest records for them."""

    manifest: Manifest
    config: AnyConfig
    weights: dict[str, mx.array]


def verify_folder(folder: Path, hashed: dict[str, tuple[bytes, str]] | None = None) -> VerifiedFolder:
    """Read the manifest, then each file it vouches for, hash-checked before it is parsed.

    `hashed` holds files a pipeline's manifest already verified (name -> (bytes, their sha256)): those
    are neither read nor hashed again, only their sha256 compared with this manifest's.
    """
    hashed = hashed or {}
    manifest_bytes = hashed[MANIFEST_FILE][0] if MANIFEST_FILE in hashed else _read_file(folder / MANIFEST_FILE)
    manifest = _parse(folder / MANIFEST_FILE, manifest_bytes, Manifest)
    config_bytes = _verified_bytes(folder, CONFIG_FILE, manifest.files.get(CONFIG_FILE), hashed)
    config = _parse(folder / CONFIG_FILE, config_bytes, CONFIG)
    weights_bytes = _verified_bytes(folder, WEIGHTS_FILE, manifest.weights_sha256, hashed)
    if manifest.files.get(WEIGHTS_FILE, manifest.weights_sha256) != manifest.weights_sha256:
        raise ModelLoadError(f"{folder / MANIFEST_FILE}: records two different sha256 for {WEIGHTS_FILE}")
    weights = _parse_weights(folder / WEIGHTS_FILE, weights_bytes)
    verify_tensors(weights, manifest, folder)
    return VerifiedFolder(manifest, config, weights)


def download(repo_id: str, revision: str | None = None, files: list[str] = MODEL_FILES) -> Path:
    """The files a model needs (or `files`), from the Hub into the standard Hub cache (or from that cache offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f" (revision {revision})" if revision else "")
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=files))
    except RepositoryNotFoundError:
        raise ModelLoadError(f"{where}: no such model on the Hub (or it is private and no token was given)") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"{where}: no such revision") from None
    except LocalEntryNotFoundError:
        raise ModelLoadError(f"{where}: not in the local Hub cache, and the Hub cannot be reached (offline?)") from None
    except (HfHubHTTPError, OSError) as error:
        raise ModelLoadError(f"{where}: download failed ({str(error).splitlines()[0]})") from None
    missing = [name for name in files if not (snapshot / name).is_file()]
    if missing:
        raise ModelLoadError(f"{where}: the repo has no {', '.join(missing)}")
    return snapshot


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def verify_tensors(weights: dict[str, mx.array], manifest: Manifest, folder: Path) -> None:
    """Refuse weights whose names, shapes, dtypes or bytes differ from the manifest."""
    if set(weights) != set(manifest.tensors):
        raise ModelLoadError(
            f"{folder / WEIGHTS_FILE}: tensors differ from the manifest "
            f"(missing {sorted(set(manifest.tensors) - set(weights))}, "
            f"unexpected {sorted(set(weights) - set(manifest.tensors))})"
        )
    for name, array in weights.items():
        record = manifest.tensors[name]
        if list(array.shape) != record.shape or str(array.dtype).removeprefix("mlx.core.") != record.dtype:
            raise ModelLoadError(
                f"{folder / WEIGHTS_FILE}: tensor {name} is {str(array.dtype)} {list(array.shape)}, "
                f"the manifest says {record.dtype} {record.shape}"
            )
        if tensor_sha256(array) != record.sha256:
            raise ModelLoadError(f"{folder / WEIGHTS_FILE}: tensor {name} does not match its sha256 in the manifest")


def tensor_sha256(array: mx.array) -> str:
    """sha256 of a tensor's bytes in C order (the bytes model.safetensors stores)."""
    mx.eval(array)
    return sha256_bytes(memoryview(array))


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing") from None
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot be read ({error.strerror or error})") from None


def _verified_bytes(folder: Path, name: str, sha256: str | None, hashed: dict[str, tuple[bytes, str]]) -> bytes:
    """A file's bytes, refused unless they hash to what the manifest records (`hashed`: known hashes)."""
    if sha256 is None:
        raise ModelLoadError(f"{folder / MANIFEST_FILE}: records no sha256 for {name} (not a sealed model folder)")
    if name in hashed:
        data, digest = hashed[name]
    else:
        data = _read_file(folder / name)
        digest = sha256_bytes(data)
    if digest != sha256:
        raise ModelLoadError(f"{folder / name}: does not match its sha256 in the manifest (changed or corrupted)")
    return data


def _parse(path: Path, data: bytes, model_type):
    """A pydantic model (or a TypeAdapter over several) validated from JSON bytes."""
    validate = model_type.validate_json if isinstance(model_type, TypeAdapter) else model_type.model_validate_json
    name = "config" if isinstance(model_type, TypeAdapter) else model_type.__name__
    try:
        return validate(data)
    except (ValidationError, ValueError) as error:
        first = str(error).splitlines()
        raise ModelLoadError(f"{path}: invalid {name} ({'; '.join(first[:3])})") from None


def _parse_weights(path: Path, data: bytes) -> dict[str, mx.array]:
    try:
        weights = mx.load(io.BytesIO(data), format="safetensors")
    except Exception as error:  # mlx raises plain RuntimeError/ValueError on malformed files
        raise ModelLoadError(
            f"{path}: truncated or not a safetensors file ({str(error).splitlines()[0][:200]})"
        ) from None
    if not isinstance(weights, dict):
        raise ModelLoadError(f"{path}: not a safetensors file")
    return weights
