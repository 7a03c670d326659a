"""`python -m converter build --pipeline`: pyannote speaker-diarization folders to sealed MLX pipeline folders,
and `load_pipeline_parts` verifying them (issue #14)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pipeline_sources import COMMUNITY_1, SPEAKER_DIARIZATION_3_1, make_3_1, make_community_1
from pydantic import BaseModel

from converter.cli import main
from converter.pipeline_build import build_pipeline
from mlx_segmentation import ModelLoadError, load, loading, pipeline_loading
from mlx_segmentation.loading import tensor_sha256
from mlx_segmentation.manifest import sha256_file
from mlx_segmentation.pipeline_config import AgglomerativeParams, VBxParams
from mlx_segmentation.pipeline_loading import load_pipeline_parts
from mlx_segmentation.plda import PLDA

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sources(tmp_path_factory, real_checkpoint_3, fixture_checkpoints) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    segmentation, embedding = real_checkpoint_3, fixture_checkpoints["wespeaker"]
    return {
        "community-1": make_community_1(root / "community-1", segmentation, embedding),
        "3.1": make_3_1(root / "3.1", segmentation, embedding),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory, sources) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("built")
    for name, source in sources.items():
        assert main(["build", "--no-checks", "--pipeline", str(source), "--out", str(out / name)]) == 0
    return {name: out / name for name in sources}


def same_weights(ours, checkpoint_folder: Path) -> None:
    theirs = load(checkpoint_folder)
    from mlx.utils import tree_flatten

    mine, expected = dict(tree_flatten(ours.parameters())), dict(tree_flatten(theirs.parameters()))
    assert mine.keys() == expected.keys()
    assert all(tensor_sha256(mine[k]) == tensor_sha256(expected[k]) for k in mine)


def test_community_1_folder_loads_as_its_sources(built, sources, tmp_path, real_checkpoint_3, fixture_checkpoints):
    folder = built["community-1"]
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "embedding/config.json",
        "embedding/manifest.json",
        "embedding/model.safetensors",
        "manifest.json",
        "pipeline.json",
        "plda.safetensors",
        "segmentation/config.json",
        "segmentation/manifest.json",
        "segmentation/model.safetensors",
    ]
    parts = load_pipeline_parts(folder)
    assert parts.config.clustering == VBxParams(threshold=0.6, Fa=0.07, Fb=0.8)
    assert parts.config.embedding_exclude_overlap and parts.config.segmentation_threshold is None
    assert parts.manifest.checks is None
    assert set(parts.manifest.source.files) == {
        "config.yaml",
        "segmentation/pytorch_model.bin",
        "embedding/pytorch_model.bin",
        "plda/xvec_transform.npz",
        "plda/plda.npz",
    }
    # the models are those `build --checkpoint` makes of the same checkpoints
    for name, checkpoint in (("segmentation", real_checkpoint_3), ("embedding", fixture_checkpoints["wespeaker"])):
        assert main(["build", "--no-checks", "--checkpoint", str(checkpoint), "--out", str(tmp_path / name)]) == 0
        same_weights(getattr(parts, name), tmp_path / name)
    plda = sources["community-1"] / "plda"
    expected = PLDA(**np.load(plda / "xvec_transform.npz"), **np.load(plda / "plda.npz"))
    for name in ("mean1", "mean2", "lda", "mu", "tr", "psi"):
        assert np.array_equal(getattr(parts.plda, name), getattr(expected, name)), name
        assert getattr(parts.plda, name).dtype == np.float64


def test_3_1_folder_loads_without_plda(built):
    parts = load_pipeline_parts(built["3.1"])
    assert parts.config.clustering == AgglomerativeParams()
    assert parts.plda is None and not (built["3.1"] / "plda.safetensors").exists()
    assert set(parts.manifest.source.files) == {"config.yaml", "models/segmentation.bin", "models/embedding.bin"}


PYANNOTE_LOADS = """
import sys, os
from pyannote.audio import Pipeline
from pyannote.audio.pipelines import speaker_diarization
folder, plda = sys.argv[1], sys.argv[2] == "True"
if not plda:  # pyannote 4.0.7 fetches community-1's PLDA even for clustering that never uses it
    speaker_diarization.get_plda = lambda *args, **kwargs: None
os.chdir(folder)  # 3.1's relative model paths are pyannote's relative to the working folder
pipeline = Pipeline.from_pretrained(folder)
print(type(pipeline).__name__, pipeline.klustering, pipeline._plda is not None)
"""


@pytest.mark.parametrize("layout, plda", [("community-1", True), ("3.1", False)])
def test_pyannote_loads_the_fixture_folders(sources, layout, plda):
    """The fixture layouts are genuine: pyannote.audio's own loader reads them, offline."""
    env = {"HF_HUB_OFFLINE": "1", "PYANNOTE_METRICS_ENABLED": "0", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", PYANNOTE_LOADS, str(sources[layout]), str(plda)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    clustering = SPEAKER_DIARIZATION_3_1 if layout == "3.1" else COMMUNITY_1
    assert run.stdout.split() == ["SpeakerDiarization", clustering["pipeline"]["params"]["clustering"], str(plda)]


def edit_yaml(key_path: list[str], value):
    def edit(folder: Path) -> None:
        config = yaml.safe_load((folder / "config.yaml").read_text())
        node = config
        for key in key_path[:-1]:
            node = node[key]
        node[key_path[-1]] = value
        (folder / "config.yaml").write_text(yaml.safe_dump(config))

    return edit


def replace_npz(file: str, **arrays):
    def edit(folder: Path) -> None:
        path = folder / "plda" / file
        current = dict(np.load(path))
        np.savez(path, **{**current, **arrays})

    return edit


def pickled_npy(folder: Path) -> None:
    with open(folder / "plda" / "plda.npz", "wb") as file:
        np.save(file, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def pickled_npz(folder: Path) -> None:
    path = folder / "plda" / "plda.npz"
    np.savez(path, **{**np.load(path), "psi": np.array([{"a": 1}], dtype=object)})


BAD_SOURCES = {
    "no config.yaml": (lambda f: (f / "config.yaml").unlink(), "config.yaml: missing"),
    "no segmentation": (lambda f: (f / "segmentation" / "pytorch_model.bin").unlink(), "segmentation model"),
    "no embedding": (lambda f: shutil.rmtree(f / "embedding"), "embedding model"),
    "no plda": (lambda f: (f / "plda" / "plda.npz").unlink(), "plda.npz: missing"),
    "segmentation model as the embedding": (
        lambda f: shutil.copyfile(f / "segmentation" / "pytorch_model.bin", f / "embedding" / "pytorch_model.bin"),
        "a pyannet model, where the pipeline needs a wespeaker_resnet model",
    ),
    "embedding model as the segmentation": (
        lambda f: shutil.copyfile(f / "embedding" / "pytorch_model.bin", f / "segmentation" / "pytorch_model.bin"),
        "a wespeaker_resnet model, where the pipeline needs a pyannet model",
    ),
    "unknown clustering": (
        edit_yaml(["pipeline", "params", "clustering"], "OracleClustering"),
        "clustering 'OracleClustering' is not supported",
    ),
    "wrong shape": (replace_npz("plda.npz", tr=np.eye(127)), "tr has shape (127, 127)"),
    "lda for other x-vectors": (
        replace_npz("xvec_transform.npz", mean1=np.zeros(192), lda=np.zeros((192, 128))),
        "192-d x-vectors",
    ),
    "pickled npy": (pickled_npy, "pickled objects"),
    "pickled array in the npz": (pickled_npz, "pickled objects"),
    "integer dtype": (replace_npz("plda.npz", psi=np.arange(128)), "psi is int64"),
    "NaN": (replace_npz("plda.npz", mu=np.full(128, np.nan)), "mu holds NaN"),
    "not a mapping": (lambda f: (f / "config.yaml").write_text("- a\n- list\n"), "must be a mapping"),
    "unknown pipeline": (
        edit_yaml(["pipeline", "name"], "pyannote.audio.pipelines.OverlappedSpeechDetection"),
        "pipeline.name is",
    ),
    "path outside": (edit_yaml(["pipeline", "params", "embedding"], "../elsewhere"), "not inside the pipeline folder"),
    "Fa NaN": (
        edit_yaml(["params", "clustering", "Fa"], float("nan")),
        "invalid params.clustering for VBxClustering (Fa:",
    ),
    "batch size 0": (edit_yaml(["pipeline", "params", "embedding_batch_size"], 0), "invalid pipeline parameters"),
    "negative min_duration_off": (
        edit_yaml(["params", "segmentation", "min_duration_off"], -1.0),
        "invalid pipeline parameters",
    ),
}


@pytest.mark.parametrize("edit, message", BAD_SOURCES.values(), ids=BAD_SOURCES)
def test_bad_pipeline_sources_get_one_line_and_nothing_is_written(sources, tmp_path, capsys, edit, message):
    source = tmp_path / "source"
    shutil.copytree(sources["community-1"], source)
    edit(source)
    out = tmp_path / "dist" / "pipeline"
    assert main(["build", "--no-checks", "--pipeline", str(source), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "dist").exists()
    assert "mapped" not in captured.out  # refused before either model was converted


def test_existing_out_needs_force(sources, tmp_path, capsys):
    out = tmp_path / "pipeline"
    out.mkdir()
    assert main(["build", "--no-checks", "--pipeline", str(sources["3.1"]), "--out", str(out)]) == 2
    assert "is not a pipeline folder (no manifest.json); pass --force to replace it" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def edit_json(name: str):
    def edit(folder: Path) -> None:
        config = json.loads((folder / name).read_text())
        config["min_duration_off"] = 0.5
        (folder / name).write_text(json.dumps(config))

    return edit


def flip_last_byte(name: str):
    def edit(folder: Path) -> None:
        data = bytearray((folder / name).read_bytes())
        data[-1] ^= 1
        (folder / name).write_bytes(bytes(data))

    return edit


TAMPERED = {
    "pipeline.json edited": (edit_json("pipeline.json"), "pipeline.json: does not match"),
    "plda.safetensors edited": (flip_last_byte("plda.safetensors"), "plda.safetensors: does not match"),
    "a sub-folder's file edited": (flip_last_byte("embedding/config.json"), "embedding/config.json: does not match"),
    "a sub-folder's file removed": (lambda f: (f / "segmentation" / "config.json").unlink(), "config.json: missing"),
    "an extra file": (lambda f: (f / "segmentation" / "notes.txt").write_text("hi"), "segmentation/notes.txt"),
}


@pytest.mark.parametrize("edit, message", TAMPERED.values(), ids=TAMPERED)
def test_tampered_pipeline_folders_are_refused(built, tmp_path, edit, message):
    folder = tmp_path / "pipeline"
    shutil.copytree(built["community-1"], folder)
    edit(folder)
    with pytest.raises(ModelLoadError, match=message):
        load_pipeline_parts(folder)


def test_each_checkpoint_is_read_once(sources, tmp_path, monkeypatch):
    """build --pipeline reads each checkpoint once: checked for its family, then converted from what was read."""
    import converter.build
    import converter.pipeline_build

    reads: list[Path] = []
    original = converter.pipeline_build.read_checkpoint

    def counting(path: Path):
        reads.append(path)
        return original(path)

    monkeypatch.setattr(converter.pipeline_build, "read_checkpoint", counting)
    monkeypatch.setattr(converter.build, "read_checkpoint", counting)
    build_pipeline(sources["community-1"], tmp_path / "out", log=lambda message: None)
    assert len(reads) == len(set(reads)) == 2


def test_a_model_file_resealed_only_in_the_pipeline_manifest_is_refused(built, tmp_path):
    """The pipeline manifest vouches for the bytes, the model's own manifest must agree with it."""
    folder = tmp_path / "pipeline"
    shutil.copytree(built["community-1"], folder)
    flip_last_byte("segmentation/model.safetensors")(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["segmentation/model.safetensors"] = sha256_file(folder / "segmentation" / "model.safetensors")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="model.safetensors: does not match its sha256 in the manifest"):
        load_pipeline_parts(folder)


def test_each_file_is_read_once(built, monkeypatch):
    """The pipeline manifest's check reads and hashes every file; the models load from those bytes."""
    reads: list[str] = []
    original = pipeline_loading._read_file

    def counting(path: Path) -> bytes:
        reads.append(path.relative_to(built["community-1"]).as_posix())
        return original(path)

    monkeypatch.setattr(pipeline_loading, "_read_file", counting)
    monkeypatch.setattr(loading, "_read_file", counting)
    load_pipeline_parts(built["community-1"])
    assert sorted(reads) == sorted(set(reads))
    assert {"segmentation/model.safetensors", "embedding/model.safetensors", "manifest.json"} <= set(reads)


class PassingReport(BaseModel):
    """A stand-in for the parity checks' report: what a build records of it, and nothing checked."""

    passed: bool = True
    weights_sha256: str
    source_sha256: str

    def summary(self) -> str:
        return "passed (stand-in)"

    def table(self) -> str:
        return ""

    def markdown(self) -> str:
        return ""


def passing_checker(folder: Path, source) -> PassingReport:
    return PassingReport(weights_sha256=sha256_file(folder / "model.safetensors"), source_sha256=source.sha256)


def passing_pipeline_checker(folder: Path, source) -> PassingReport:
    return PassingReport(weights_sha256="", source_sha256="")


def test_a_second_build_of_the_same_sources_is_up_to_date(checked, sources, tmp_path, capsys):
    out = tmp_path / "pipeline"
    shutil.copytree(checked, out)
    sealed = (out / "manifest.json").read_bytes()
    for extra in ([], ["--no-checks"]):
        assert main(["build", *extra, "--pipeline", str(sources["community-1"]), "--out", str(out)]) == 0
        assert f"{out} is up to date (config.yaml sha256 " in capsys.readouterr().out
    assert (out / "manifest.json").read_bytes() == sealed

    flip_last_byte("plda.safetensors")(out)
    assert main(["build", "--pipeline", str(sources["community-1"]), "--out", str(out)]) == 2
    assert "was changed since it was sealed" in capsys.readouterr().err


def test_other_sources_or_unchecked_builds_are_not_up_to_date(built, sources, tmp_path, capsys):
    assert main(["build", "--pipeline", str(sources["community-1"]), "--out", str(built["community-1"])]) == 2
    assert "was built with --no-checks; pass --force to replace it" in capsys.readouterr().err
    models_only = tmp_path / "models-checked"
    build_pipeline(sources["community-1"], models_only, check=passing_checker, log=lambda message: None)
    assert main(["build", "--pipeline", str(sources["community-1"]), "--out", str(models_only)]) == 2
    assert "was built without the pipeline checks; pass --force to replace it" in capsys.readouterr().err
    assert main(["build", "--pipeline", str(sources["3.1"]), "--out", str(built["community-1"])]) == 2
    assert "differs: converted from other sources" in capsys.readouterr().err


def test_the_pipeline_checks_summary_is_recorded(sources, tmp_path):
    def check_pipeline(folder: Path, source) -> PassingReport:
        assert (folder / "pipeline.json").is_file() and source.clustering == "AgglomerativeClustering"
        return PassingReport(weights_sha256="", source_sha256="")

    out = tmp_path / "pipeline"
    build_pipeline(sources["3.1"], out, check_pipeline=check_pipeline, log=lambda message: None)
    parts = load_pipeline_parts(out)
    assert parts.manifest.checks.passed and parts.manifest.checks.summary == "passed (stand-in)"


class FailingPipelineReport(BaseModel):
    passed: bool = False

    def summary(self) -> str:
        return "FAILED: sample.wav: DER vs pyannote 12.000% (stand-in)"

    def table(self) -> str:
        return "pipeline check (stand-in table)"


def test_a_failing_pipeline_is_not_written(sources, tmp_path, capsys, monkeypatch):
    """The pipeline checks' table on stdout, one error line, exit 1 as for failing model checks, and no folder."""
    from converter import cli

    monkeypatch.setattr(cli, "parity_checker", lambda *args, **kwargs: passing_checker)
    monkeypatch.setattr(cli, "pipeline_checker", lambda label: lambda folder, source: FailingPipelineReport())
    out = tmp_path / "pipeline"
    assert main(["build", "--pipeline", str(sources["community-1"]), "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert "pipeline check (stand-in table)" in printed.out
    assert printed.err.splitlines()[-1] == (
        "error: the pipeline checks failed, nothing written: FAILED: sample.wav: DER vs pyannote 12.000% (stand-in)"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_hub_repo_downloads_exactly_the_sealed_files(built, tmp_path, monkeypatch):
    asked = []

    def download(repo_id: str, revision: str | None = None, files: list[str] = []) -> Path:
        asked.append((repo_id, revision, list(files)))
        snapshot = tmp_path / "snapshot"
        for name in files:
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built["community-1"] / name, snapshot / name)
        return snapshot

    monkeypatch.setattr(pipeline_loading, "download", download)
    parts = load_pipeline_parts("org/pipeline", revision="v1")
    sealed = json.loads((built["community-1"] / "manifest.json").read_text())["files"]
    files = ["manifest.json", *sorted(sealed)]
    assert asked == [("org/pipeline", "v1", ["manifest.json"]), ("org/pipeline", "v1", files)]
    assert parts.plda is not None


def diarize_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlx_segmentation", "diarize", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (["--num-speakers", "0"], "num_speakers must be at least 1"),
        (["--min-speakers", "3", "--max-speakers", "2"], "min_speakers must be smaller than"),
        (["--rttm", "absent/out.rttm"], "does not exist"),
        (["--pipeline", "no/such-pipeline"], "no/such-pipeline"),
        ([], "no pipeline folder dist/speaker-diarization here"),
        (["--segmentation-batch-size", "0"], "--segmentation-batch-size must be at least 1, got 0"),
        (["--embedding-batch-size", "-3"], "--embedding-batch-size must be at least 1, got -3"),
    ],
)
def test_diarize_options_get_one_clear_line_before_any_work(tmp_path, options, message):
    run = diarize_cli("absent.wav", *options, cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], run.stderr


@pytest.mark.slow
def test_diarize_cli_runs_a_built_pipeline(built, tmp_path):
    """The command line prints what `load_pipeline(folder)(audio)` returns, and saves its speaker embeddings."""
    import soundfile

    from checks.audio import sample_wav
    from mlx_segmentation import load_pipeline

    audio, rate = soundfile.read(sample_wav(), dtype="float32")
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, audio[: 12 * rate], rate)  # two 10 s windows
    run = diarize_cli(str(clip), "--pipeline", str(built["community-1"]), "--embeddings", str(tmp_path / "e.npy"))
    assert run.returncode == 0, run.stderr
    result = load_pipeline(built["community-1"])(clip)
    assert run.stdout == result.to_rttm("clip") and run.stdout.startswith("SPEAKER clip 1 ")
    assert np.array_equal(np.load(tmp_path / "e.npy"), result.speaker_embeddings)
    exclusive = diarize_cli(str(clip), "--pipeline", str(built["community-1"]), "--exclusive")
    assert exclusive.returncode == 0 and exclusive.stdout == result.to_rttm("clip", exclusive=True)
    one_at_a_time = ["--segmentation-batch-size", "1", "--embedding-batch-size", "1"]
    batched = diarize_cli(str(clip), "--pipeline", str(built["community-1"]), *one_at_a_time)
    assert batched.returncode == 0 and batched.stdout == run.stdout  # one window per forward: the same turns


@pytest.fixture(scope="module")
def checked(tmp_path_factory, sources) -> Path:
    """A community-1 pipeline built with stand-in checks (models and pipeline), as a publishable folder."""
    out = tmp_path_factory.mktemp("checked") / "speaker-diarization"
    build_pipeline(
        sources["community-1"],
        out,
        check=passing_checker,
        check_pipeline=passing_pipeline_checker,
        log=lambda message: None,
    )
    return out


def test_push_publishes_a_checked_pipeline_in_one_commit(checked, tmp_path):
    from test_hub import RecordingHub

    from converter.publish import push

    folder = tmp_path / "speaker-diarization"
    shutil.copytree(checked, folder)
    hub = RecordingHub()
    push(folder, "me/diarization", api=hub, log=lambda message: None)
    assert [call[0] for call in hub.calls] == ["create_repo", "create_commit"]
    manifest = load_pipeline_parts(folder).manifest  # resealed after the card was retargeted
    assert sorted(hub.repo) == sorted([*manifest.files, "manifest.json"])
    assert {"segmentation/model.safetensors", "embedding/checks.json", "plda.safetensors", "checks.json"} <= set(
        hub.repo
    )
    assert all(hub.repo[name] == (folder / name).read_bytes() for name in hub.repo)
    card = hub.repo["README.md"].decode()
    assert "# me/diarization" in card and 'load_pipeline("me/diarization")' in card
    assert "--pipeline me/diarization\n" in card and "# speaker-diarization\n" not in card


@pytest.mark.parametrize(
    "edit, message",
    {
        "pipeline checks not run": (None, "the pipeline checks were never run; build it without --no-checks"),
        "a file changed": (flip_last_byte("plda.safetensors"), "does not match its sha256"),
        "a model's checks not run": ("no checks", "the checks were never run on this model"),
    }.values(),
    ids=["pipeline checks not run", "a file changed", "a model's checks not run"],
)
def test_push_refuses_unchecked_or_changed_pipelines(checked, sources, tmp_path, edit, message):
    from converter.publish import PublishError, push

    folder = tmp_path / "speaker-diarization"
    if edit is None:
        build_pipeline(sources["community-1"], folder, check=passing_checker, log=lambda message: None)
    elif edit == "no checks":
        build_pipeline(sources["community-1"], folder, check_pipeline=passing_pipeline_checker, log=print)
    else:
        shutil.copytree(checked, folder)
        edit(folder)
    with pytest.raises(PublishError, match=message):
        push(folder, "me/diarization", dry_run=True, log=lambda message: None, show=lambda line: None)
