"""The model card (`README.md` with Hub metadata) of a checked model folder, rendered from the objects
in hand: the config, the manifest, the check report and what the card says of the model's origin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from huggingface_hub import ModelCard, ModelCardData
from pydantic import BaseModel, ConfigDict

from mlx_segmentation.config import PyanNetConfig, WeSpeakerConfig
from mlx_segmentation.families import AnyConfig
from mlx_segmentation.manifest import CHECKS_FILE, MANIFEST_FILE, Manifest

from .recipe import Recipe

PYPI_NAME = "mlx-segmentation"
INSTALL = "pip install . (in a clone of the mlx-segmentation repository; not yet on PyPI)"

# BibTeX, as pyannote's own model cards cite its work.
PYANNOTE_AUDIO = """@inproceedings{Bredin2020,
  Title = {{pyannote.audio: neural building blocks for speaker diarization}},
  Author = {{Bredin}, Herv{\\'e} and {Yin}, Ruiqing and {Coria}, Juan Manuel and {Gelly}, Gregory and {Korshunov}, Pavel
    and {Lavechin}, Marvin and {Fustes}, Diego and {Titeux}, Hadrien and {Bouaziz}, Wassim and {Gill}, Marie-Philippe},
  Booktitle = {ICASSP 2020, IEEE International Conference on Acoustics, Speech, and Signal Processing},
  Address = {Barcelona, Spain},
  Month = {May},
  Year = {2020},
}"""
SEGMENTATION_2021 = """@inproceedings{Bredin2021,
  Title = {{End-to-end speaker segmentation for overlap-aware resegmentation}},
  Author = {{Bredin}, Herv{\\'e} and {Laurent}, Antoine},
  Booktitle = {Proc. Interspeech 2021},
  Address = {Brno, Czech Republic},
  Month = {August},
  Year = {2021},
}"""
POWERSET_2023 = """@inproceedings{Plaquet23,
  author={Alexis Plaquet and Hervé Bredin},
  title={{Powerset multi-class cross entropy loss for neural speaker diarization}},
  year=2023,
  booktitle={Proc. INTERSPEECH 2023},
}"""
WESPEAKER_2023 = """@inproceedings{Wang2023,
  title={Wespeaker: A research and production oriented speaker embedding learning toolkit},
  author={Wang, Hongji and Liang, Chengdong and Wang, Shuai and Chen, Zhengyang and Zhang, Binbin and Xiang, Xu
    and Deng, Yanlei and Qian, Yanmin},
  booktitle={ICASSP 2023, IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  pages={1--5},
  year={2023},
  organization={IEEE}
}"""


class ParityReport(Protocol):
    """What the card needs of a check report: its parity section, in Markdown."""

    def markdown(self) -> str: ...


class CardInfo(BaseModel):
    """What a card says that the checkpoint does not: the name users load it by, a description, origin, license."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = None  # a Hub repo id; None: the output folder's name
    description: str | None = None
    license: str | None = None  # a Hub license id (mit, cc-by-4.0, ...)
    base_model: str | None = None  # the original model's Hub repo

    @classmethod
    def of(cls, recipe: Recipe) -> CardInfo:
        return cls(
            name=recipe.target_repo,
            description=recipe.description,
            license=recipe.license,
            base_model=recipe.base_model,
        )


@dataclass(frozen=True)
class CardSection:
    """A family's part of the card: Hub task and tags, a default description, what the model is and how to run it."""

    pipeline_tag: str
    tags: list[str]
    description: str
    body: str
    citations: list[str]  # BibTeX of the model's own paper(s); pyannote.audio's is added to every card


def render_card(config: AnyConfig, manifest: Manifest, report: ParityReport, info: CardInfo, name: str) -> str:
    """The card's text: Hub YAML metadata, what the model is, usage, parity, provenance, license, citation.

    `name` is what users load it by: `info.name` (a recipe's target repo) if given, else the output folder's name.
    """
    from .families import converter_family  # the table imports this module's sections

    section = converter_family(config.model_type).card(config, manifest, name)
    data = ModelCardData(
        library_name="mlx",
        license=info.license or "other",
        base_model=info.base_model,
        pipeline_tag=section.pipeline_tag,
        tags=section.tags,
    )
    citations = "\n\n".join([*section.citations, PYANNOTE_AUDIO])
    source = (
        f"[{info.base_model}](https://huggingface.co/{info.base_model})"
        if info.base_model
        else f"`{manifest.source.file_name}`"
    )
    body = f"""
# {name}

{info.description or section.description}, converted from PyTorch
to [MLX](https://github.com/ml-explore/mlx) from {source}, and checked against genuine pyannote.audio.

{section.body}

## Parity with pyannote.audio

{report.markdown()}

## Provenance

{_provenance(manifest)}

## License and attribution

{_license(info)}

## Citation

```bibtex
{citations}
```
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def pyannet_section(config: PyanNetConfig, manifest: Manifest, name: str) -> CardSection:
    spec = config.specifications
    kind = (
        f"powerset, {spec.num_outputs} classes (at most {spec.powerset_max_classes} speakers at once)"
        if spec.powerset
        else "multilabel"
    )
    output = "log-probabilities (log-softmax)" if spec.activation == "log_softmax" else "probabilities (sigmoid)"
    lstm = config.lstm
    frames = config.frames
    frame_step = (
        f"{frames.step_samples} samples ({frames.step:g} s); receptive field {frames.receptive_field_size} samples"
    )
    directions = "bidirectional" if lstm.bidirectional else "unidirectional"
    layers = (
        f"SincNet, LSTM {lstm.num_layers} x {lstm.hidden_size} ({directions}), {config.linear.num_layers} linear layers"
    )
    body = f"""| | |
| --- | --- |
| classes | {", ".join(spec.classes)} ({kind}) |
| output | {output}, shaped (batch, frames, {spec.num_outputs}) |
| window | {spec.duration:g} s at {config.sample_rate} Hz |
| frame step | {frame_step} |
| architecture | {layers} |
| weights | {manifest.dtype} |

## Usage

```python
# {INSTALL}
import mlx.core as mx
import mlx_segmentation
from mlx_segmentation.speech import detect_speech

model = mlx_segmentation.load("{name}")
scores = model(mx.zeros((1, {int(spec.duration * config.sample_rate)})))  # (batch, samples) -> (batch, frames, classes)
speech = detect_speech(model, "meeting.wav")  # whole recordings: speech regions, as pyannote's pipeline
```

or from the command line: `python -m mlx_segmentation meeting.wav --model {name} --rttm meeting.rttm`."""
    task = "voice-activity-detection"
    return CardSection(
        pipeline_tag=task,
        tags=["mlx", "pyannote", "speaker-segmentation", "speaker-diarization", task],
        description="A pyannote.audio PyanNet speaker-segmentation model",
        body=body,
        citations=[POWERSET_2023 if spec.powerset else SEGMENTATION_2021],
    )


def wespeaker_section(config: WeSpeakerConfig, manifest: Manifest, name: str) -> CardSection:
    f, r = config.fbank, config.resnet
    output = (
        f"{r.embed_dim}-dimensional speaker embeddings, shaped (batch, {r.embed_dim}); "
        f"(batch, speakers, {r.embed_dim}) with per-speaker frame weights"
    )
    front_end = (
        f"kaldi fbank, {f.num_mel_bins} mel bins, {f.frame_length:g} ms frames every {f.frame_shift:g} ms, "
        f"{f.window_type} window, mean over time removed"
    )
    layers = (
        f"ResNet34 ({'-'.join(map(str, r.num_blocks))} basic blocks, {r.m_channels} base channels), statistics pooling "
        f"(mean, standard deviation), one linear layer; batch norms {manifest.conversion.get('batchnorm', '')}"
    )
    body = f"""| | |
| --- | --- |
| output | {output} |
| input | (batch, samples) at {config.sample_rate} Hz, any length from 0.105 s |
| front end | {front_end} |
| architecture | {layers} |
| weights | {manifest.dtype} |

## Usage

```python
# {INSTALL}
import mlx.core as mx
import mlx_segmentation

model = mlx_segmentation.load("{name}")
embeddings = model(mx.zeros((2, 3 * {config.sample_rate})))  # (batch, samples) -> (batch, {r.embed_dim})
```"""
    return CardSection(
        pipeline_tag="feature-extraction",
        tags=["mlx", "pyannote", "speaker-embedding", "speaker-verification", "speaker-diarization"],
        description="pyannote.audio's WeSpeakerResNet34 speaker-embedding model",
        body=body,
        citations=[WESPEAKER_2023],
    )


def _provenance(manifest: Manifest) -> str:
    source = manifest.source
    lines = [
        f"- source: `{source.file_name}`, sha256 `{source.sha256}`, {source.size:,} bytes",
        f"- recorded versions: {', '.join(f'{k} {v}' for k, v in source.versions.items()) or 'none'}",
        f"- converter: {PYPI_NAME} {manifest.converter_version}, on {manifest.created:%Y-%m-%d}",
        f"- every tensor's source keys, mapping rule and sha256 are in `{MANIFEST_FILE}`; "
        f"every check is in `{CHECKS_FILE}`",
    ]
    return "\n".join(lines)


def _license(info: CardInfo) -> str:
    if info.license is None:
        return (
            "The license of the source checkpoint applies; it was not given at conversion "
            "(`python -m converter build --license ID --base-model ORG/NAME`)."
        )
    origin = (
        f"[{info.base_model}](https://huggingface.co/{info.base_model})" if info.base_model else "the source checkpoint"
    )
    return (
        f"The weights are those of {origin}, released under the `{info.license}` license by its authors "
        f"(pyannote.audio, Hervé Bredin and contributors); this conversion is distributed under the same license. "
        f"Please cite pyannote.audio when you use it."
    )
