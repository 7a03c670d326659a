"""Write PyTorch-format checkpoints byte by byte, without torch: pickle opcodes and torch's zip layout.

A checkpoint is a zip holding `archive/data.pkl`, `archive/byteorder` and one member per storage,
`archive/data/<key>`. The pickle is assembled here from a few node types, so that any opcode, any
global and any argument, valid or hostile, can be written exactly.
"""

from __future__ import annotations

import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Global:
    """GLOBAL `module name`: what `find_class` is asked to resolve."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """REDUCE: `func(*args)`."""

    func: Any
    args: tuple


@dataclass(frozen=True)
class Obj:
    """NEWOBJ then BUILD: `cls.__new__(cls)` given `state`, as pickle stores a dataclass."""

    cls: Global
    state: Any


@dataclass(frozen=True)
class Persistent:
    """BINPERSID: `persistent_load(pid)`."""

    pid: Any


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are."""

    data: bytes


def emit(value: Any) -> bytes:
    """The opcodes that push `value` on the unpickler's stack."""
    if isinstance(value, Raw):
        return value.data
    if isinstance(value, Global):
        return b"c" + f"{value.module}\n{value.name}\n".encode()
    if isinstance(value, Call):
        return emit(value.func) + emit(tuple(value.args)) + b"R"
    if isinstance(value, Obj):
        return emit(value.cls) + b")" + b"\x81" + emit(value.state) + b"b"
    if isinstance(value, Persistent):
        return emit(value.pid) + b"Q"
    if isinstance(value, OrderedDict):
        items = b"".join(emit(k) + emit(v) for k, v in value.items())
        return emit(Call(Global("collections", "OrderedDict"), ())) + (b"(" + items + b"u" if value else b"")
    if isinstance(value, tuple):
        return b"(" + b"".join(emit(v) for v in value) + b"t"
    if isinstance(value, list):
        return b"]" + (b"(" + b"".join(emit(v) for v in value) + b"e" if value else b"")
    if isinstance(value, dict):
        items = b"".join(emit(k) + emit(v) for k, v in value.items())
        return b"}" + (b"(" + items + b"u" if value else b"")
    if value is None or isinstance(value, (bool, int, float, str)):
        return pickle.dumps(value, protocol=2)[2:-1]
    raise TypeError(f"cannot forge {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return b"\x80\x02" + emit(value) + b"."


STORAGE_TYPES = {np.float32: "FloatStorage", np.float64: "DoubleStorage", np.int64: "LongStorage"}


def tensor(key: str, numel: int, size: tuple, stride: tuple, offset: int = 0, storage: str = "FloatStorage") -> Call:
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`."""
    pid = ("storage", Global("torch", storage), key, "cpu", numel)
    return Call(
        Global("torch._utils", "_rebuild_tensor_v2"),
        (Persistent(pid), offset, tuple(size), tuple(stride), False, OrderedDict()),
    )


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))


@dataclass
class Checkpoint:
    """A checkpoint to write: the pickled payload and the storages' bytes, by key."""

    payload: Any
    storages: dict[str, bytes] = field(default_factory=dict)
    compression: int = zipfile.ZIP_STORED

    def write(self, path: Path) -> Path:
        with zipfile.ZipFile(path, "w", self.compression) as archive:
            archive.writestr(
                "archive/data.pkl", self.payload if isinstance(self.payload, bytes) else dumps(self.payload)
            )
            archive.writestr("archive/byteorder", b"little")
            for key, data in self.storages.items():
                archive.writestr(f"archive/data/{key}", data)
            archive.writestr("archive/version", b"3\n")
        return path


def state_dict(arrays: dict[str, np.ndarray]) -> tuple[OrderedDict, dict[str, bytes]]:
    """One float32 storage per tensor, as torch.save writes a state dict."""
    tensors, storages = OrderedDict(), {}
    for index, (name, array) in enumerate(arrays.items()):
        array = np.ascontiguousarray(array, dtype=np.float32)
        tensors[name] = tensor(str(index), array.size, array.shape, contiguous_strides(array.shape))
        storages[str(index)] = array.tobytes()
    return tensors, storages


def specifications(duration: float = 5.0, classes: int = 2, **overrides: Any) -> Obj:
    """pyannote.audio's `Specifications` dataclass, pickled as pickle stores it (NEWOBJ then BUILD)."""
    state = {
        "problem": Call(Global("pyannote.audio.core.task", "Problem"), (2,)),  # MULTI_LABEL_CLASSIFICATION
        "resolution": Call(Global("pyannote.audio.core.task", "Resolution"), (1,)),  # FRAME
        "duration": duration,
        "min_duration": None,
        "warm_up": (0.0, 0.0),
        "classes": [f"speaker#{i + 1}" for i in range(classes)],
        "powerset_max_classes": None,
        "permutation_invariant": True,
        **overrides,
    }
    return Obj(Global("pyannote.audio.core.task", "Specifications"), state)


def small_pyannet_arrays(hidden: int = 8, linear: int = 8, classes: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor of a PyanNet with a 1-layer bidirectional LSTM and one linear layer, seeded."""
    rng = np.random.default_rng(seed)
    half = 125  # ParamSincFB(80 filters, kernel 251): half the kernel
    arrays = {
        "sincnet.wav_norm1d.weight": np.ones(1),
        "sincnet.wav_norm1d.bias": np.zeros(1),
        "sincnet.conv1d.0.filterbank.low_hz_": np.linspace(30.0, 6000.0, 40)[:, None],
        "sincnet.conv1d.0.filterbank.band_hz_": np.full((40, 1), 100.0),
        "sincnet.conv1d.0.filterbank.window_": 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(half) / 250),
        "sincnet.conv1d.0.filterbank.n_": (2 * np.pi * np.arange(-half, 0) / 16000)[None, :],
        "sincnet.conv1d.1.weight": rng.normal(0, 0.05, (60, 80, 5)),
        "sincnet.conv1d.1.bias": rng.normal(0, 0.05, 60),
        "sincnet.conv1d.2.weight": rng.normal(0, 0.05, (60, 60, 5)),
        "sincnet.conv1d.2.bias": rng.normal(0, 0.05, 60),
    }
    for i, channels in enumerate((80, 60, 60)):
        arrays[f"sincnet.norm1d.{i}.weight"] = np.ones(channels)
        arrays[f"sincnet.norm1d.{i}.bias"] = np.zeros(channels)
    for suffix in ("", "_reverse"):
        arrays[f"lstm.weight_ih_l0{suffix}"] = rng.normal(0, 0.2, (4 * hidden, 60))
        arrays[f"lstm.weight_hh_l0{suffix}"] = rng.normal(0, 0.2, (4 * hidden, hidden))
        arrays[f"lstm.bias_ih_l0{suffix}"] = rng.normal(0, 0.1, 4 * hidden)
        arrays[f"lstm.bias_hh_l0{suffix}"] = rng.normal(0, 0.1, 4 * hidden)
    arrays["linear.0.weight"] = rng.normal(0, 0.2, (linear, 2 * hidden))
    arrays["linear.0.bias"] = rng.normal(0, 0.1, linear)
    arrays["classifier.weight"] = rng.normal(0, 0.2, (classes, linear))
    arrays["classifier.bias"] = rng.normal(0, 0.1, classes)
    return arrays


def pyannet_payload(tensors: Any, *, hyper_parameters: Any = None, specs: Any = None, architecture: Any = None) -> dict:
    """What pyannote.audio's `Model.on_save_checkpoint` stores, around `tensors`."""
    return {
        "state_dict": tensors,
        "hyper_parameters": hyper_parameters
        if hyper_parameters is not None
        else {
            "sample_rate": 16000,
            "num_channels": 1,
            "sincnet": {"stride": 10},
            "lstm": {"hidden_size": 8, "num_layers": 1, "bidirectional": True, "monolithic": True, "dropout": 0.0},
            "linear": {"hidden_size": 8, "num_layers": 1},
        },
        "pyannote.audio": {
            "versions": {"torch": "2.9.1", "pyannote.audio": "4.0.7"},
            "architecture": architecture
            or {"module": "pyannote.audio.models.segmentation.PyanNet", "class": "PyanNet"},
            "specifications": specs if specs is not None else specifications(),
        },
        "pytorch-lightning_version": "2.5.0",
    }


def small_pyannet(**payload_overrides: Any) -> Checkpoint:
    """A valid, small PyanNet checkpoint (the baseline every hostile case departs from)."""
    tensors, storages = state_dict(small_pyannet_arrays())
    return Checkpoint(pyannet_payload(tensors, **payload_overrides), storages)


def patch_member_header(
    path: Path, member: str, *, file_size: int | None = None, flags: int | None = None, method: int | None = None
) -> None:
    """Rewrite one member's size, flags or compression method in both its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    local = info.header_offset
    central = _central_entry(data, member)
    for offset, kind in ((local, "local"), (central, "central")):
        base = offset + (0 if kind == "local" else 2)  # central headers have one more 2-byte field first
        if flags is not None:
            struct.pack_into("<H", data, base + 6, flags)
        if method is not None:
            struct.pack_into("<H", data, base + 8, method)
        if file_size is not None:
            struct.pack_into("<I", data, base + 22, file_size)
    path.write_bytes(bytes(data))


def _central_entry(data: bytearray, member: str) -> int:
    """Offset of `member`'s central-directory header."""
    name = member.encode()
    offset = data.find(b"PK\x01\x02")
    while offset >= 0:
        name_length = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46 : offset + 46 + name_length] == name:
            return offset
        offset = data.find(b"PK\x01\x02", offset + 4)
    raise KeyError(member)
