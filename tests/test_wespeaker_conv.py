"""The WeSpeaker ResNet's convolutions as matrix products (the CUDA route) against MLX's conv2d; the whole model
through either route is compared with pyannote.audio in tests/test_embedding.py."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_segmentation import wespeaker


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding"),
    [
        ((2, 80, 37, 1), 3, 1, 1),  # the stem
        ((2, 80, 37, 32), 3, 1, 1),
        ((2, 80, 37, 32), 3, 2, 1),  # a layer's first block, odd sizes
        ((2, 40, 19, 64), 1, 2, 0),  # a projected shortcut
    ],
)
def test_unfolded_conv2d_equals_conv2d(shape, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.1, (48, kernel, kernel, shape[-1])).astype(np.float32))
    ours = wespeaker.unfolded_conv2d(x, weight, (stride, stride), (padding, padding))
    theirs = mx.conv2d(x, weight, stride=stride, padding=padding)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=2e-5)


@pytest.mark.parametrize(("route", "matmul"), [("matmul", True), ("conv2d", False), ("nonsense", False)])
def test_the_route_knob(route, matmul, monkeypatch):
    """On this CPU "auto" and unknown values keep MLX's conv2d; "matmul" forces the unfolded product."""
    monkeypatch.setattr(wespeaker, "CONV_ROUTE", route)
    assert wespeaker.convolve_as_matmul() is matmul
