"""The pipeline folder's README.md: what it is, how to load it, what it was converted from, and the licenses."""

from __future__ import annotations

from mlx_segmentation.pipeline_config import DiarizationConfig
from mlx_segmentation.pipeline_manifest import PipelineManifest


def render_pipeline_card(config: DiarizationConfig, manifest: PipelineManifest, name: str) -> str:
    clustering = config.clustering
    parameters = ", ".join(f"{key}={value}" for key, value in clustering.model_dump().items() if key != "name")
    sources = "\n".join(
        f"| `{path}` | {file.size:,} | `{file.sha256}` |" for path, file in sorted(manifest.source.files.items())
    )
    checks = "not run" if manifest.checks is None else manifest.checks.summary
    plda = (
        " and the PLDA of its VBx clustering (`plda.safetensors`, float64)"
        if clustering.name == "VBxClustering"
        else ""
    )
    return f"""---
library_name: mlx
tags: [speaker-diarization, mlx, pyannote]
---

# {name}

pyannote.audio's speaker-diarization pipeline for MLX: the segmentation model (`segmentation/`), the speaker
embedding model (`embedding/`){plda}, and the pipeline's parameters (`pipeline.json`): {clustering.name}
({parameters}), min_duration_off={config.min_duration_off}, segmentation step {config.segmentation_step} of a
window.

```python
from mlx_segmentation import load_pipeline

pipeline = load_pipeline("{name}")  # a folder, or a Hub repo id
result = pipeline("meeting.wav")  # or num_speakers=..., min_speakers=..., max_speakers=...
print(result.to_rttm("meeting"))
```

```sh
python -m mlx_segmentation diarize meeting.wav --pipeline {name}
```

Loading verifies the sha256 of every file against `manifest.json` before it is parsed.

## Sources

Converted by mlx-segmentation's converter {manifest.converter_version} from a pyannote.audio pipeline folder
(config.yaml sha256 `{manifest.source.config_sha256}`):

| file | bytes | sha256 |
| --- | --- | --- |
{sources}

Pipeline checks: {checks}. Each model's parity checks are in its folder's `checks.json` and card.

## Licenses

The weights and the PLDA keep the license of the pyannote pipeline they came from (speaker-diarization-3.1
and its models: MIT; speaker-diarization-community-1: CC-BY-4.0; see the original repos). The code that
runs them, mlx-segmentation, is MIT-licensed.
"""
