"""SincNet's first stage as one CUDA kernel (`sinc_kernel`): what it is handed, checked here through a numpy stand-in
(the kernel runs on CUDA only; benchmarks/segmentation_stages.py compares it with MLX's conv1d and float64 on a GPU,
and the checks run the whole models through it there)."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_segmentation import conv_kernel, pooling, pyannet, sinc_kernel


def numpy_sinc_kernel(**arguments):
    """The kernel's result from the arguments MLX would get: max over POOL frames of |strided convolution|."""
    x, wt, sizes = (np.array(a, np.float64) for a in arguments["inputs"])
    template = dict(arguments["template"])
    taps, stride, pool = template["K"], template["STRIDE"], template["POOL"]
    batch, samples, pooled, filters = (int(v) for v in sizes)
    frames = np.lib.stride_tricks.sliding_window_view(x[:, :, 0], taps, axis=1)[:, ::stride][:, : pooled * pool]
    out = np.abs(frames @ wt)  # wt: (taps, filters)
    assert out.shape == (batch, pooled * pool, filters) and x.shape == (batch, samples, 1)
    return [mx.array(out.reshape(batch, pooled, pool, filters).max(axis=2).astype(np.float32))]


@pytest.mark.parametrize(("batch", "samples"), [(2, 16000), (3, 80000), (1, 991 + 270 * 3)])
def test_the_kernel_gets_its_sizes_and_the_filters_tap_major(monkeypatch, batch, samples):
    """Sizes, template, grid and the filters as (taps, filters): through the stand-in, the two operations' result."""
    calls = []

    def stand_in(**arguments):
        calls.append(arguments)
        return numpy_sinc_kernel(**arguments)

    monkeypatch.setattr(sinc_kernel, "_KERNEL", [stand_in])
    rng = np.random.default_rng(samples)
    x = mx.array(rng.normal(0, 1, (batch, samples, 1)).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.05, (pyannet.SINC_FILTERS, pyannet.SINC_KERNEL, 1)).astype(np.float32))
    ours = sinc_kernel.conv_abs_max_pool(x, weight, 10, pyannet.POOL)
    pool = nn.MaxPool1d(pyannet.POOL, stride=pyannet.POOL)
    theirs = pooling.abs_max_pool(mx.conv1d(x, weight, stride=10), pool, pyannet.POOL)
    (call,) = calls
    pooled = ((samples - 251) // 10 + 1) // 3
    assert ours.shape == theirs.shape == (batch, pooled, 80)
    assert np.array(call["inputs"][2]).tolist() == [batch, samples, pooled, 80]
    np.testing.assert_array_equal(np.array(call["inputs"][1]), np.array(weight)[:, :, 0].T)
    threads = sinc_kernel.FB // sinc_kernel.FT * 32
    assert call["grid"] == (-(-pooled // sinc_kernel.PB) * threads, 80 // sinc_kernel.FB, batch)
    assert call["threadgroup"] == (threads, 1, 1)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=1e-5)


def test_the_kernel_applies_where_its_shared_memory_fits(monkeypatch):
    """On CUDA, float32, one channel, filters in blocks of 40, and filters plus samples in 48 KiB: the sinc filters'
    251 taps at stride 10 take 48,840 bytes; a larger stride or more taps (a checkpoint's hyper-parameters) fall back
    to MLX's conv1d."""
    x, weight = mx.zeros((2, 16000, 1)), mx.zeros((80, 251, 1))
    assert sinc_kernel.applies(x, weight, 10, 3) == conv_kernel.on_cuda()
    monkeypatch.setattr(conv_kernel, "on_cuda", lambda: True)
    assert sinc_kernel.shared_bytes(251, 10, 3) == 48_840
    assert sinc_kernel.applies(x, weight, 10, 3)
    assert not sinc_kernel.applies(x, weight, 11, 3)
    assert not sinc_kernel.applies(x, mx.zeros((80, 301, 1)), 10, 3)
    assert not sinc_kernel.applies(x, mx.zeros((60, 251, 1)), 10, 3)  # not a multiple of 40 filters
    assert not sinc_kernel.applies(mx.zeros((2, 16000, 2)), mx.zeros((80, 251, 2)), 10, 3)
    assert not sinc_kernel.applies(x.astype(mx.float16), weight.astype(mx.float16), 10, 3)


def test_the_kernel_launches_nothing_without_a_pooled_frame():
    out = sinc_kernel.conv_abs_max_pool(mx.zeros((2, 260, 1)), mx.zeros((80, 251, 1)), 10, 3)
    assert out.shape == (2, 0, 80)


@pytest.mark.skipif(conv_kernel.on_cuda(), reason="on CUDA the kernel compiles: the GPU benchmarks run it")
def test_mlx_takes_the_sinc_kernels_arguments(monkeypatch):
    """MLX binds the kernel's arguments, then finds no CUDA back-end on this CPU."""
    monkeypatch.setattr(sinc_kernel, "_KERNEL", [])
    with pytest.raises(RuntimeError, match="No CUDA back-end"):
        sinc_kernel.conv_abs_max_pool(mx.zeros((1, 16000, 1)), mx.zeros((80, 251, 1)), 10, 3)
