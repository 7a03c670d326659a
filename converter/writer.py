"""Write a model folder (weights, config, manifest) atomically: into a staging folder, then rename."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import mlx.core as mx

from mlx_segmentation.families import AnyConfig
from mlx_segmentation.loading import tensor_sha256
from mlx_segmentation.manifest import (
    CHECKS_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ChecksSummary,
    Manifest,
    SourceRecord,
    TensorRecord,
    sha256_file,
)

from . import __version__
from .engine import Mapped
from .errors import OutputError
from .families import converter_family
from .reader import SourceCheckpoint

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def check_output(out: Path, force: bool, protected: Sequence[Path] = ()) -> Path:
    """Refuse, before any work, an output folder that cannot or must not be written; return it absolute."""
    out = check_output_path(out, protected)
    if out.exists() and not force:
        raise OutputError(f"{out} already exists: pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    ancestor = next(parent for parent in out.parents if parent.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: cannot create it in {ancestor} (not a writable folder)")
    return out


def check_output_path(out: Path, protected: Sequence[Path] = ()) -> Path:
    """Refuse an output path that must never be written, whatever it holds; return it absolute."""
    for path in (out, *protected):
        try:
            os.fsencode(path).decode("utf-8")
        except UnicodeDecodeError:
            raise OutputError(f"{os.fsdecode(path)!r}: the path is not valid UTF-8") from None
    out = Path(os.path.abspath(out))
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link: give the real folder")
    cwd = Path.cwd()
    if out == cwd or out in cwd.parents:
        raise OutputError(f"{out} holds the current folder: choose another output folder")
    for path in protected:
        if out in Path(os.path.abspath(path)).parents:
            raise OutputError(f"{out} holds {path}, which the build reads: choose another output folder")
    return out


@contextmanager
def output_lock(out: Path, force: bool, protected: Sequence[Path] = ()) -> Iterator[Path]:
    """Hold `out` for one build: its parents created, an exclusive lock beside it, stale staging from a
    crashed build cleared (a folder a crash took away during --force is put back), then checked."""
    out = check_output(out, force, protected)
    created = [parent for parent in reversed(out.parents) if not parent.exists()]
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"{out}: cannot create {out.parent} ({error.strerror})") from None
        with _exclusive(out.parent / f".{out.name}.lock", out):
            _recover_staging(out)
            check_output(out, force)
            yield out
    except BaseException:
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only if still empty
        raise


@contextmanager
def _exclusive(lock_path: Path, out: Path) -> Iterator[None]:
    """An `fcntl` lock on `lock_path`, removed afterwards; a second holder is refused, not queued."""
    while True:
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(f"{out}: cannot create its lock file ({error.strerror})") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise OutputError(f"{out}: another build is writing it right now") from None
        try:  # the previous holder may have removed the file between our open and our lock
            if os.stat(lock_path).st_ino == os.fstat(descriptor).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(descriptor)


def _staging_pattern(out: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(out.name)}\.\d+\.[^.]+\.(partial|old)")


def _recover_staging(out: Path) -> None:
    """Under the lock, every staging folder of `out` is a crashed build's: put back an old folder that
    --force had moved aside if `out` is gone, and remove the rest."""
    pattern = _staging_pattern(out)
    stale = sorted((p for p in out.parent.iterdir() if pattern.fullmatch(p.name)), key=lambda p: p.stat().st_mtime)
    old = [p for p in stale if p.name.endswith(".old")]
    if old and not out.exists():
        old[-1].rename(out)
        stale.remove(old[-1])
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """Yield an empty folder beside `out` (which `output_lock` holds); it replaces `out` only if the
    block succeeds. A crash at any point leaves `out` as it was, or restorable by the next build."""
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".partial", dir=out.parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide a model folder from its other users
        yield staging
        if out.exists():
            old = staging.with_name(staging.name.removesuffix(".partial") + ".old")
            out.rename(old)
            try:
                staging.rename(out)
            except BaseException:
                old.rename(out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_model(
    folder: Path, config: AnyConfig, mapped: Mapping[str, Mapped], source: SourceCheckpoint, dtype: str
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
        model_type=config.model_type,
        conversion=converter_family(config.model_type).conversion,
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
    return seal(folder)


def record_checks(folder: Path, report) -> Manifest:
    """Write the report as checks.json, and its outcome into the manifest, tied to the weights it checked."""
    (folder / CHECKS_FILE).write_text(report.model_dump_json(indent=2) + "\n")
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    manifest.checks = ChecksSummary(
        passed=report.passed, weights_sha256=report.weights_sha256, summary=report.summary()
    )
    write_manifest(folder, manifest)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")


def seal(folder: Path) -> Manifest:
    """Record the sha256 of every file beside the manifest, so that publishing can verify them all."""
    manifest = Manifest.model_validate_json((folder / MANIFEST_FILE).read_text())
    manifest.files = {
        path.name: sha256_file(path)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST_FILE
    }
    write_manifest(folder, manifest)
    return manifest
