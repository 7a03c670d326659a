"""The WeSpeaker ResNet's convolutions as matrix products (the CUDA route) against MLX's conv2d; the whole model
through either route is compared with pyannote.audio in tests/test_embedding.py."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_segmentation import conv_kernel, wespeaker


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


@pytest.mark.parametrize(
    ("knob", "route"), [("matmul", "matmul"), ("kernel", "kernel"), ("conv2d", "conv2d"), ("nonsense", "conv2d")]
)
def test_the_route_knob(knob, route, monkeypatch):
    """On this CPU "auto" and unknown values keep MLX's conv2d; the other routes are taken when named."""
    monkeypatch.setattr(wespeaker, "CONV_ROUTE", knob)
    assert wespeaker.route() == route


def test_the_kernel_route_falls_back_to_the_product_off_cuda(monkeypatch):
    """The CUDA kernel does not apply on this CPU: "kernel" convolves as the unfolded product, the same values."""
    monkeypatch.setattr(wespeaker, "CONV_ROUTE", "kernel")
    conv = wespeaker.Conv2d(32, 32, 3, padding=1, bias=False)
    x = mx.array(np.random.default_rng(1).normal(0, 1, (2, 20, 9, 32)).astype(np.float32))
    assert not conv_kernel.applies(x, conv.weight)
    product = wespeaker.unfolded_conv2d(x, conv.weight, (1, 1), (1, 1))
    np.testing.assert_array_equal(np.array(conv(x)), np.array(product))


def test_the_kernel_launches_nothing_for_an_empty_batch():
    """No windows, no kernel launch: an empty result of the right shape, on any device."""
    out = conv_kernel.conv2d(mx.zeros((0, 20, 9, 32)), mx.zeros((64, 3, 3, 32)), (2, 2), (1, 1))
    assert out.shape == (0, 10, 5, 64)
