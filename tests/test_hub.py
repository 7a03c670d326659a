"""Publishing to the Hub and loading from it: card metadata, push (against a recording client), Hub cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError

from checks.report import CheckReport
from converter import cli
from converter.build import BuildResult, build
from converter.publish import PublishError, push
from mlx_segmentation.manifest import Manifest

FILES = ["README.md", "checks.json", "config.json", "manifest.json", "model.safetensors"]


@pytest.fixture
def folder(small_checked, tmp_path):
    """A copy of a checked build, free to be edited."""
    copy = tmp_path / "segmentation"
    shutil.copytree(small_checked, copy)
    return copy


class RecordingHub(HfApi):
    """huggingface_hub's own client, with the three calls we make recorded instead of sent."""

    def __init__(self, failures: list[Exception] | None = None):
        super().__init__(token="hf_recording")
        self.calls: list[tuple] = []
        self.repo: dict[str, bytes] = {}  # what the Hub would hold after the commits that succeeded
        self.failures = list(failures or [])

    def _maybe_fail(self):
        if self.failures:
            raise self.failures.pop(0)

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        self._maybe_fail()
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        operations = list(operations)
        self.calls.append(("create_commit", repo_id, [op.path_in_repo for op in operations], kwargs))
        self._maybe_fail()
        self.repo.update({op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations})
        return f"https://huggingface.co/{repo_id}/commit/0123"


def http_error(status: int) -> HfHubHTTPError:
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(f"{status} error", response=httpx2.Response(status, request=request))


@pytest.mark.slow
def test_card_is_valid_hub_metadata(published):
    card = ModelCard.load(published / "README.md")
    data = card.data
    assert data.library_name == "mlx" and data.license == "mit" and data.base_model == "pyannote/segmentation"
    assert data.pipeline_tag == "voice-activity-detection"
    assert set(data.tags) == {
        "mlx",
        "pyannote",
        "speaker-segmentation",
        "speaker-diarization",
        "voice-activity-detection",
    }
    assert data.datasets is None and data.metrics is None
    text = card.text
    assert (
        "speaker#1, speaker#2, speaker#3" in text and "270 samples (0.016875 s)" in text and "5 s at 16000 Hz" in text
    )
    assert 'mlx_segmentation.load("mlx-community/pyannote-segmentation")' in text
    assert "| speech[0] |" in text and "All checks passed" in text
    assert (
        "0b5b3216d60a2d32fc086b47ea8c67589aaeb26b7e07fcbe620d6d0b83e209ea" in text and "mlx-segmentation 0.1.0" in text
    )
    assert "`mit` license" in text


def test_push_creates_the_repo_and_uploads_everything_in_one_commit(folder):
    hub = RecordingHub()
    url = push(folder, "me/seg", private=True, commit_message="first", api=hub, log=lambda m: None)
    assert url.endswith("/commit/0123")
    assert [c[0] for c in hub.calls] == ["create_repo", "create_commit"]
    assert hub.calls[0][2] == {"repo_type": "model", "private": True, "exist_ok": True}
    _, repo, files, options = hub.calls[1]
    assert repo == "me/seg" and sorted(files) == FILES
    assert options["commit_message"] == "first" and options["revision"] is None
    assert hub.repo["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_push_to_a_branch_creates_it(folder):
    hub = RecordingHub()
    push(folder, "me/seg", revision="v1", api=hub, log=lambda m: None)
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "create_commit"]
    assert hub.calls[1][2]["branch"] == "v1" and hub.calls[2][3]["revision"] == "v1"


def test_dry_run_sends_nothing(folder):
    hub, lines = RecordingHub(), []
    push(folder, "me/seg", dry_run=True, api=hub, log=lambda m: None, show=lines.append)
    assert hub.calls == []
    printed = "\n".join(lines)
    for name in FILES:
        assert name in printed
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() in printed
    assert "library_name: mlx" in printed


def test_dry_run_prints_to_stdout(folder):
    run = subprocess.run(
        [sys.executable, "-m", "converter", "push", str(folder), "--repo", "me/seg", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "model.safetensors" in run.stdout and "library_name: mlx" in run.stdout and "# me/seg" in run.stdout
    assert run.stderr.strip() == ""


def test_a_checkpoint_builds_card_names_its_folder_and_cites_pyannote(small_checked):
    """Built with --checkpoint (no recipe): the card is rendered for the final folder, never the staging one."""
    text = (small_checked / "README.md").read_text()
    assert "\n# model\n" in text and 'mlx_segmentation.load("model")' in text and "--model model " in text
    assert ".partial" not in text and "pip install mlx-segmentation" not in text
    assert "@inproceedings{Bredin2020" in text and "@inproceedings{Bredin2021" in text  # multilabel: the 2021 paper


def test_push_makes_the_card_name_the_target_repo(folder):
    hub = RecordingHub()
    push(folder, "me/seg", api=hub, log=lambda m: None)
    card = hub.repo["README.md"].decode()
    assert "\n# me/seg\n" in card and 'mlx_segmentation.load("me/seg")' in card and "--model me/seg " in card
    assert "# model\n" not in card
    assert hub.repo["README.md"] == (folder / "README.md").read_bytes()
    manifest = Manifest.model_validate_json(hub.repo["manifest.json"])
    assert manifest.files["README.md"] == hashlib.sha256(hub.repo["README.md"]).hexdigest()
    push(folder, "me/seg", api=hub, log=lambda m: None)  # the resealed folder still verifies


def test_refuses_a_file_changed_after_checking(folder):
    card = folder / "README.md"
    card.write_text(card.read_text() + "\nedited\n")
    with pytest.raises(PublishError, match="README.md changed after the checks"):
        push(folder, "me/seg", api=RecordingHub(), log=lambda m: None)


def test_refuses_an_extra_file(folder):
    (folder / "notes.txt").write_text("hi")
    with pytest.raises(PublishError, match=r"unexpected \['notes.txt'\]"):
        push(folder, "me/seg", api=RecordingHub(), log=lambda m: None)


def test_refuses_failed_checks(folder):
    manifest = Manifest.model_validate_json((folder / "manifest.json").read_text())
    manifest.checks.passed = False
    (folder / "manifest.json").write_text(manifest.model_dump_json())
    with pytest.raises(PublishError, match="failed its checks"):
        push(folder, "me/seg", api=RecordingHub(), log=lambda m: None)


def test_refuses_unchecked_builds(fixture_checkpoints, tmp_path):
    out = build(fixture_checkpoints["per-layer"], tmp_path / "m", log=lambda m: None).out
    with pytest.raises(PublishError, match="checks were never run"):
        push(out, "me/seg", api=RecordingHub(), log=lambda m: None)


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "rejected the token"), (403, "no write access to me/seg"), (404, "refused the request")],
)
def test_hub_refusals_are_one_clear_error(folder, status, message):
    with pytest.raises(PublishError, match=message):
        push(folder, "me/seg", api=RecordingHub([http_error(status)]), log=lambda m: None)


def test_network_failures_are_retried_then_reported(folder):
    down = [httpx2.ConnectError("connection refused")] * 3
    hub = RecordingHub(down)
    with pytest.raises(PublishError, match="network failure talking to the Hub after 3 tries"):
        push(folder, "me/seg", api=hub, log=lambda m: None, pause=0)
    assert [c[0] for c in hub.calls] == ["create_repo"] * 3


def test_an_interrupted_upload_is_completed_by_a_rerun(folder, monkeypatch):
    import converter.publish as publish

    monkeypatch.setattr(publish, "ATTEMPTS", 1)  # no retry: the first run fails
    hub = RecordingHub()
    record_commit = hub.create_commit

    def commit_interrupted_once(repo_id, operations, **kwargs):
        if not hub.repo and len([c for c in hub.calls if c[0] == "create_commit"]) == 0:
            hub.calls.append(("create_commit", repo_id, "interrupted", kwargs))
            raise httpx2.ReadError("connection reset during upload")
        return record_commit(repo_id, operations, **kwargs)

    hub.create_commit = commit_interrupted_once
    with pytest.raises(PublishError, match="rerun to complete the upload"):
        push(folder, "me/seg", api=hub, log=lambda m: None, pause=0)
    assert hub.repo == {}  # a commit lands whole or not at all
    push(folder, "me/seg", api=hub, log=lambda m: None, pause=0)
    assert sorted(hub.repo) == FILES


def test_no_token_is_a_clear_error(folder, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run(
        [sys.executable, "-m", "converter", "push", str(folder), "--repo", "me/seg"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == "error: no Hugging Face token: set HF_TOKEN or run `hf auth login`"


def test_build_push_publishes_every_recipe_to_its_repo(monkeypatch, folder, tmp_path):
    pushed = []
    manifest = Manifest.model_validate_json((folder / "manifest.json").read_text())
    report = CheckReport.model_validate_json((folder / "checks.json").read_text())
    monkeypatch.setattr(cli, "build", lambda checkpoint, out, **kw: BuildResult(folder, manifest, report))
    monkeypatch.setattr(cli, "cached_source", lambda recipe: folder / "model.safetensors")
    monkeypatch.setattr(cli, "push", lambda out, repo, **kw: pushed.append((out, repo)))
    assert cli.main(["build", "--push", "--dist", str(tmp_path / "dist")]) == 0
    assert pushed == [
        (folder, "mlx-community/pyannote-segmentation-3.0"),
        (folder, "mlx-community/pyannote-segmentation"),
    ]


# Loading by repo id, from a Hub cache laid out as huggingface_hub lays it out.

COMMIT = "a" * 40


def make_hub_cache(cache: Path, repo_id: str, folder: Path, files: list[str], branch: str = "main") -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / branch).write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name in files:
        data = (folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


def load_offline(cache: Path, target: str, revision: str | None = None) -> subprocess.CompletedProcess:
    script = (
        "import sys, mlx.core as mx, mlx_segmentation\n"
        f"model = mlx_segmentation.load({target!r}, revision={revision!r})\n"
        "print(model(mx.zeros((1, 80000))).shape)\n"
    )
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "home")}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)


def test_load_by_repo_id_from_the_hub_cache_offline(small_checked, tmp_path):
    make_hub_cache(tmp_path / "hub", "org/seg", small_checked, ["config.json", "manifest.json", "model.safetensors"])
    run = load_offline(tmp_path / "hub", "org/seg")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(1, 293, 2)"


def test_load_a_revision(small_checked, tmp_path):
    make_hub_cache(
        tmp_path / "hub", "org/seg", small_checked, ["config.json", "manifest.json", "model.safetensors"], branch="v1"
    )
    assert load_offline(tmp_path / "hub", "org/seg", revision="v1").returncode == 0


def test_hub_cache_with_a_tampered_blob_is_refused(small_checked, tmp_path):
    make_hub_cache(tmp_path / "hub", "org/seg", small_checked, ["config.json", "manifest.json", "model.safetensors"])
    blob = (tmp_path / "hub" / "models--org--seg" / "snapshots" / COMMIT / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-5] ^= 1
    blob.write_bytes(bytes(data))
    run = load_offline(tmp_path / "hub", "org/seg")
    assert run.returncode != 0 and "does not match its sha256 in the manifest" in run.stderr


def test_hub_repo_missing_a_file_is_refused(small_checked, tmp_path):
    make_hub_cache(tmp_path / "hub", "org/seg", small_checked, ["config.json", "model.safetensors"])
    run = load_offline(tmp_path / "hub", "org/seg")
    assert run.returncode != 0 and "org/seg: the repo has no manifest.json" in run.stderr


def test_repo_not_in_the_cache_offline_is_a_clear_error(tmp_path):
    (tmp_path / "hub").mkdir()
    run = load_offline(tmp_path / "hub", "org/absent")
    assert run.returncode != 0 and "org/absent: not in the local Hub cache" in run.stderr
    assert "no model folder org/absent here, nor on the Hub" in run.stderr


def test_checkpoint_build_card_takes_license_and_base_model(tmp_path):
    from forge import small_pyannet

    checkpoint = small_pyannet().write(tmp_path / "small.ckpt")
    command = [
        sys.executable,
        "-m",
        "converter",
        "build",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(tmp_path / "m"),
    ]
    run = subprocess.run(
        [*command, "--license", "cc-by-4.0", "--base-model", "org/model"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    card = ModelCard.load(tmp_path / "m" / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.base_model == "org/model"
    assert "[org/model](https://huggingface.co/org/model)" in card.text and "`cc-by-4.0` license" in card.text


def test_license_flags_are_for_checkpoint_builds_only(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "converter", "build", "--dist", str(tmp_path), "--license", "mit"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "--license and --base-model describe a --checkpoint build" in run.stderr
