"""Crash safety of `python -m converter build`: killed (SIGKILL) at several moments of a checked
build, with and without --force, and two builds racing for one --out.

A crash leaves nothing a user sees: no output folder where there was none, the old folder intact
where --force was replacing one (or put back by the next build, for a crash between the two
renames), and the next build removes the crashed build's hidden staging folders."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from forge import small_pyannet

import mlx_segmentation

TIMEOUT = 300.0
pytestmark = pytest.mark.slow  # each test runs and kills whole builds in subprocesses


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return small_pyannet().write(tmp_path_factory.mktemp("crash") / "small.ckpt")


def build_command(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "converter", "build", "--checkpoint", str(checkpoint), "--out", str(out), *extra]


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def everything(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def staging(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.endswith(".partial")]


def wait_for(condition: Callable[[], bool], process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert process.poll() is None, f"the build ended (exit {process.returncode}) before the moment to kill it"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill the build"
        time.sleep(0.005)


# The moments: each a condition on the output's parent folder that holds while the build still runs.
MOMENTS: dict[str, Callable[[Path], bool]] = {
    "while reading": lambda parent: any(p.name.endswith(".lock") for p in parent.iterdir()),
    "weights written": lambda parent: any((p / "model.safetensors").exists() for p in staging(parent)),
    "checks running": lambda parent: (
        any((p / "manifest.json").exists() for p in staging(parent)) and time.sleep(3.0) is None
    ),
}


@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_kill_9_during_a_checked_build(checkpoint, tmp_path, moment, force):
    out = tmp_path / "model"
    before = None
    if force:
        subprocess.run(build_command(checkpoint, out, "--no-checks"), check=True, capture_output=True)
        before = snapshot(out)
    process = subprocess.Popen(
        build_command(checkpoint, out, *(["--force"] if force else [])),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: MOMENTS[moment](tmp_path), process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert visible(tmp_path) == (["model"] if force else [])
    if force:
        assert snapshot(out) == before
    rebuilt = subprocess.run(
        build_command(checkpoint, out, "--no-checks", *(["--force"] if force else [])), capture_output=True, text=True
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert everything(tmp_path) == ["model"]  # the crashed build's staging is gone too
    mlx_segmentation.load(out)


def test_kill_9_between_the_two_renames_of_force(checkpoint, tmp_path):
    """--force moves the old folder aside, then the new one in: a crash in between is undone next time."""
    out = tmp_path / "model"
    subprocess.run(build_command(checkpoint, out, "--no-checks"), check=True, capture_output=True)
    before = snapshot(out)
    crash_after_first_rename = (
        "import os, pathlib, signal, sys\n"
        "rename = pathlib.Path.rename\n"
        "def rename_then_die(self, target):\n"
        "    result = rename(self, target)\n"
        "    if str(target).endswith('.old'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return result\n"
        "pathlib.Path.rename = rename_then_die\n"
        "from converter.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", crash_after_first_rename, *build_command(checkpoint, out, "--no-checks", "--force")[3:]]
    )
    assert crashed.returncode == -signal.SIGKILL
    assert not out.exists() and any(p.name.endswith(".old") for p in tmp_path.iterdir())

    again = subprocess.run(build_command(checkpoint, out, "--no-checks"), capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr  # put back first, then refused
    assert snapshot(out) == before
    assert everything(tmp_path) == ["model"]


def test_sigterm_cleans_up_at_once(checkpoint, tmp_path):
    out = tmp_path / "model"
    process = subprocess.Popen(
        build_command(checkpoint, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: MOMENTS["weights written"](tmp_path), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130 and "error: interrupted; nothing was written" in stderr
    assert everything(tmp_path) == []


def test_two_builds_racing_for_one_out(checkpoint, tmp_path):
    """Without --force, exactly one of two simultaneous builds writes the folder; the other is refused."""
    out = tmp_path / "model"
    processes = [
        subprocess.Popen(
            build_command(checkpoint, out, "--no-checks"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=TIMEOUT), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2], results
    (refusal,) = [stderr for code, stderr in results if code == 2]
    assert "another build is writing it" in refusal or "pass --force" in refusal
    assert everything(tmp_path) == ["model"]
    mlx_segmentation.load(out)


def test_builds_racing_while_holding_the_lock(checkpoint, tmp_path):
    """While one build holds the folder, a second one is refused at once, naming the reason."""
    out = tmp_path / "model"
    first = subprocess.Popen(build_command(checkpoint, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: MOMENTS["weights written"](tmp_path), first)
    second = subprocess.run(build_command(checkpoint, out, "--no-checks", "--force"), capture_output=True, text=True)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.returncode == 2 and "another build is writing it right now" in second.stderr
