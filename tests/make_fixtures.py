"""Make PyanNet checkpoints with pyannote.audio's own classes, saved as pyannote.audio 4.x saves them.

    python tests/make_fixtures.py OUT_DIR [--trained pytorch_model.bin]

- `powerset.ckpt`: the segmentation-3.0 layout (3 speakers, at most 2 at once = 7 powerset classes,
  10 s windows, log-softmax). Its real weights are gated on the Hub, so the trained 2022 SincNet,
  LSTM and linear tensors are copied in (same shapes) for realistic activations; the classifier is
  seeded random.
- `per-layer.ckpt`: other sizes everywhere and a `monolithic=False` LSTM (3 x 64, one linear layer
  of 32, stride 5, 2 speakers, 3 s windows), seeded random weights (amplified, so that outputs move)
  with the trained SincNet.
- `unidirectional.ckpt`: a unidirectional 2 x 96 monolithic LSTM and no linear layer, 4 speakers.
- `not-pyannet.ckpt`: pyannote's SimpleSegmentationModel, which the converter must refuse.
- `wespeaker.ckpt`: pyannote's WeSpeakerResNet34 (speaker embeddings; its real weights are gated on
  the Hub) with seeded random weights, batch-norm running statistics and affine parameters drawn
  away from 0 and 1, saved as pyannote's own wespeaker/convert.py saves it (REPRESENTATION task,
  `on_save_checkpoint`, `torch.save`).

Checkpoints are written by Lightning's `Trainer.save_checkpoint`, which calls pyannote's
`Model.on_save_checkpoint`, so `Model.from_pretrained` loads them.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

FIXTURES = ("powerset", "per-layer", "unidirectional", "not-pyannet", "wespeaker")


def _specifications(duration: float, classes: int, powerset_max_classes: int | None):
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION if powerset_max_classes else Problem.MULTI_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=duration,
        classes=[f"speaker#{i + 1}" for i in range(classes)],
        powerset_max_classes=powerset_max_classes,
        permutation_invariant=True,
    )


def _model(name: str):
    from pyannote.audio.models.segmentation import PyanNet
    from pyannote.audio.models.segmentation.debug import SimpleSegmentationModel

    if name == "powerset":
        model = PyanNet(
            lstm={"hidden_size": 128, "num_layers": 4, "dropout": 0.5}, linear={"hidden_size": 128, "num_layers": 2}
        )
        model.specifications = _specifications(10.0, 3, 2)
    elif name == "per-layer":
        model = PyanNet(
            sincnet={"stride": 5},
            lstm={"hidden_size": 64, "num_layers": 3, "bidirectional": True, "monolithic": False, "dropout": 0.2},
            linear={"hidden_size": 32, "num_layers": 1},
        )
        model.specifications = _specifications(3.0, 2, None)
    elif name == "unidirectional":
        model = PyanNet(
            lstm={"hidden_size": 96, "num_layers": 2, "bidirectional": False, "monolithic": True},
            linear={"hidden_size": 128, "num_layers": 0},
        )
        model.specifications = _specifications(5.0, 4, None)
    elif name == "not-pyannet":
        model = SimpleSegmentationModel()
        model.specifications = _specifications(5.0, 3, None)
    else:
        raise ValueError(f"unknown fixture {name!r}; choose from {FIXTURES}")
    model.build()
    return model


def _amplify(model, skip: set[str]) -> None:
    """Scale up seeded random weights so outputs vary over time instead of sitting near 0.5."""
    import torch

    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key not in skip and key.startswith(("lstm", "linear")) and "weight" in key:
                tensor.mul_(3.0)
            elif key == "classifier.weight":
                tensor.mul_(10.0)


def make_wespeaker(path: Path, seed: int = 0) -> Path:
    """WeSpeakerResNet34 with seeded weights and batch norms whose statistics are far from 0 and 1."""
    import lightning
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    generator = torch.Generator().manual_seed(seed)
    model = WeSpeakerResNet34()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(0.3 * torch.randn(size, generator=generator) + 0.2)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(size, generator=generator))
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                module.num_batches_tracked.fill_(1000)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def make_fixture(name: str, path: Path, trained: Path | None = None, seed: int = 0) -> Path:
    """Write fixture `name` to `path`; copy trained 2022 tensors of matching shapes from `trained`."""
    import torch

    if name == "wespeaker":
        return make_wespeaker(path, seed)
    from lightning.pytorch import Trainer

    torch.manual_seed(seed)
    model = _model(name)
    if trained is not None and name != "not-pyannet":
        from pyannote.audio import Model

        donor = Model.from_pretrained(trained).state_dict()  # trusted: pinned by sha256 in models/
        state = model.state_dict()
        copied = {
            k: v
            for k, v in donor.items()
            if k in state and state[k].shape == v.shape and not k.startswith("classifier")
        }
        model.load_state_dict({**state, **copied})
        _amplify(model, skip=set(copied))
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.strategy.connect(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--trained", type=Path, help="the 2022 pyannote/segmentation checkpoint")
    args = parser.parse_args()
    for name in FIXTURES:
        print(make_fixture(name, args.out / f"{name}.ckpt", args.trained))


if __name__ == "__main__":
    main()
