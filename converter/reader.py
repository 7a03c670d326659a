"""Read a PyTorch checkpoint without running code from it.

A checkpoint is a zip holding `data.pkl` and one file per tensor storage. The pickle is read by an
unpickler that resolves only an allow-list of globals: the functions that rebuild tensors, plain
containers, and the records that pyannote.audio, Lightning and omegaconf store, which are rebuilt as
inert data. Anything else is refused by name before it could be called. Tensors come out of the
pickle as validated references; only the state dict's storages are then read, each bounded by the
size the pickle declares for it (see the limits below).
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlx_segmentation.manifest import sha256_bytes

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
        pass  # NEWOBJ's arguments carry nothing a record keeps; its state comes through __setstate__

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})

    def __repr__(self) -> str:
        return f"<{type(self).global_name}>"

    def fields(self) -> dict[str, Any]:
        return dict(vars(self))


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


# Limits on what a checkpoint may ask of us. The largest tensor of any model we convert is
# WeSpeakerResNet34's 256 x 256 x 3 x 3 convolution (590k elements); a whole ResNet34 is 6.6M
# parameters, PyanNet about 1.5M. The limits leave room for far larger models of those families.
MAX_TENSOR_ELEMENTS = 1 << 26  # 64M elements: 256 MiB in float32
MAX_STATE_BYTES = 1 << 30  # all storages the state dict uses, together
MAX_PICKLE_BYTES = 64 << 20  # data.pkl (21 kB in the 2022 checkpoint)
MAX_CHECKPOINT_BYTES = 1 << 30  # the whole file (17.7 MB for the 2022 checkpoint, optimizer state included)
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class StorageRef:
    """A tensor storage named in the pickle: nothing is read until the tensor is needed."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A tensor as `_rebuild_tensor_v2` describes it, its arguments already validated."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.size)


def _count(value: Any, what: str) -> int:
    """A non-negative int from the pickle (bools and other numbers refused)."""
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{what} is {value!r:.40}, not a non-negative integer")
    return value


def storage_ref(pid: Any) -> StorageRef:
    """`persistent_load`: ('storage', storage type, key, location, element count), validated."""
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, StorageType):
        raise CheckpointError(f"unsupported storage type {storage_type!r:.80}")
    if not (isinstance(key, str) and 0 < len(key) <= 64):
        raise CheckpointError(f"storage key {key!r:.80} is not a short string")
    return StorageRef(key, np.dtype(storage_type.dtype), _count(numel, f"storage {key}'s element count"))


def rebuild_tensor(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
) -> TensorRef:
    """`torch._utils._rebuild_tensor_v2`: check every argument; the bytes are read later, by `materialize`."""
    if not isinstance(storage, StorageRef):
        raise CheckpointError("tensor rebuilt from something that is not a storage")
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
        raise CheckpointError("tensor size or stride is not a sequence")
    if len(size) != len(stride) or len(size) > MAX_DIMENSIONS:
        raise CheckpointError(
            f"tensor has {len(size)} sizes and {len(stride)} strides (at most {MAX_DIMENSIONS} dimensions)"
        )
    tensor = TensorRef(
        storage,
        _count(storage_offset, "tensor offset"),
        tuple(_count(n, "tensor size") for n in size),
        tuple(_count(s, "tensor stride") for s in stride),
    )
    if tensor.numel > MAX_TENSOR_ELEMENTS:
        raise CheckpointError(f"tensor of shape {list(tensor.size)} has more than {MAX_TENSOR_ELEMENTS:,} elements")
    if tensor.numel > storage.numel:
        raise CheckpointError(
            f"tensor of shape {list(tensor.size)} has more elements than its storage ({storage.numel})"
        )
    if tensor.numel > 0:
        highest = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
        if highest >= storage.numel:  # strides are non-negative, so the lowest element is at the offset
            raise CheckpointError(f"tensor of shape {list(tensor.size)} reaches past the end of its storage")
    return tensor


def rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """`torch._utils._rebuild_parameter`: a parameter is its tensor."""
    return data


def safe_bytes(source: Any = b"", *args: Any) -> bytes:
    """`builtins.bytes`, except from a count (`bytes(10**13)` would allocate that many zeros)."""
    if isinstance(source, int):
        raise CheckpointError("bytes() from a count is not allowed")
    return bytes(source, *args)


def _allowed_globals() -> dict[str, Any]:
    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "collections.defaultdict": collections.defaultdict,
        "typing.Any": "typing.Any",  # only ever stored as a value (omegaconf ref_type)
        "torch._utils._rebuild_tensor_v2": rebuild_tensor,
        "torch._utils._rebuild_parameter": rebuild_parameter,
        "torch.torch_version.TorchVersion": TorchVersion,
        "pyannote.audio.core.task.Problem": _enum_type("Problem"),
        "pyannote.audio.core.task.Resolution": _enum_type("Resolution"),
    }
    for builtin in (list, dict, set, frozenset, tuple, int, float, bool, str):
        allowed[f"builtins.{builtin.__name__}"] = builtin
    allowed["builtins.bytes"] = safe_bytes
    allowed["builtins.long"] = int
    for storage_name, dtype in STORAGE_DTYPES.items():
        allowed[f"torch.{storage_name}"] = StorageType(dtype)
    for name in RECORD_GLOBALS:
        allowed[name] = _record_type(name)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals; storages come back as unread references."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file, encoding="utf-8")
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        qualified = f"{module}.{name}"
        if qualified not in self.allowed:
            raise ForbiddenGlobalError(f"forbidden pickle global '{qualified:.200}': refusing to load this checkpoint")
        return self.allowed[qualified]

    def persistent_load(self, pid: Any) -> Any:
        return storage_ref(pid)


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
    """Read a pyannote.audio checkpoint (Lightning 1.x or 2.x zip format) safely.

    Any failure, however odd the file, is a `CheckpointError` naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return _read(path)
    except CheckpointError as error:
        raise type(error)(f"{path}: {error}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt checkpoint (nested too deeply)") from None
    except Exception as error:  # zipfile, zlib and pickle raise a dozen kinds on malformed input
        detail = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(error).__name__}: {detail})") from None


def _read(path: Path) -> SourceCheckpoint:
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{size:,} bytes is larger than any checkpoint we convert ({MAX_CHECKPOINT_BYTES:,})")
    data = path.read_bytes()  # read once: the sha256 recorded is that of the bytes parsed
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError):
        raise CheckpointError("not a PyTorch checkpoint (not a zip archive, or truncated)") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError("not a PyTorch checkpoint (no single */data.pkl in the archive)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = (
            _read_member(archive, f"{prefix}byteorder", 16) if f"{prefix}byteorder" in archive.NameToInfo else b"little"
        )
        payload = RestrictedUnpickler(io.BytesIO(_read_member(archive, pickles[0], MAX_PICKLE_BYTES))).load()
        fields = _interpret(payload)
        storages = _Storages(archive, prefix, big_endian=byteorder.strip() == b"big")
        tensors = {key: storages.materialize(tensor) for key, tensor in fields.pop("tensors").items()}
    return SourceCheckpoint(path=path, size=len(data), sha256=sha256_bytes(data), tensors=tensors, **fields)


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, expected: int | None = None) -> bytes:
    """A member's bytes, decompressing at most `limit` (or exactly `expected`) bytes whatever its header says."""
    info = archive.getinfo(name)
    bound = limit if expected is None else expected
    if info.file_size > bound or (expected is not None and info.file_size != expected):
        want = f"at most {limit:,}" if expected is None else f"{expected:,}"
        raise CheckpointError(f"{name} holds {info.file_size:,} bytes, expected {want}")
    with archive.open(info) as member:
        data = member.read(bound + 1)
    if len(data) != info.file_size:
        raise CheckpointError(f"{name} decompresses to more or fewer bytes than its header says")
    return data


@dataclass
class _Storages:
    """Reads storages from the archive on demand, each checked against the size the pickle claims."""

    archive: zipfile.ZipFile
    prefix: str
    big_endian: bool
    loaded: dict[str, np.ndarray] = field(default_factory=dict)
    total_bytes: int = 0

    def materialize(self, tensor: TensorRef) -> np.ndarray:
        """The tensor's elements, gathered with numpy's bounds-checked indexing (a copy)."""
        storage = self._storage(tensor.storage)
        if tensor.numel == 0:
            return np.zeros(tensor.size, dtype=storage.dtype)
        index = np.full((1,) * len(tensor.size), tensor.offset, dtype=np.int64)
        for axis, (n, s) in enumerate(zip(tensor.size, tensor.stride)):
            shape = [1] * len(tensor.size)
            shape[axis] = n
            index = index + (np.arange(n, dtype=np.int64) * s).reshape(shape)
        return storage[index]

    def _storage(self, ref: StorageRef) -> np.ndarray:
        if ref.key in self.loaded:
            if self.loaded[ref.key].dtype != ref.dtype or self.loaded[ref.key].size != ref.numel:
                raise CheckpointError(f"storage {ref.key} is declared twice with different types or sizes")
            return self.loaded[ref.key]
        name = f"{self.prefix}data/{ref.key}"
        if name not in self.archive.NameToInfo:
            raise CheckpointError(f"storage {name} is missing from the archive")
        size = ref.numel * ref.dtype.itemsize
        self.total_bytes += size
        if self.total_bytes > MAX_STATE_BYTES:
            raise CheckpointError(f"the state dict's storages exceed {MAX_STATE_BYTES:,} bytes")
        raw = _read_member(self.archive, name, MAX_STATE_BYTES, expected=size)
        dtype = ref.dtype.newbyteorder(">" if self.big_endian else "<")
        self.loaded[ref.key] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        return self.loaded[ref.key]


def _interpret(payload: Any) -> dict[str, Any]:
    """The fields of a `SourceCheckpoint` (tensors still unread), each checked for its type."""
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError("not a pyannote.audio checkpoint (no 'state_dict')")
    pyannote = payload.get("pyannote.audio")
    if not isinstance(pyannote, dict) or not isinstance(pyannote.get("architecture"), dict):
        raise CheckpointError("not a pyannote.audio checkpoint (no 'pyannote.audio' architecture record)")
    tensors = payload["state_dict"]
    if not isinstance(tensors, dict):
        raise CheckpointError("state_dict is not a dictionary")
    if not all(isinstance(k, str) and isinstance(v, TensorRef) for k, v in tensors.items()):
        raise CheckpointError("state_dict holds keys that are not names or values that are not tensors")
    architecture = to_plain(pyannote["architecture"])
    if not all(isinstance(architecture.get(k), str) for k in ("module", "class")):
        raise CheckpointError("the architecture record does not name a module and a class")
    versions = to_plain(pyannote.get("versions", {}))
    hyper_parameters = to_plain(payload.get("hyper_parameters", {}))
    specifications = to_plain(pyannote.get("specifications"))
    for name, value in (("versions", versions), ("hyper_parameters", hyper_parameters)):
        if not isinstance(value, dict):
            raise CheckpointError(f"{name} is a {type(value).__name__}, not a dictionary")
    if specifications is not None and not isinstance(specifications, dict):
        raise CheckpointError(f"specifications are a {type(specifications).__name__}, not a record")
    versions = {str(k): str(v)[:100] for k, v in versions.items()}
    if "pytorch-lightning_version" in payload:
        versions["pytorch-lightning"] = str(payload["pytorch-lightning_version"])[:100]
    return {
        "tensors": dict(tensors),
        "hyper_parameters": hyper_parameters,
        "architecture": f"{architecture['module']}.{architecture['class']}"[:300],
        "specifications": specifications,
        "versions": versions,
    }


MAX_NESTING = 64  # real checkpoints nest hyper-parameters a few levels deep


def to_plain(value: Any, _path: tuple[int, ...] = ()) -> Any:
    """Turn inert records, enums and containers into plain dicts, lists, strings and numbers.

    Refuses structures nested deeper than MAX_NESTING or containing themselves.
    """
    if len(_path) > MAX_NESTING:
        raise CheckpointError(f"records nested deeper than {MAX_NESTING} levels")
    if id(value) in _path:
        raise CheckpointError("a record contains itself")
    inner = (*_path, id(value))
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, TorchVersion):
        return str(value)
    if isinstance(value, InertRecord):
        fields = value.fields()
        if type(value).global_name.startswith("omegaconf."):
            for key in ("_val", "_content"):
                if key in fields:
                    return to_plain(fields[key], inner)
        return {to_plain(k, inner): to_plain(v, inner) for k, v in fields.items()}
    if isinstance(value, dict):
        return {to_plain(k, inner): to_plain(v, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v, inner) for v in value)
    return value
