"""Write a model folder (weights, config, manifest) atomically: into a staging folder, then rename."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import mlx.core as mx

from mlx_segmentation.config import EmbeddingConfig, ModelConfig
from mlx_segmentation.loading import tensor_sha256
from mlx_segmentation.manifest import (
    CONFIG_FILE,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    Manifest,
    SourceRecord,
    TensorRecord,
    sha256_file,
)

from . import __version__
from .engine import Mapped
from .errors import OutputError
from .reader import SourceCheckpoint

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def refuse_existing(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputError(f"{out} already exists: pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")


@contextmanager
def staging_folder(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty folder beside `out`; move it to `out` only if the block succeeds."""
    refuse_existing(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / out.name)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_model(
    folder: Path, config: ModelConfig | EmbeddingConfig, mapped: Mapping[str, Mapped], source: SourceCheckpoint, dtype: str
) -> Manifest:
    """Write model.safetensors, config.json and manifest.json into `folder`."""
    weights = {name: mx.array(item.array).astype(DTYPES[dtype]) for name, item in sorted(mapped.items())}
    mx.eval(weights)
    mx.save_safetensors(str(folder / WEIGHTS_FILE), weights, metadata={"format": "mlx"})
    (folder / CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n")
    manifest = Manifest(
        converter_version=__version__,
        created=datetime.now(timezone.utc),
        source=SourceRecord(
            file_name=source.path.name,
            size=source.size,
            sha256=source.sha256,
            architecture=source.architecture,
            versions=source.versions,
        ),
        dtype=dtype,
        sincnet_filters=None if isinstance(config, EmbeddingConfig) else "precomputed",
        batchnorm="kept" if isinstance(config, EmbeddingConfig) else None,
        weights_sha256=sha256_file(folder / WEIGHTS_FILE),
        tensors={
            name: TensorRecord(
                source_keys=mapped[name].source_keys,
                rule=mapped[name].rule,
                transform=mapped[name].transform,
                shape=list(array.shape),
                dtype=dtype,
                sha256=tensor_sha256(array),
            )
            for name, array in weights.items()
        },
    )
    write_manifest(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")


def seal(folder: Path) -> Manifest:
    """Record the sha256 of every file beside the manifest, so that publishing can verify them all."""
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    manifest.files = {
        path.name: sha256_file(path) for path in sorted(folder.iterdir()) if path.is_file() and path.name != MANIFEST_FILE
    }
    write_manifest(folder, manifest)
    return manifest
