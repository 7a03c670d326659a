"""Where the WeSpeaker ResNet34's time goes on this machine's default device, by stage, and its convolutions alone.

    python benchmarks/wespeaker_profile.py --checkpoint wespeaker.ckpt [--seconds 10] [--batch 32]

Times the whole model, then the fbank, the stem, each ResNet layer and the pooling with embedding
(each evaluated alone on the previous stage's output), then every convolution of the ResNet alone at
its shape with its batch norm, ReLU and shortcut (`wespeaker.conv_bn`, the route the runtime takes): the layers'
time minus theirs is what runs between them.
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import argparse
import tempfile
from functools import partial
from pathlib import Path

import mlx_segmentation
import mlx.core as mx
import numpy as np

import gpu_kernels
from checks.audio import speech_segments
from converter.build import build
from mlx_segmentation import wespeaker
from mlx_segmentation.wespeaker import statistics_pooling


milliseconds = gpu_kernels.milliseconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = mlx_segmentation.load(build(args.checkpoint, Path(tmp) / "model", log=lambda m: None).out)
    waveforms = mx.array(speech_segments(args.seconds, args.batch))
    resnet = model.resnet
    print(f"{mx.default_device()}, route {wespeaker.route()}, {args.batch} x {args.seconds:g} s")
    print(f"whole model                {milliseconds(lambda: model(waveforms)):8.2f} ms")
    features = model.fbank(waveforms)
    mx.eval(features)
    print(f"fbank                      {milliseconds(lambda: model.fbank(waveforms)):8.2f} ms")
    stages = [("stem", resnet.stem, features)]
    out = resnet.stem(features)
    for index, layer in enumerate(resnet.layers, start=1):

        def run(x, layer=layer):
            for block in layer:
                x = block(x)
            return x

        mx.eval(out)
        stages.append((f"layer{index}", run, out))
        out = run(out)
    mx.eval(out)
    layers_ms = 0.0
    for name, function, inputs in stages:
        ms = milliseconds(lambda function=function, inputs=inputs: function(inputs))
        layers_ms += ms
        print(f"{name:<26} {ms:8.2f} ms")
    batch, frequency, frames, channels = out.shape
    flat = out.transpose(0, 3, 1, 2).reshape(batch, channels * frequency, frames)
    print(f"pooling and embedding      {milliseconds(lambda: resnet.seg_1(statistics_pooling(flat))):8.2f} ms")

    convolutions = []  # each convolution with its batch norm (and ReLU, shortcut), as the blocks call them
    original = wespeaker.conv_bn

    def recording(conv, bn, x, relu=False, shortcut=None):
        convolutions.append((partial(original, conv, bn, relu=relu, shortcut=shortcut), x))
        return original(conv, bn, x, relu=relu, shortcut=shortcut)

    wespeaker.conv_bn = recording
    try:
        mx.eval(resnet.frames(features))
    finally:
        wespeaker.conv_bn = original
    rng = np.random.default_rng(0)
    conv_ms = 0.0
    for conv_bn, x in convolutions:
        x = mx.array(rng.normal(0, 1, x.shape).astype(np.float32))
        conv_ms += milliseconds(lambda conv_bn=conv_bn, x=x: conv_bn(x))
    count = len(convolutions)
    print(f"stem and layers            {layers_ms:8.2f} ms, of which {count} convolutions with norms {conv_ms:.2f} ms")


if __name__ == "__main__":
    main()
