"""Publish a checked model or pipeline folder to the Hugging Face Hub, in one commit, with huggingface_hub's API."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from pydantic import BaseModel, ValidationError

from mlx_segmentation.loading import ModelLoadError, verify_folder
from mlx_segmentation.manifest import CARD_FILE, CHECKS_FILE, MANIFEST_FILE, WEIGHTS_FILE, ReportOutcome, sha256_file
from mlx_segmentation.pipeline_config import EMBEDDING_FOLDER, PIPELINE_CONFIG_FILE, SEGMENTATION_FOLDER
from mlx_segmentation.pipeline_loading import load_pipeline_parts
from mlx_segmentation.pipeline_manifest import PipelineManifest

from .errors import ConverterError
from .pipeline_build import seal_pipeline
from .writer import seal

ATTEMPTS = 3  # network failures are retried this many times in all, with a growing pause
T = TypeVar("T")


class PublishError(ConverterError):
    """The folder may not be published, or the Hub refused it."""


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    sha256: str


def verify_for_publishing(folder: Path) -> list[FileEntry]:
    """Verify what `load()` verifies (every file it reads, every tensor), every other file, and that the
    manifest and checks.json agree that the checks passed on exactly these weights; refuse otherwise."""
    if not (folder / MANIFEST_FILE).is_file():
        raise PublishError(f"{folder}: not a model folder (no {MANIFEST_FILE})")
    try:
        manifest = verify_folder(folder).manifest
    except ModelLoadError as error:
        raise PublishError(str(error)) from None
    if manifest.checks is None:
        raise PublishError(f"{folder}: the checks were never run on this model; build it without --no-checks")
    if not manifest.checks.passed:
        raise PublishError(f"{folder}: the model failed its checks ({manifest.checks.summary})")
    on_disk = {path.name: path for path in folder.iterdir() if path.name != MANIFEST_FILE}
    if set(on_disk) != set(manifest.files):
        raise PublishError(
            f"{folder}: files differ from those checked (unexpected {sorted(set(on_disk) - set(manifest.files))}, "
            f"missing {sorted(set(manifest.files) - set(on_disk))})"
        )
    entries = []
    for name, path in sorted(on_disk.items()):
        if not path.is_file():
            raise PublishError(f"{folder}: {name} is not a file")
        digest = sha256_file(path)
        if digest != manifest.files[name]:
            recorded = manifest.files[name]
            raise PublishError(
                f"{folder}: {name} changed after the checks (sha256 {digest[:12]}..., recorded {recorded[:12]}...)"
            )
        entries.append(FileEntry(name, path.stat().st_size, digest))
    if CARD_FILE not in manifest.files or CHECKS_FILE not in manifest.files:
        raise PublishError(f"{folder}: no model card ({CARD_FILE}) or check report ({CHECKS_FILE})")
    try:
        outcome = ReportOutcome.model_validate_json((folder / CHECKS_FILE).read_bytes())
    except ValidationError as error:
        raise PublishError(f"{folder / CHECKS_FILE}: not a check report ({str(error).splitlines()[0]})") from None
    recorded = (manifest.checks.passed, manifest.checks.weights_sha256, manifest.source.sha256)
    if (outcome.passed, outcome.weights_sha256, outcome.source_sha256) != recorded:
        raise PublishError(
            f"{folder}: {CHECKS_FILE} and {MANIFEST_FILE} disagree on the checks' outcome, weights or source"
        )
    if manifest.checks.weights_sha256 != manifest.weights_sha256:
        raise PublishError(f"{folder}: the checks ran on other weights than {WEIGHTS_FILE}")
    manifest_path = folder / MANIFEST_FILE
    return entries + [FileEntry(MANIFEST_FILE, manifest_path.stat().st_size, sha256_file(manifest_path))]


class PipelineOutcome(BaseModel):
    """What publishing reads of a pipeline's checks.json."""

    passed: bool


def is_pipeline_folder(folder: Path) -> bool:
    return (folder / PIPELINE_CONFIG_FILE).is_file()


def verify_pipeline_for_publishing(folder: Path) -> list[FileEntry]:
    """Verify what `load_pipeline()` verifies (every file, both models), that the pipeline checks and each model's
    checks passed (`verify_for_publishing`), and that checks.json agrees; refuse otherwise."""
    try:
        manifest = load_pipeline_parts(folder).manifest
    except ModelLoadError as error:
        raise PublishError(str(error)) from None
    if manifest.checks is None:
        raise PublishError(f"{folder}: the pipeline checks were never run; build it without --no-checks")
    if not manifest.checks.passed:
        raise PublishError(f"{folder}: the pipeline failed its checks ({manifest.checks.summary})")
    for model in (SEGMENTATION_FOLDER, EMBEDDING_FOLDER):
        verify_for_publishing(folder / model)
    if CARD_FILE not in manifest.files or CHECKS_FILE not in manifest.files:
        raise PublishError(f"{folder}: no card ({CARD_FILE}) or pipeline check report ({CHECKS_FILE})")
    try:
        outcome = PipelineOutcome.model_validate_json((folder / CHECKS_FILE).read_bytes())
    except ValidationError as error:
        raise PublishError(f"{folder / CHECKS_FILE}: not a check report ({str(error).splitlines()[0]})") from None
    if not outcome.passed:
        raise PublishError(f"{folder}: {CHECKS_FILE} and {MANIFEST_FILE} disagree on the checks' outcome")
    names = [*sorted(manifest.files), MANIFEST_FILE]
    return [FileEntry(name, (folder / name).stat().st_size, sha256_file(folder / name)) for name in names]


def reseal(folder: Path) -> None:
    """Seal a model or pipeline folder again after its card changed."""
    if is_pipeline_folder(folder):
        seal_pipeline(folder, PipelineManifest.model_validate_json((folder / MANIFEST_FILE).read_bytes()))
    else:
        seal(folder)


def push(
    folder: Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    api: HfApi | None = None,
    log: Callable[[str], None] = print,
    show: Callable[[str], None] = print,
    pause: float = 2.0,
) -> str | None:
    """Create `repo_id` if needed and upload the folder as one commit; returns the commit's URL.

    The card is made to name `repo_id` (its title and snippets named the build's own name): rewritten and the
    folder resealed before the upload. `dry_run` shows (on stdout) the files and the card that would be sent.
    """
    verify = verify_pipeline_for_publishing if is_pipeline_folder(folder) else verify_for_publishing
    entries = verify(folder)
    original = (folder / CARD_FILE).read_text()
    card = retargeted_card(original, repo_id)
    if dry_run:
        show(
            f"dry run: would upload to {repo_id}"
            + (f" (branch {revision})" if revision else "")
            + (", private" if private else "")
        )
        for entry in entries:
            show(f"  {entry.name:<32} {entry.size:>12,} bytes  sha256 {entry.sha256}")
        if card != original:
            show(f"(the card will name {repo_id}: {CARD_FILE} rewritten and the folder resealed before the upload)")
        show(card)
        return None
    if card != original:
        (folder / CARD_FILE).write_text(card)
        reseal(folder)
        entries = verify(folder)
        log(f"{CARD_FILE} now names {repo_id}; {folder} resealed")
    if api is None:
        token = get_token()
        if not token:
            raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
        api = HfApi(token=token)
    message = commit_message or f"Upload {folder.name} (converted and checked by mlx-segmentation)"
    _call(lambda: api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True), repo_id, log, pause)
    if revision:
        _call(
            lambda: api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True), repo_id, log, pause
        )
    operations = [CommitOperationAdd(path_in_repo=e.name, path_or_fileobj=str(folder / e.name)) for e in entries]
    info = _call(
        lambda: api.create_commit(repo_id, operations, commit_message=message, repo_type="model", revision=revision),
        repo_id,
        log,
        pause,
    )
    url = getattr(info, "commit_url", None) or str(info)
    log(f"published {folder} to {repo_id}: {url}")
    return url


def retargeted_card(text: str, repo_id: str) -> str:
    """The card's text with the name it was rendered for (title, `load(...)`, `load_pipeline(...)`, `--model`,
    `--pipeline`) replaced by `repo_id`."""
    old = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    if old is None or old == repo_id:
        return text
    return (
        text.replace(f"\n# {old}\n", f"\n# {repo_id}\n", 1)
        .replace(f'mlx_segmentation.load("{old}")', f'mlx_segmentation.load("{repo_id}")')
        .replace(f"--model {old} ", f"--model {repo_id} ")
        .replace(f'load_pipeline("{old}")', f'load_pipeline("{repo_id}")')
        .replace(f"--pipeline {old}\n", f"--pipeline {repo_id}\n")
    )


def _call(action: Callable[[], T], repo_id: str, log: Callable[[str], None], pause: float) -> T:
    """Run one Hub call; retry network failures, turn HTTP refusals into one clear line."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status == 401:
                raise PublishError("the Hub rejected the token (401): check HF_TOKEN or run `hf auth login`") from None
            if status == 403:
                raise PublishError(
                    f"no write access to {repo_id} (403): it belongs to someone else, or the token cannot write there"
                ) from None
            if status is not None and status < 500:
                raise PublishError(
                    f"the Hub refused the request for {repo_id} ({status}): {str(error).splitlines()[0]}"
                ) from None
            failure = f"server error {status}"
        except (_transport_error(), OSError) as error:
            failure = f"{type(error).__name__}: {error}"
        if attempt == ATTEMPTS:
            raise PublishError(
                f"network failure talking to the Hub after {ATTEMPTS} tries ({failure}); rerun to complete the upload"
            )
        log(f"Hub call failed ({failure}); retrying ({attempt}/{ATTEMPTS - 1})")
        time.sleep(pause * attempt)
    raise AssertionError("unreachable")


def _transport_error() -> type[Exception]:
    """huggingface_hub's HTTP client's network error class (httpx2 in huggingface_hub 2.x)."""
    import httpx2

    return httpx2.TransportError
