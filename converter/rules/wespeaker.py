"""Rules for pyannote.audio's WeSpeakerResNet34: 2-d convolutions, batch norms kept as they are
(running statistics applied at inference, not folded into the convolutions), one embedding layer."""

from __future__ import annotations

from . import Rule
from .transforms import batchnorm_running_var, conv2d_layout, identity

# Every convolution and batch norm of the ResNet, as source-key prefixes ({l}: layer, {b}: block).
CONVOLUTIONS = (
    "resnet.conv1",
    "resnet.layer{l}.{b}.conv1",
    "resnet.layer{l}.{b}.conv2",
    "resnet.layer{l}.{b}.shortcut.0",
)
BATCH_NORMS = ("resnet.bn1", "resnet.layer{l}.{b}.bn1", "resnet.layer{l}.{b}.bn2", "resnet.layer{l}.{b}.shortcut.1")


def _batchnorm_rules(prefix: str) -> list[Rule]:
    return [
        Rule("batchnorm", (f"{prefix}.weight",), f"{prefix}.weight", identity),
        Rule("batchnorm", (f"{prefix}.bias",), f"{prefix}.bias", identity),
        Rule("batchnorm", (f"{prefix}.running_mean",), f"{prefix}.running_mean", identity),
        # num_batches_tracked only counts training steps: read, checked, not needed at inference.
        Rule(
            "batchnorm",
            (f"{prefix}.running_var", f"{prefix}.num_batches_tracked?"),
            f"{prefix}.running_var",
            batchnorm_running_var,
        ),
    ]


def wespeaker_rules() -> list[Rule]:
    return [
        *[Rule("conv2d", (f"{prefix}.weight",), f"{prefix}.weight", conv2d_layout) for prefix in CONVOLUTIONS],
        *[rule for prefix in BATCH_NORMS for rule in _batchnorm_rules(prefix)],
        Rule("linear", ("resnet.seg_1.weight",), "resnet.seg_1.weight", identity),
        Rule("linear", ("resnet.seg_1.bias",), "resnet.seg_1.bias", identity),
    ]
