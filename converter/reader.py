"""Read a PyTorch checkpoint without running code from it.

A checkpoint is a zip holding `data.pkl` and one file per tensor storage. The pickle is read by an
unpickler that resolves only an allow-list of globals: the functions that rebuild tensors, plain
containers, and the records that pyannote.audio, Lightning and omegaconf store, which are rebuilt as
inert data. Anything else is refused by name before it could be called.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlx_segmentation.manifest import sha256_file

from .errors import CheckpointError, ForbiddenGlobalError

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

# pyannote.audio.core.task's enums, by value (pyannote/audio/core/task.py).
PYANNOTE_ENUMS = {
    "Problem": {
        0: "BINARY_CLASSIFICATION",
        1: "MONO_LABEL_CLASSIFICATION",
        2: "MULTI_LABEL_CLASSIFICATION",
        3: "REPRESENTATION",
        4: "REGRESSION",
    },
    "Resolution": {1: "FRAME", 2: "CHUNK"},
}


@dataclass(frozen=True)
class StorageType:
    """Stands in for `torch.FloatStorage` and friends: only its dtype matters."""

    dtype: Any


class TorchVersion(str):
    """Stands in for `torch.torch_version.TorchVersion`, a str subclass."""


class InertRecord:
    """Stands in for a stored object (a pyannote `Specifications`, an omegaconf node): data only."""

    global_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})

    def __repr__(self) -> str:
        return f"<{self.global_name} {self.fields()}>"

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "args"}


@dataclass(frozen=True)
class EnumValue:
    """Stands in for a member of a stored enum, e.g. pyannote's `Problem.MULTI_LABEL_CLASSIFICATION`."""

    enum: str
    name: str


def _record_type(global_name: str) -> type[InertRecord]:
    return type(global_name.rsplit(".", 1)[-1], (InertRecord,), {"global_name": global_name})


def _enum_type(enum: str):
    def make(value: int) -> EnumValue:
        names = PYANNOTE_ENUMS[enum]
        if value not in names:
            raise CheckpointError(f"unknown pyannote {enum} value {value!r}")
        return EnumValue(enum, names[value])

    return make


RECORD_GLOBALS = [
    "pyannote.audio.core.task.Specifications",
    "pyannote.audio.core.model.Introspection",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
]


@dataclass
class _TensorFactory:
    """The tensor-rebuilding globals, reading storages from the zip archive."""

    archive: zipfile.ZipFile
    prefix: str
    big_endian: bool
    storages: dict[str, np.ndarray] = field(default_factory=dict)

    def storage(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r:.80}")
        if key not in self.storages:
            name = f"{self.prefix}data/{key}"
            try:
                raw = self.archive.read(name)
            except KeyError:
                raise CheckpointError(f"storage {name} is missing from the archive") from None
            dtype = np.dtype(storage_type.dtype).newbyteorder(">" if self.big_endian else "<")
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointError(f"storage {name} is truncated ({len(raw)} bytes for {numel} elements)")
            self.storages[key] = np.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="))
        return self.storages[key]

    @staticmethod
    def rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
        if not isinstance(storage, np.ndarray):
            raise CheckpointError("tensor rebuilt from something that is not a storage")
        size, stride = tuple(size), tuple(stride)
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride) if n > 0)
        if any(n == 0 for n in size):
            return np.zeros(size, dtype=storage.dtype)
        if storage_offset < 0 or last >= storage.size:
            raise CheckpointError("tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            storage[storage_offset:], shape=size, strides=[s * storage.itemsize for s in stride]
        )
        return np.array(view, copy=True)

    @staticmethod
    def rebuild_parameter(data, requires_grad=False, backward_hooks=None):
        return data


def _allowed_globals(factory: _TensorFactory) -> dict[str, Any]:
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "collections.defaultdict": collections.defaultdict,
        "typing.Any": "typing.Any",  # only ever stored as a value (omegaconf ref_type)
        "torch._utils._rebuild_tensor_v2": factory.rebuild_tensor,
        "torch._utils._rebuild_parameter": factory.rebuild_parameter,
        "torch.torch_version.TorchVersion": TorchVersion,
        "pyannote.audio.core.task.Problem": _enum_type("Problem"),
        "pyannote.audio.core.task.Resolution": _enum_type("Resolution"),
    }
    for builtin in (list, dict, set, frozenset, tuple, int, float, bool, str, bytes):
        allowed[f"builtins.{builtin.__name__}"] = builtin
    allowed["builtins.long"] = int
    for storage_name, dtype in STORAGE_DTYPES.items():
        allowed[f"torch.{storage_name}"] = StorageType(dtype)
    for name in RECORD_GLOBALS:
        allowed[name] = _record_type(name)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals."""

    def __init__(self, file: io.BytesIO, factory: _TensorFactory):
        super().__init__(file, encoding="utf-8")
        self.factory = factory
        self.allowed = _allowed_globals(factory)

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        qualified = f"{module}.{name}"
        if qualified not in self.allowed:
            raise ForbiddenGlobalError(f"forbidden pickle global '{qualified}': refusing to load this checkpoint")
        return self.allowed[qualified]

    def persistent_load(self, pid: Any) -> Any:
        return self.factory.storage(pid)


@dataclass(frozen=True)
class SourceCheckpoint:
    """What the converter needs from a checkpoint, as plain Python and numpy."""

    path: Path
    size: int
    sha256: str
    tensors: dict[str, np.ndarray]
    hyper_parameters: dict[str, Any]
    architecture: str  # "module.Class", as pyannote.audio records it
    specifications: dict[str, Any] | None
    versions: dict[str, str]


def read_checkpoint(path: Path) -> SourceCheckpoint:
    """Read a pyannote.audio checkpoint (Lightning 1.x or 2.x zip format) safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (not a zip archive, or truncated)") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (no single */data.pkl in the archive)")
        prefix = pickles[0][: -len("data.pkl")]
        big_endian = _read_member(archive, f"{prefix}byteorder", b"little").strip() == b"big"
        factory = _TensorFactory(archive, prefix, big_endian)
        try:
            payload = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), factory).load()
        except CheckpointError as error:
            raise type(error)(f"{path}: {error}") from None
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{path}: corrupt checkpoint ({type(error).__name__}: {error})") from None
    return _interpret(path, payload)


def _read_member(archive: zipfile.ZipFile, name: str, default: bytes) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        return default


def _interpret(path: Path, payload: Any) -> SourceCheckpoint:
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a pyannote.audio checkpoint (no 'state_dict')")
    pyannote = payload.get("pyannote.audio")
    if not isinstance(pyannote, dict) or "architecture" not in pyannote:
        raise CheckpointError(f"{path}: not a pyannote.audio checkpoint (no 'pyannote.audio' architecture record)")
    tensors = payload["state_dict"]
    if not all(isinstance(v, np.ndarray) for v in tensors.values()):
        raise CheckpointError(f"{path}: state_dict holds values that are not tensors")
    architecture = pyannote["architecture"]
    versions = {str(k): str(v) for k, v in to_plain(pyannote.get("versions", {})).items()}
    if "pytorch-lightning_version" in payload:
        versions["pytorch-lightning"] = str(payload["pytorch-lightning_version"])
    specifications = pyannote.get("specifications")
    return SourceCheckpoint(
        path=path,
        size=path.stat().st_size,
        sha256=sha256_file(path),
        tensors=dict(tensors),
        hyper_parameters=to_plain(payload.get("hyper_parameters", {})),
        architecture=f"{architecture.get('module')}.{architecture.get('class')}",
        specifications=to_plain(specifications) if specifications is not None else None,
        versions=versions,
    )


def to_plain(value: Any) -> Any:
    """Turn inert records, enums and containers into plain dicts, lists, strings and numbers."""
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, TorchVersion):
        return str(value)
    if isinstance(value, InertRecord):
        if value.global_name.startswith("omegaconf."):
            return _omegaconf_value(value)
        return {k: to_plain(v) for k, v in value.fields().items()}
    if isinstance(value, dict):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def _omegaconf_value(node: InertRecord) -> Any:
    fields = node.fields()
    if "_val" in fields:
        return to_plain(fields["_val"])
    if "_content" in fields:
        return to_plain(fields["_content"])
    return {k: to_plain(v) for k, v in fields.items()}
