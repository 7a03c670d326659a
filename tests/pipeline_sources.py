"""pyannote pipeline folders for the tests: community-1's layout and speaker-diarization-3.1's configuration,
each made of the given segmentation and embedding checkpoints (and, for community-1, a seeded PLDA)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from plda_fixture import write_plda

COMMUNITY_1 = {
    "dependencies": {"pyannote.audio": "4.0.0"},
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "VBxClustering",
            "embedding": "$model/embedding",
            "embedding_batch_size": 32,
            "embedding_exclude_overlap": True,
            "plda": "$model/plda",
            "segmentation": "$model/segmentation",
            "segmentation_batch_size": 32,
        },
    },
    "params": {"clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}, "segmentation": {"min_duration_off": 0.0}},
}
SPEAKER_DIARIZATION_3_1 = {
    "version": "3.1.0",
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "AgglomerativeClustering",
            "embedding": "models/embedding.bin",
            "embedding_batch_size": 32,
            "embedding_exclude_overlap": True,
            "segmentation": "models/segmentation.bin",
            "segmentation_batch_size": 32,
        },
    },
    "params": {
        "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
        "segmentation": {"min_duration_off": 0.0},
    },
}


def make_community_1(folder: Path, segmentation: Path, embedding: Path) -> Path:
    """community-1's layout: `$model/...` sub-folders of pytorch_model.bin, and the PLDA's two .npz files."""
    for name, checkpoint in (("segmentation", segmentation), ("embedding", embedding)):
        (folder / name).mkdir(parents=True)
        shutil.copyfile(checkpoint, folder / name / "pytorch_model.bin")
    write_plda(folder / "plda", seed=1, psi_scale=10.0)
    (folder / "config.yaml").write_text(yaml.safe_dump(COMMUNITY_1))
    return folder


def make_3_1(folder: Path, segmentation: Path, embedding: Path) -> Path:
    """speaker-diarization-3.1's configuration, with its two models as files relative to the folder."""
    (folder / "models").mkdir(parents=True)
    shutil.copyfile(segmentation, folder / "models" / "segmentation.bin")
    shutil.copyfile(embedding, folder / "models" / "embedding.bin")
    (folder / "config.yaml").write_text(yaml.safe_dump(SPEAKER_DIARIZATION_3_1))
    return folder


SPEAKER_DIARIZATION_2_1 = {  # pyannote/speaker-diarization 2.1's parameters, with the multilabel 2022 model
    "pipeline": SPEAKER_DIARIZATION_3_1["pipeline"],
    "params": {
        "clustering": {"method": "centroid", "min_cluster_size": 15, "threshold": 0.7153814381597874},
        "segmentation": {"min_duration_off": 0.5817029604921046, "threshold": 0.4442333667381752},
    },
}


def make_2_1(folder: Path, segmentation: Path, embedding: Path) -> Path:
    """speaker-diarization 2.1's configuration (a multilabel segmentation model and its threshold)."""
    make_3_1(folder, segmentation, embedding)
    (folder / "config.yaml").write_text(yaml.safe_dump(SPEAKER_DIARIZATION_2_1))
    return folder
