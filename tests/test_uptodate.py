"""A second `python -m converter build`: an output that holds the same checked build is up to date and
skipped; one that differs is refused, naming the difference; `--force` rebuilds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from converter import __version__, cli
from mlx_segmentation.manifest import sha256_file


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Everything under `folder`: its modification time, and a file's sha256."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, sha256_file(p) if p.is_file() else "")
        for p in folder.rglob("*")
    }


@pytest.fixture
def built(small_checked, tmp_path) -> tuple[Path, Path]:
    """(a copy of the small checked build, the checkpoint it was built from)."""
    out = tmp_path / "model"
    shutil.copytree(small_checked, out)
    return out, small_checked.parent / "small.ckpt"


def build(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["build", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and "pass --force to replace it" in line, err
    for fragment in fragments:
        assert fragment in line, line


@pytest.mark.parametrize("no_checks", [[], ["--no-checks"]], ids=["checked", "--no-checks"])
def test_second_build_is_up_to_date(no_checks, built, capsys):
    out, checkpoint = built
    before = snapshot(out.parent)
    code, stdout, stderr = build(capsys, "--checkpoint", str(checkpoint), "--out", str(out), *no_checks)
    assert code == 0, stderr
    sha256 = sha256_file(checkpoint)
    assert f"{out} is up to date (source sha256 {sha256[:12]}, converter {__version__}, checks passed)" in stdout
    assert f"{out}: 20 tensors, 67,172 parameters, float32, source sha256 {sha256[:12]}; checks passed" in stdout
    assert "reading" not in stderr and "check 1/" not in stderr
    assert snapshot(out.parent) == before


def test_a_different_source_is_named(built, capsys, tmp_path):
    out, checkpoint = built
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"other bytes")
    code, _, stderr = build(capsys, "--checkpoint", str(other), "--out", str(out))
    expected = f"converted from source sha256 {sha256_file(checkpoint)[:12]}..., not {sha256_file(other)[:12]}..."
    assert_refused(code, stderr, f"{out} exists and differs", expected)


def test_another_dtype_is_named(built, capsys):
    out, checkpoint = built
    code, _, stderr = build(capsys, "--checkpoint", str(checkpoint), "--out", str(out), "--dtype", "float16")
    assert_refused(code, stderr, "its weights are float32, not float16")


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("README.md", lambda p: p.write_text(p.read_text() + "edited\n"), "README.md changed after the checks"),
        ("config.json", lambda p: p.write_text(p.read_text() + " "), "config.json: does not match its sha256"),
        ("model.safetensors", flip_last_byte, "model.safetensors: does not"),
        ("notes.txt", lambda p: p.write_text("mine"), "unexpected ['notes.txt']"),
    ],
    ids=["card", "config", "weights", "extra file"],
)
def test_a_changed_file_is_named(name, change, message, built, capsys):
    out, checkpoint = built
    change(out / name)
    code, _, stderr = build(capsys, "--checkpoint", str(checkpoint), "--out", str(out))
    assert_refused(code, stderr, "was changed since it was sealed", message)


def edit_manifest(folder: Path, change) -> None:
    """Change manifest.json (which the seal does not cover: it is the seal)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(converter_version="0.0.1"), f"differs: built by converter 0.0.1, this is {__version__}"),
        (lambda m: m["checks"].update(passed=False), "its checks did not pass"),
        (lambda m: m.update(checks=None), "was built with --no-checks"),
        (lambda m: m.update(format_version=2), "is not a model folder"),
    ],
    ids=["converter version", "failed checks", "unchecked", "invalid manifest"],
)
def test_a_different_build_is_named(change, message, built, capsys):
    out, checkpoint = built
    edit_manifest(out, change)
    code, _, stderr = build(capsys, "--checkpoint", str(checkpoint), "--out", str(out))
    assert_refused(code, stderr, f"{out} exists and {message}")


def test_a_build_without_checks_is_not_up_to_date(built, capsys, tmp_path):
    _, checkpoint = built
    out = tmp_path / "unchecked"
    assert build(capsys, "--checkpoint", str(checkpoint), "--out", str(out), "--no-checks")[0] == 0
    code, _, stderr = build(capsys, "--checkpoint", str(checkpoint), "--out", str(out), "--no-checks")
    assert_refused(code, stderr, "was built with --no-checks")


def test_a_manifest_that_disagrees_with_its_report_is_refused(built, capsys):
    out, checkpoint = built
    edit_manifest(out, lambda m: m["checks"].update(weights_sha256="0" * 64))
    code, _, stderr = build(capsys, "--checkpoint", str(checkpoint), "--out", str(out))
    assert_refused(code, stderr, "disagree on the checks' outcome")


def write_recipes(folder: Path, checkpoint: Path, cache: Path, names: list[str]) -> Path:
    """Recipes named `names` whose source is `checkpoint`, already in the source cache `cache`."""
    sha256 = sha256_file(checkpoint)
    (cache / "sources" / sha256).mkdir(parents=True)
    shutil.copy(checkpoint, cache / "sources" / sha256 / checkpoint.name)
    folder.mkdir()
    for name in names:
        (folder / f"{name}.toml").write_text(
            f'name = "{name}"\ndescription = "small"\nbase_model = "me/small"\nlicense = "mit"\n'
            f'target_repo = "me/{name}"\n[source]\nfile_name = "{checkpoint.name}"\nsha256 = "{sha256}"\n'
            f'size = {checkpoint.stat().st_size}\n[source.pypi]\nrequirement = "none==0"\nmember = "small.ckpt"\n'
        )
    return folder


def test_up_to_date_recipes_are_skipped_and_the_others_built(built, capsys, tmp_path, monkeypatch):
    out, checkpoint = built
    monkeypatch.setenv("MLX_SEGMENTATION_CACHE", str(tmp_path / "cache"))
    recipes = write_recipes(tmp_path / "recipes", checkpoint, tmp_path / "cache", ["a", "b"])
    dist = tmp_path / "dist"
    dist.mkdir()
    out.rename(dist / "a")
    before = snapshot(dist / "a")
    code, stdout, stderr = build(capsys, "--recipes", str(recipes), "--dist", str(dist), "--no-checks")
    assert code == 0, stderr
    assert f"{dist / 'a'} is up to date" in stdout and f"{dist / 'b'}: 20 tensors" in stdout
    assert f"{dist / 'b'} is up to date" not in stdout and "checks not run" in stdout
    assert stderr.count("reading") == 1
    assert snapshot(dist / "a") == before
    assert sorted(p.name for p in dist.iterdir()) == ["a", "b"]


def test_push_publishes_up_to_date_recipes(built, capsys, tmp_path, monkeypatch):
    out, checkpoint = built
    monkeypatch.setenv("MLX_SEGMENTATION_CACHE", str(tmp_path / "cache"))
    recipes = write_recipes(tmp_path / "recipes", checkpoint, tmp_path / "cache", ["a", "b"])
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copytree(out, dist / "a")
    shutil.copytree(out, dist / "b")
    pushed = []
    monkeypatch.setattr(cli, "push", lambda folder, repo, **kwargs: pushed.append((folder, repo)))
    code, stdout, stderr = build(capsys, "--recipes", str(recipes), "--dist", str(dist), "--push")
    assert code == 0, stderr
    assert pushed == [(dist / "a", "me/a"), (dist / "b", "me/b")]


def test_forced_rebuild_announces_each_check_without_third_party_warnings(built):
    """--force rebuilds an up-to-date folder; the checks say where they are, and pyannote's known warnings
    (torchcodec at import, 'uem' approximated by pyannote.metrics) are not shown, even with -W default."""
    out, checkpoint = built
    before = json.loads((out / "manifest.json").read_text())["created"]
    result = subprocess.run(
        [sys.executable, "-W", "default", "-m", "converter", "build"]
        + ["--checkpoint", str(checkpoint), "--out", str(out), "--force"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "manifest.json").read_text())["created"] != before
    steps = [line for line in result.stderr.splitlines() if line.startswith("check ")]
    total = len(steps)
    assert [line.split(":")[0] for line in steps] == [f"check {i}/{total}" for i in range(1, total + 1)], steps
    assert steps[0] == f"check 1/{total}: component checks on 2 windows of real speech"
    assert steps[1] == f"check 2/{total}: full-model check on speech[0]"
    assert steps[-1].startswith(f"check {total}/{total}: pipeline check on sample.wav")
    assert "torchcodec" not in result.stderr and "'uem' was approximated" not in result.stderr
    assert "Warning" not in result.stderr, result.stderr
