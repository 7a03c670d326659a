"""Load a converted model folder, verifying every tensor against the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import mlx.core as mx
from mlx.utils import tree_flatten
from pydantic import Field, TypeAdapter, ValidationError

from .config import EmbeddingConfig, ModelConfig
from .manifest import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, Manifest, sha256_bytes
from .pyannet import PyanNet, frame_timing
from .wespeaker import WeSpeakerResNet34


class ModelLoadError(Exception):
    """A model folder that is missing, incomplete, inconsistent or tampered with."""


MODEL_FILES = [CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE]
AnyConfig = TypeAdapter(Annotated[ModelConfig | EmbeddingConfig, Field(discriminator="model_type")])


def load(path_or_repo: str | Path, *, revision: str | None = None) -> PyanNet | WeSpeakerResNet34:
    """Load a converted model (segmentation or embedding) from a folder or a Hub repo ("org/name"),
    verifying every tensor."""
    folder = Path(path_or_repo)
    if not folder.is_dir():
        if isinstance(path_or_repo, Path) or not _looks_like_repo_id(str(path_or_repo)):
            raise ModelLoadError(f"{folder}: no such model folder")
        folder = download(str(path_or_repo), revision=revision)
    config = _read_model(folder / CONFIG_FILE, AnyConfig)
    manifest = _read_model(folder / MANIFEST_FILE, Manifest)
    if isinstance(config, ModelConfig):
        expected_frames = frame_timing(config.sample_rate, config.sincnet.stride)
        if config.frames != expected_frames:
            raise ModelLoadError(f"{folder / CONFIG_FILE}: frame timing disagrees with the layers ({expected_frames})")

    weights = _read_weights(folder / WEIGHTS_FILE)
    verify_tensors(weights, manifest, folder)

    model = PyanNet(config) if isinstance(config, ModelConfig) else WeSpeakerResNet34(config)
    expected = dict(tree_flatten(model.parameters()))
    if set(expected) != set(weights):
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        raise ModelLoadError(f"{folder / WEIGHTS_FILE}: missing tensors {missing}, unexpected tensors {extra}")
    model.load_weights(list(weights.items()), strict=True)
    model.eval()
    mx.eval(model.parameters())
    return model


def download(repo_id: str, revision: str | None = None) -> Path:
    """The files a model needs, from the Hub into the standard Hub cache (or from that cache offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f" (revision {revision})" if revision else "")
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES))
    except RepositoryNotFoundError:
        raise ModelLoadError(f"{where}: no such model on the Hub (or it is private and no token was given)") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"{where}: no such revision") from None
    except LocalEntryNotFoundError:
        raise ModelLoadError(f"{where}: not in the local Hub cache, and the Hub cannot be reached (offline?)") from None
    except (HfHubHTTPError, OSError) as error:
        raise ModelLoadError(f"{where}: download failed ({str(error).splitlines()[0]})") from None
    missing = [name for name in MODEL_FILES if not (snapshot / name).is_file()]
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


def _read_model(path: Path, model_type):
    """A pydantic model (or a TypeAdapter over several) validated from a JSON file."""
    validate = model_type.validate_json if isinstance(model_type, TypeAdapter) else model_type.model_validate_json
    name = "config" if isinstance(model_type, TypeAdapter) else model_type.__name__
    try:
        return validate(path.read_bytes())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing") from None
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as error:
        first = str(error).splitlines()
        raise ModelLoadError(f"{path}: invalid {name} ({'; '.join(first[:3])})") from None


def _read_weights(path: Path) -> dict[str, mx.array]:
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing")
    try:
        weights = mx.load(str(path))
    except Exception as error:  # mlx raises plain RuntimeError/ValueError on malformed files
        raise ModelLoadError(f"{path}: truncated or not a safetensors file ({error})") from None
    if not isinstance(weights, dict):
        raise ModelLoadError(f"{path}: not a safetensors file")
    return weights
