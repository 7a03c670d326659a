"""Every `sh` and `python` block of the README and of docs/ runs as written and prints what they show.

The blocks run in order, in one folder laid out like a clone after the README's first steps: `.venv`
(this interpreter's environment) and `dist/` (a copy of the `published` fixture, which is
`python -m converter build` itself). Two blocks are not run: the README's first (the set-up
commands, which CI runs: running them here would install and test recursively) and those marked
`network` (the Hub is out of reach); for the one that downloads pyannote's WeSpeaker checkpoint,
the fixture of the same class stands in for the downloaded file. An `output` block right after a
block is compared with that block's stdout.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"sh", "python"}
FENCE = re.compile(r"^```(.*)$")


@dataclass(frozen=True)
class Block:
    document: Path
    line: int  # of the opening fence, 1-based
    language: str
    tags: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, in order."""
    found, opening, body = [], None, []
    for number, line in enumerate(document.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if opening is None and fence:
            opening, body = (number, fence.group(1).split()), []
        elif opening is not None and line == "```":
            words = opening[1] or [""]
            found.append(Block(document, opening[0], words[0], tuple(words[1:]), "\n".join(body) + "\n"))
            opening = None
        elif opening is not None:
            body.append(line)
    assert opening is None, f"{document}:{opening[0]}: unclosed code block"
    return found


def runs(document: Path) -> list[tuple[Block, Block | None]]:
    """(block to run, the `output` block after it or None), in order; set-up and `network` blocks left out."""
    found = blocks(document)
    pairs = []
    for index, block in enumerate(found):
        if block.language not in RUNNABLE or "network" in block.tags:
            continue
        if document.name == "README.md" and block is found[0]:
            continue  # the set-up commands: CI runs them (.ci/run)
        after = found[index + 1] if index + 1 < len(found) else None
        pairs.append((block, after if after is not None and after.language == "output" else None))
    return pairs


def test_every_block_is_run_or_marked():
    """Runnable blocks are sh or python; an `output` block follows one; the README opens with the set-up."""
    readme = blocks(ROOT / "README.md")
    assert readme[0].language == "sh" and "pip install" in readme[0].text and "pytest" in readme[0].text
    for document in DOCUMENTS:
        found = blocks(document)
        for index, block in enumerate(found):
            assert block.language in {*RUNNABLE, "output", "text", ""}, f"{block.where}: unknown {block.language!r}"
            assert set(block.tags) <= {"network"}, f"{block.where}: unknown tags {block.tags}"
            if block.language == "output":
                before = found[index - 1] if index else None
                assert before is not None and before.language in RUNNABLE, f"{block.where}: output of nothing"
            if block.language == "python":
                compile(block.text, block.where, "exec")


@pytest.fixture(scope="module")
def clone(tmp_path_factory, published, fixture_checkpoints) -> Path:
    """A folder like a clone after `pip install` and `converter build`: `.venv` and `dist/`."""
    folder = tmp_path_factory.mktemp("clone")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(published.parent, folder / "dist")
    (folder / "wespeaker").mkdir()  # what `hf download pyannote/wespeaker-voxceleb-resnet34-LM` would fetch
    shutil.copy(fixture_checkpoints["wespeaker"], folder / "wespeaker" / "pytorch_model.bin")
    return folder


@pytest.mark.slow
def test_documentation_runs_as_written(clone):
    for document in DOCUMENTS:
        for block, expected in runs(document):
            command = (
                ["bash", "-euo", "pipefail", "-c", block.text] if block.language == "sh" else [sys.executable, "-"]
            )
            stdin = block.text if block.language == "python" else None
            done = subprocess.run(command, cwd=clone, input=stdin, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"{block.where} failed ({done.returncode}):\n{block.text}\n{done.stderr}"
            if expected is not None:
                assert done.stdout == expected.text, f"{block.where} printed:\n{done.stdout}"


def speed_tables(*arguments: str) -> subprocess.CompletedProcess:
    """`python benchmarks/tables.py ARGUMENTS`, from the repository's root."""
    script = ROOT / "benchmarks" / "tables.py"
    return subprocess.run([sys.executable, str(script), *arguments], cwd=ROOT, capture_output=True, text=True)


def test_speed_tables_match_their_results():
    """The speed tables of README.md and docs/speed.md are what benchmarks/results/ gives (`tables.py --write`)."""
    done = speed_tables("--check")
    assert done.returncode == 0, f"stale speed tables, run `python benchmarks/tables.py --write`:\n{done.stderr}"


def test_speed_tables_check_fails_on_other_results(tmp_path):
    """A changed number in one result file makes its table, and only its tables, stale; the docs are left alone."""
    import json

    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    changed = results / "h100_speed_batch256.json"
    data = json.loads(changed.read_text())
    data["mlx_pipeline_seconds"] = 9.99
    changed.write_text(json.dumps(data))
    before = (ROOT / "docs" / "speed.md").read_text()
    done = speed_tables("--check", "--results", str(results))
    assert done.returncode == 1
    assert "speed-table 'recording'" in done.stderr and "h100_speed_batch256.json" in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr  # the window table reads only that run's windows
    assert (ROOT / "docs" / "speed.md").read_text() == before

    (results / "cpu_speed.json").unlink()
    done = speed_tables("--check", "--results", str(results))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "cpu_speed.json" in done.stderr and "'cpu'" in done.stderr


def test_device_tables_from_mac_shaped_results(tmp_path):
    """`tables.py --device-results mac` (what benchmarks/mac.sh ends with) prints the tables of mac_*.json,
    tried on the H100's results renamed and relabelled as a Mac's."""
    import json

    source = ROOT / "benchmarks" / "results"
    copies = {f"h100_speed_batch{b}.json": f"mac_speed_batch{b}.json" for b in (32, 256, 1024)}
    for original, copy in copies.items():
        data = json.loads((source / original).read_text())
        data.update(device="Apple M4 Max", mlx_device="Device(gpu, 0)", torch_device="mps", torch_peak_memory_mib=None)
        (tmp_path / copy).write_text(json.dumps(data))
    done = speed_tables("--device-results", "mac", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (
        "**Apple M4 Max**" in done.stdout
        and "| batch 1024 | PyTorch's model in our windowing | **0.81** | 1.23 s | 1.52 s | 23.3 GiB / n/a |"
        in done.stdout
    )
    assert "| 1024 | **1.01** | 60,997 | 61,833 |" in done.stdout
    assert "mac_embedding_speed.json: not measured" in done.stdout

    shutil.copy(source / "h100_embedding_speed.json", tmp_path / "mac_embedding_speed.json")
    shutil.copy(source / "h100_diarization.json", tmp_path / "mac_diarization.json")
    done = speed_tables("--device-results", "mac", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "| 10 s | 32 | 1.32 | 4442.8 | 5880.0 | 0.9999999 |" in done.stdout
    assert "| ours, 60 min | 17.2 | 5.16 |" in done.stdout and "not measured" not in done.stdout

    assert speed_tables("--device-results", "nothing", "--results", str(tmp_path)).returncode == 1
