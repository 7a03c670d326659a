"""Hostile and malformed checkpoints, forged without torch through the pickle protocol and the zip
format themselves (tests/forge.py). Each one given to `python -m converter build` must give exit
code 2 and exactly one `error:` line, no traceback, no output folder and no side effect, under a
3 GiB address-space limit so that a blow-up fails the test instead of the machine."""

from __future__ import annotations

import resource
import subprocess
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from forge import (
    Call,
    Checkpoint,
    Global,
    Obj,
    Persistent,
    Raw,
    dumps,
    emit,
    patch_member_header,
    pyannet_payload,
    small_pyannet,
    small_pyannet_arrays,
    specifications,
    tensor,
)

ADDRESS_SPACE = 3 << 30
MARKER = "pwned"  # every command payload tries to create this file in the working folder
COMMAND = f"touch {MARKER}"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def convert(checkpoint: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "converter",
            "build",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--no-checks",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=checkpoint.parent,
        preexec_fn=_limit_memory,
        timeout=300,
    )


def assert_refused(result: subprocess.CompletedProcess, fragment: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]


# --- how each hostile file is made: a function of the folder it goes to -------------------------


def payload_with(**changes) -> Callable[[Path], Path]:
    """The small valid PyanNet with some of its payload replaced."""

    def make(path: Path) -> Path:
        checkpoint = small_pyannet()
        checkpoint.payload.update(changes)
        return checkpoint.write(path)

    return make


def hyper_parameters(**changes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        checkpoint = small_pyannet()
        checkpoint.payload["hyper_parameters"] = {**checkpoint.payload["hyper_parameters"], **changes}
        return checkpoint.write(path)

    return make


def lstm(**changes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        checkpoint = small_pyannet()
        hparams = checkpoint.payload["hyper_parameters"]
        hparams["lstm"] = {**hparams["lstm"], **changes}
        return checkpoint.write(path)

    return make


def specs(**changes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        checkpoint = small_pyannet()
        checkpoint.payload["pyannote.audio"]["specifications"] = specifications(**changes)
        return checkpoint.write(path)

    return make


def wespeaker(**hparams) -> Callable[[Path], Path]:
    """A WeSpeakerResNet34 record with absurd fbank settings (refused before its tensors are looked at)."""

    def make(path: Path) -> Path:
        architecture = {"module": "pyannote.audio.models.embedding.wespeaker", "class": "WeSpeakerResNet34"}
        return Checkpoint(pyannet_payload(OrderedDict(), hyper_parameters=hparams, architecture=architecture)).write(
            path
        )

    return make


def one_tensor(
    key: str = "x",
    numel: int = 4,
    size=(2, 2),
    stride=(2, 1),
    offset=0,
    data: bytes | None = None,
    storage="FloatStorage",
):
    """The small PyanNet with `linear.0.bias` replaced by a tensor with these rebuild arguments."""

    def make(path: Path) -> Path:
        checkpoint = small_pyannet()
        checkpoint.payload["state_dict"]["linear.0.bias"] = tensor(key, numel, size, stride, offset, storage)
        checkpoint.storages[key] = data if data is not None else bytes(numel * 4)
        return checkpoint.write(path)

    return make


def raw_payload(opcodes: bytes) -> Callable[[Path], Path]:
    return lambda path: Checkpoint(b"\x80\x02" + opcodes + b".").write(path)


def inside_payload(value) -> Callable[[Path], Path]:
    """The small valid PyanNet carrying `value` in an extra payload entry."""

    def make(path: Path) -> Path:
        checkpoint = small_pyannet()
        checkpoint.payload["callbacks"] = value
        return checkpoint.write(path)

    return make


def member_header(member: str, **fields) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        small_pyannet().write(path)
        patch_member_header(path, member, **fields)
        return path

    return make


def edit_bytes(
    edit: Callable[[bytes, zipfile.ZipInfo], bytes], member: str = "archive/data/0"
) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        small_pyannet().write(path)
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
        path.write_bytes(edit(path.read_bytes(), info))
        return path

    return make


def deflate_bomb(path: Path) -> Path:
    """A storage member that inflates to 64 MiB while its header says 4 bytes, as the tensor claims."""
    checkpoint = small_pyannet()
    checkpoint.payload["state_dict"]["linear.0.bias"] = tensor("bomb", 1, (1,), (1,))
    checkpoint.compression = zipfile.ZIP_DEFLATED
    checkpoint.storages["bomb"] = bytes(64 << 20)
    checkpoint.write(path)
    patch_member_header(path, "archive/data/bomb", file_size=4)
    return path


def sparse_file(path: Path) -> Path:
    with open(path, "wb") as file:
        file.truncate(2 << 30)  # sparse: no disk used
    return path


def self_referencing_list(path: Path) -> Path:
    # an empty list, memoised, then appended to itself: l = []; l.append(l)
    opcodes = b"]" + b"q\x00" + b"h\x00" + b"a"
    return hyper_parameters(extra=Raw(opcodes))(path)


def deep_nesting(path: Path) -> Path:
    depth = 200_000
    return hyper_parameters(sincnet=Raw(b"]" * depth + b"a" * (depth - 1)))(path)


def state_dict_with_int_key(path: Path) -> Path:
    checkpoint = small_pyannet()
    checkpoint.payload["state_dict"][7] = checkpoint.payload["state_dict"].pop("linear.0.bias")
    return checkpoint.write(path)


def missing_storage(path: Path) -> Path:
    checkpoint = small_pyannet()
    del checkpoint.storages["0"]
    return checkpoint.write(path)


def integer_weights(path: Path) -> Path:
    checkpoint = small_pyannet()
    checkpoint.payload["state_dict"]["linear.0.bias"] = tensor("ints", 8, (8,), (1,), storage="LongStorage")
    checkpoint.storages["ints"] = np.arange(8, dtype=np.int64).tobytes()
    return checkpoint.write(path)


def payload_tensor_elsewhere(path: Path) -> Path:
    """A tensor with a negative stride hidden in the optimizer state: validated even there."""
    return inside_payload([tensor("0", 4, (4,), (-1,), 3)])(path)


def _cut_member_middle(data: bytes, info: zipfile.ZipInfo) -> bytes:
    start = info.header_offset + 30 + len(info.filename) + 2
    return data[:start] + data[start + 100 :]


def _flip_member_byte(data: bytes, info: zipfile.ZipInfo) -> bytes:
    at = info.header_offset + 30 + len(info.filename) + 1
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    # 1. out-of-bounds reads: every rebuild argument is checked before any view is made
    "negative stride": (one_tensor(size=(8,), stride=(-1,), offset=7, numel=8), "tensor stride is -1"),
    "large negative stride": (one_tensor(size=(2, 8), stride=(-(1 << 40), 1), offset=0, numel=16), "tensor stride is"),
    "negative offset": (one_tensor(offset=-4), "tensor offset is -4"),
    "offset past the end": (one_tensor(offset=1), "reaches past the end of its storage"),
    "size past the end": (one_tensor(size=(3, 2), stride=(2, 1), numel=4), "more elements than its storage"),
    "stride past the end": (one_tensor(size=(2, 2), stride=(3, 1), numel=4), "reaches past the end of its storage"),
    "float stride": (one_tensor(stride=(2.0, 1)), "not a non-negative integer"),
    "boolean size": (one_tensor(size=(True, 4), stride=(4, 1)), "not a non-negative integer"),
    "sizes without strides": (one_tensor(size=(2, 2), stride=(1,)), "2 sizes and 1 strides"),
    "nine dimensions": (one_tensor(size=(1,) * 9, stride=(1,) * 9, numel=1), "at most 8 dimensions"),
    "hostile tensor in the optimizer state": (payload_tensor_elsewhere, "tensor stride is -1"),
    # 2. memory exhaustion from small files
    "deflate bomb": (deflate_bomb, "Bad CRC-32"),  # inflated no further than its header's 4 bytes
    "storage larger than its member": (
        one_tensor(numel=1 << 20, size=(4,), stride=(1,), data=bytes(16)),
        "holds 16 bytes, expected 4,194,304",
    ),
    "member larger than its storage": (
        one_tensor(numel=4, size=(4,), stride=(1,), data=bytes(64)),
        "holds 64 bytes, expected 16",
    ),
    "storage of 10^12 elements": (one_tensor(numel=10**12, size=(4,), stride=(1,), data=bytes(16)), "storages exceed"),
    "stride-0 expansion": (
        one_tensor(numel=1, size=(100_000, 100_000), stride=(0, 0), data=bytes(4)),
        "more than 67,108,864 elements",
    ),
    "stride-0 within the element limit": (
        one_tensor(numel=1, size=(1000,), stride=(0,), data=bytes(4)),
        "more elements than its storage (1)",
    ),
    "bytes(10**13)": (
        inside_payload(Call(Global("builtins", "bytes"), (10**13,))),
        "bytes() from a count is not allowed",
    ),
    "2 GiB file": (sparse_file, "larger than any checkpoint we convert"),
    "pickle bomb": (member_header("archive/data.pkl", file_size=1 << 31), "archive/data.pkl holds 2,147,483,648 bytes"),
    # 6. malformed archives and records: one line, never a traceback
    "encrypted member": (member_header("archive/data/0", flags=0x1), "encrypted"),
    "unknown compression": (member_header("archive/data/0", method=99), "compression"),
    "bad CRC": (edit_bytes(_flip_member_byte), "Bad CRC-32"),
    "member cut from the middle": (edit_bytes(_cut_member_middle, member="archive/data/3"), "corrupt checkpoint"),
    "not a zip": (lambda path: (path.write_bytes(b"\x80\x02}q\x00."), path)[1], "not a zip archive"),
    "empty file": (lambda path: (path.write_bytes(b""), path)[1], "not a zip archive"),
    "no data.pkl": (lambda path: (zipfile.ZipFile(path, "w").close(), path)[1], "no single */data.pkl"),
    "truncated pickle": (lambda path: Checkpoint(b"\x80\x02}(X\x05\x00\x00\x00sta").write(path), "corrupt checkpoint"),
    "payload is a list": (raw_payload(emit([1, 2])), "no 'state_dict'"),
    "state_dict is a string": (payload_with(state_dict="weights"), "state_dict is not a dictionary"),
    "state_dict with an int key": (state_dict_with_int_key, "keys that are not names"),
    "state_dict value is a number": (lambda p: payload_with(state_dict={"w": 1.0})(p), "values that are not tensors"),
    "no architecture record": (
        payload_with(**{"pyannote.audio": {"versions": {}}}),
        "no 'pyannote.audio' architecture record",
    ),
    "architecture record of numbers": (
        payload_with(**{"pyannote.audio": {"architecture": {"module": 1, "class": 2}}}),
        "does not name a module",
    ),
    "hyper_parameters is a list": (payload_with(hyper_parameters=[1, 2, 3]), "hyper_parameters is a list"),
    "lstm is an int": (hyper_parameters(lstm=5), "hyper-parameter lstm is not a dictionary"),
    "hyper-parameter with an int key": (
        hyper_parameters(linear={1: 2}),
        "hyper-parameter linear is not a dictionary of named values",
    ),
    "self-referencing list": (self_referencing_list, "contains itself"),
    "200,000-deep nesting": (deep_nesting, "nested deeper than"),
    "missing storage": (missing_storage, "archive/data/0 is missing"),
    "integer weights": (integer_weights, "int64, not floating point"),
    "unknown enum value": (
        specs(problem=Call(Global("pyannote.audio.core.task", "Problem"), (42,))),
        "unknown pyannote Problem value 42",
    ),
    "BUILD on a list": (inside_payload(Raw(b"]" + emit({"a": 1}) + b"b")), "corrupt checkpoint"),
    # 5. absurd hyper-parameters: refused at conversion, naming the field
    "SincNet stride 0": (hyper_parameters(sincnet={"stride": 0}), "sincnet.stride"),
    "SincNet stride -10": (hyper_parameters(sincnet={"stride": -10}), "sincnet.stride"),
    "LSTM of a million layers": (lstm(num_layers=10**6), "lstm.num_layers"),
    "LSTM of 10^9 units": (lstm(hidden_size=10**9), "lstm.hidden_size"),
    "linear layers -1": (hyper_parameters(linear={"hidden_size": 8, "num_layers": -1}), "linear.num_layers"),
    "sample rate 8000": (hyper_parameters(sample_rate=8000), "sample_rate"),
    "window duration NaN": (specs(duration=float("nan")), "specifications.duration"),
    "window duration -5": (specs(duration=-5.0), "specifications.duration"),
    "window duration 1e9": (specs(duration=1e9), "specifications.duration"),
    "no classes": (specs(classes=0), "specifications.classes"),
    "powerset of more speakers than classes": (
        specs(problem=Call(Global("pyannote.audio.core.task", "Problem"), (1,)), powerset_max_classes=5),
        "exceeds the 2 classes",
    ),
    "warm-up longer than the window": (specs(warm_up=(3.0, 3.0)), "warm_up covers the whole window"),
    "fbank sample rate 0": (wespeaker(sample_rate=0), "sample_rate"),
    "fbank frame shift 0": (wespeaker(frame_shift=0), "fbank.frame_shift"),
    "fbank frame length -25": (wespeaker(frame_length=-25), "fbank.frame_length"),
    "fbank frame length NaN": (wespeaker(frame_length=float("nan")), "fbank.frame_length"),
    "fbank of 100,000 mel bins": (wespeaker(num_mel_bins=100_000), "fbank.num_mel_bins"),
}

# The nine classic ways a pickle runs a command: each must be refused before anything runs.
STACK_GLOBAL = b"\x93"
COMMAND_PAYLOADS: dict[str, tuple[object, str]] = {
    "REDUCE os.system": (Call(Global("os", "system"), (COMMAND,)), "forbidden pickle global 'os.system'"),
    "STACK_GLOBAL posix.system": (
        Raw(emit("posix") + emit("system") + STACK_GLOBAL + emit((COMMAND,)) + b"R"),
        "'posix.system'",
    ),
    "INST os.system": (Raw(b"(" + emit(COMMAND) + b"ios\nsystem\n"), "'os.system'"),
    "OBJ subprocess.call": (
        Raw(b"(" + emit(Global("subprocess", "call")) + emit(["sh", "-c", COMMAND]) + b"o"),
        "'subprocess.call'",
    ),
    "NEWOBJ subprocess.Popen": (
        Raw(emit(Global("subprocess", "Popen")) + emit((["sh", "-c", COMMAND],)) + b"\x81"),
        "'subprocess.Popen'",
    ),
    "BUILD with a command in its state": (
        Obj(Global("pyannote.audio.core.task", "Specifications"), Call(Global("os", "system"), (COMMAND,))),
        "'os.system'",
    ),
    "persistent id naming a command": (
        Persistent(("storage", Global("os", "system"), COMMAND, "cpu", 1)),
        "'os.system'",
    ),
    "persistent id that is a string": (Persistent(COMMAND), "unsupported persistent id"),
    "eval": (Call(Global("builtins", "eval"), (f"__import__('os').system({COMMAND!r})",)), "'builtins.eval'"),
    "exec": (Call(Global("builtins", "exec"), (f"import os; os.system({COMMAND!r})",)), "'builtins.exec'"),
    "__import__": (Call(Global("builtins", "__import__"), ("os",)), "'builtins.__import__'"),
    "getattr": (Call(Global("builtins", "getattr"), (Global("builtins", "list"), "__class__")), "'builtins.getattr'"),
    "getattr chain through an allowed class": (
        Raw(emit("collections") + emit("OrderedDict.__init__.__globals__") + STACK_GLOBAL),
        "'collections.OrderedDict.__init__.__globals__'",
    ),
    "getattr chain through a builtin": (
        Raw(emit("builtins") + emit("str.__class__.__subclasses__") + STACK_GLOBAL),
        "'builtins.str.__class__.__subclasses__'",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_checkpoint_is_refused(case, tmp_path):
    make, fragment = HOSTILE[case]
    checkpoint = make(tmp_path / "hostile.ckpt")
    result = convert(checkpoint, tmp_path / "out")
    assert_refused(result, fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.ckpt"]


@pytest.mark.parametrize("case", sorted(COMMAND_PAYLOADS))
def test_command_payload_never_runs(case, tmp_path):
    value, fragment = COMMAND_PAYLOADS[case]
    checkpoint = inside_payload(value)(tmp_path / "evil.ckpt")
    result = convert(checkpoint, tmp_path / "out")
    assert_refused(result, fragment)
    assert not (tmp_path / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.ckpt"]


def test_the_command_payloads_would_run_if_unpickled(tmp_path):
    """The payloads are live: plain pickle.loads runs them (so the refusals above are real)."""
    import pickle

    for case in ("REDUCE os.system", "INST os.system", "eval"):
        marker = tmp_path / MARKER
        value, _ = COMMAND_PAYLOADS[case]
        subprocess.run(
            [sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
            input=dumps(value),
            cwd=tmp_path,
            check=False,
            capture_output=True,
        )
        assert marker.exists(), case
        marker.unlink()
    assert pickle.loads(dumps([1, {"a": (2.5, "x")}])) == [1, {"a": (2.5, "x")}]


def test_the_forged_baseline_converts(tmp_path):
    """The valid file every hostile case departs from converts with exit 0: the refusals are about the edits."""
    checkpoint = small_pyannet().write(tmp_path / "small.ckpt")
    result = convert(checkpoint, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "manifest.json", "model.safetensors"]


def test_a_stored_non_contiguous_tensor_reads_as_torch_reads_it(tmp_path):
    """Strides are honoured (through numpy's checked indexing), not only refused: a transposed view."""
    from converter.reader import read_checkpoint

    checkpoint = small_pyannet()
    weight = small_pyannet_arrays()["linear.0.weight"].astype(np.float32)  # (8, 16)
    stored = np.ascontiguousarray(weight.T)  # (16, 8) in memory, read back as its transpose
    checkpoint.payload["state_dict"]["linear.0.weight"] = tensor("t", stored.size, (8, 16), (1, 8))
    checkpoint.storages["t"] = stored.tobytes()
    source = read_checkpoint(checkpoint.write(tmp_path / "strided.ckpt"))
    np.testing.assert_array_equal(source.tensors["linear.0.weight"], weight)


def test_forged_baseline_loads_in_pyannote(tmp_path):
    """The forge writes what torch writes: pyannote.audio itself loads the baseline."""
    from pyannote.audio import Model

    path = small_pyannet().write(tmp_path / "small.ckpt")
    model = Model.from_pretrained(path)  # our own forged, command-free file
    arrays = small_pyannet_arrays()
    np.testing.assert_allclose(model.state_dict()["classifier.weight"].numpy(), arrays["classifier.weight"], rtol=1e-6)
    assert model.specifications.classes == ["speaker#1", "speaker#2"]
