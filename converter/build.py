"""One build: read a checkpoint, map its tensors, write the model folder; then, with a checker the
caller supplies (the CLI passes the parity checks), record its report, write the card and seal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlx.utils import tree_flatten

from mlx_segmentation.families import AnyConfig, build_model
from mlx_segmentation.manifest import CARD_FILE, Manifest

from .card import CardInfo, render_card
from .engine import Mapped, apply_rules
from .errors import ArchitectureError, ConverterError
from .families import converter_family, model_config
from .reader import SourceCheckpoint, read_checkpoint
from .writer import output_lock, record_checks, seal, staging_folder, write_model


class Report(Protocol):
    """What a build needs of a check report (the checks' own classes are never imported here)."""

    passed: bool
    weights_sha256: str

    def summary(self) -> str: ...

    def table(self) -> str: ...

    def markdown(self) -> str: ...

    def model_dump_json(self, *, indent: int | None = None) -> str: ...


Checker = Callable[[Path, SourceCheckpoint], Report]  # (the written model folder, its source) -> report


@dataclass(frozen=True)
class BuildResult:
    out: Path
    manifest: Manifest
    report: Report | None  # None: not checked by this build (--no-checks, or the folder was up to date)

    @property
    def checks_passed(self) -> bool | None:
        """As the manifest records: None if the checks never ran on this model."""
        return None if self.manifest.checks is None else self.manifest.checks.passed


def build(
    checkpoint: Path,
    out: Path,
    *,
    force: bool = False,
    dtype: str = "float32",
    card: CardInfo | None = None,
    check: Checker | None = None,
    log: Callable[[str], None] = print,
    source: SourceCheckpoint | None = None,
) -> BuildResult:
    """Convert `checkpoint` into the model folder `out`, atomically; checked, carded and sealed if `check` is given.

    `source`: the checkpoint already read (`read_checkpoint`), as `build --pipeline` does to check it first.
    """
    with output_lock(out, force, protected=[checkpoint]) as target, staging_folder(target) as staging:
        if source is None:
            log(f"reading {checkpoint}")
            source = read_checkpoint(checkpoint)
        config, mapped = convert(source, log)
        manifest = write_model(staging, config, mapped, source, dtype)
        report = None
        if check is not None:
            log("running parity checks")
            report = check(staging, source)
            manifest = record_checks(staging, report)
            card = card or CardInfo()
            name = card.name or target.name  # never the staging folder's name
            (staging / CARD_FILE).write_text(render_card(config, manifest, report, card, name))
            manifest = seal(staging)
    return BuildResult(out=out, manifest=manifest, report=report)


def convert(source: SourceCheckpoint, log: Callable[[str], None] = print) -> tuple[AnyConfig, dict[str, Mapped]]:
    """The config and the mapped tensors of a checkpoint; whatever goes wrong is one `ConverterError`."""
    try:
        config = model_config(source)
        log(f"architecture: {config.describe()}")
        model = build_model(config)
        expected = {name: tuple(p.shape) for name, p in tree_flatten(model.parameters())}
        mapped = apply_rules(source.tensors, converter_family(config.model_type).rules(config), expected)
    except ConverterError:
        raise
    except Exception as error:  # a hostile checkpoint can provoke anything; it is still one line
        detail = (str(error).splitlines() or [""])[0][:200]
        raise ArchitectureError(f"{source.path}: cannot convert ({type(error).__name__}: {detail})") from None
    log(f"mapped {len(source.tensors)} source tensors to {len(mapped)} MLX parameters")
    return config, mapped
