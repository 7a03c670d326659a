"""One build: read a checkpoint, map its tensors, write the model folder, run the checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlx.utils import tree_flatten

from mlx_segmentation.config import EmbeddingConfig, ModelConfig
from mlx_segmentation.manifest import CARD_FILE, Manifest
from mlx_segmentation.pyannet import PyanNet
from mlx_segmentation.wespeaker import WeSpeakerResNet34

from .architecture import model_config
from .card import render_card
from .engine import Mapped, apply_rules
from .errors import ArchitectureError, ConverterError
from .reader import SourceCheckpoint, read_checkpoint
from .recipe import Gates, Recipe, default_gates
from .rules import Rule
from .rules.pyannet import pyannet_rules
from .rules.wespeaker import wespeaker_rules
from .writer import output_lock, seal, staging_folder, write_model


@dataclass(frozen=True)
class BuildResult:
    out: Path
    manifest: Manifest
    checks_passed: bool | None  # None: checks not run
    checks_summary: str
    checks_table: str = ""


def build(
    checkpoint: Path,
    out: Path,
    *,
    force: bool = False,
    dtype: str = "float32",
    gates: Gates | None = None,
    recipe: Recipe | None = None,
    run_checks: bool = True,
    log=print,
) -> BuildResult:
    if run_checks:
        gates = gates or (recipe.gates.get(dtype) if recipe else None) or default_gates(dtype)
        _require_reference()
    with output_lock(out, force, protected=[checkpoint]) as target, staging_folder(target) as staging:
        log(f"reading {checkpoint}")
        source = read_checkpoint(checkpoint)
        config, mapped = convert(source, log)
        manifest = write_model(staging, config, mapped, source, dtype)
        passed, summary, table = None, "not run", ""
        if run_checks:
            from checks.run import run_checks as run_parity_checks

            log("running parity checks")
            report = run_parity_checks(staging, source, gates, label=str(out), log=log)
            passed, summary, table = report.passed, report.summary(), report.table()
            (staging / CARD_FILE).write_text(render_card(staging, recipe))
        manifest = seal(staging)
    return BuildResult(out=out, manifest=manifest, checks_passed=passed, checks_summary=summary, checks_table=table)


def convert(source: SourceCheckpoint, log=print) -> tuple[ModelConfig | EmbeddingConfig, dict[str, Mapped]]:
    """The config and the mapped tensors of a checkpoint; whatever goes wrong is one `ConverterError`."""
    try:
        config = model_config(source)
        log(f"architecture: {describe(config)}")
        model, rules = model_and_rules(config)
        expected = {name: tuple(p.shape) for name, p in tree_flatten(model.parameters())}
        mapped = apply_rules(source.tensors, rules, expected)
    except ConverterError:
        raise
    except Exception as error:  # a hostile checkpoint can provoke anything; it is still one line
        detail = (str(error).splitlines() or [""])[0][:200]
        raise ArchitectureError(f"{source.path}: cannot convert ({type(error).__name__}: {detail})") from None
    log(f"mapped {len(source.tensors)} source tensors to {len(mapped)} MLX parameters")
    return config, mapped


def model_and_rules(config: ModelConfig | EmbeddingConfig) -> tuple[PyanNet | WeSpeakerResNet34, list[Rule]]:
    """The MLX model a config describes, and the rules that map its checkpoint."""
    if isinstance(config, EmbeddingConfig):
        return WeSpeakerResNet34(config), wespeaker_rules()
    return PyanNet(config), pyannet_rules(config.sample_rate)


def describe(config: ModelConfig | EmbeddingConfig) -> str:
    if isinstance(config, EmbeddingConfig):
        f, r = config.fbank, config.resnet
        return (
            f"WeSpeakerResNet34 (blocks {'-'.join(map(str, r.num_blocks))}, {r.m_channels} channels, "
            f"{r.embed_dim}-d embeddings), {f.num_mel_bins}-bin fbank, {f.frame_length:g}/{f.frame_shift:g} ms, {f.window_type}"
        )
    spec = config.specifications
    return (
        f"PyanNet, LSTM {config.lstm.num_layers} x {config.lstm.hidden_size} "
        f"({'bi' if config.lstm.bidirectional else 'uni'}directional, {'monolithic' if config.lstm.monolithic else 'per layer'}), "
        f"linear {config.linear.num_layers} x {config.linear.hidden_size}, {spec.num_outputs} outputs "
        f"({'powerset' if spec.powerset else spec.problem.lower()}), {spec.duration:g} s windows"
    )


def _require_reference() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ConverterError("the parity checks need torch: pip install 'mlx-segmentation[reference]', or pass --no-checks") from None
