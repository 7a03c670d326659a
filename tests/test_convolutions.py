"""Convolutions computed otherwise than by MLX's conv: the WeSpeaker ResNet's as matrix products (the CUDA route,
the CPU's taps) against MLX's conv2d and float64, SincNet's conv1d in tiles and the LSTM's projections in threads
on the CPU against MLX's conv1d and addmm. The whole models through these routes are compared with pyannote.audio
in tests/test_embedding.py and the checks."""

import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from mlx_segmentation import conv_kernel, cpu_blas, cpu_conv, wespeaker


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


CPU_AUTO = "blas" if cpu_blas.loaded is not None else "conv2d"


@pytest.mark.parametrize(
    ("knob", "route"),
    [("matmul", "matmul"), ("kernel", "kernel"), ("conv2d", "conv2d"), ("blas", "blas"), ("nonsense", CPU_AUTO)],
)
def test_the_route_knob(knob, route, monkeypatch):
    """On this CPU "auto" and unknown values take MKL's products where MKL is loaded, else MLX's conv2d; the
    other routes are taken when named."""
    monkeypatch.setattr(wespeaker, "CONV_ROUTE", knob)
    assert wespeaker.route() == route


def float64_conv2d(x: mx.array, weight: mx.array, padding: int) -> np.ndarray:
    """The convolution in float64 (torch's), channels-last like MLX's."""
    inputs = torch.from_numpy(np.array(x)).double().permute(0, 3, 1, 2)
    weights = torch.from_numpy(np.array(weight)).double().permute(0, 3, 1, 2)
    return torch.nn.functional.conv2d(inputs, weights, padding=padding).permute(0, 2, 3, 1).numpy()


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the taps' products need MKL (the dev install has it here)")
@pytest.mark.parametrize(
    ("shape", "kernel", "out_channels"),
    [((2, 80, 37, 32), 3, 48), ((3, 7, 5, 16), 3, 6), ((1, 9, 4, 17), 5, 8), ((2, 11, 13, 64), 1, 32)],
)
def test_cpu_taps_equal_float64(shape, kernel, out_channels):
    """cpu_conv (a product per tap over shifted rows) against float64, as close as MLX's conv2d or closer."""
    rng = np.random.default_rng(kernel)
    x = mx.array(rng.normal(0, 1, shape).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.1, (out_channels, kernel, kernel, shape[-1])).astype(np.float32))
    assert cpu_conv.applies(x, weight, (1, 1), (kernel // 2, kernel // 2))
    exact = float64_conv2d(x, weight, kernel // 2)
    ours = np.array(cpu_conv.conv2d(x, weight))
    theirs = np.array(mx.conv2d(x, weight, padding=kernel // 2))
    assert ours.shape == exact.shape
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5)
    assert np.abs(ours - exact).max() <= np.abs(theirs - exact).max() * 1.5


def test_cpu_taps_apply_only_where_they_pay():
    """Stride 1, size-keeping padding, float32, 16 input channels or more (not the 1-channel stem), MKL loaded."""
    x = mx.zeros((1, 8, 8, 32))
    weight = mx.zeros((4, 3, 3, 32))
    assert cpu_conv.applies(x, weight, (1, 1), (1, 1)) == (cpu_blas.loaded is not None)
    assert not cpu_conv.applies(x, weight, (2, 2), (1, 1))
    assert not cpu_conv.applies(x, weight, (1, 1), (0, 0))
    assert not cpu_conv.applies(x.astype(mx.float16), weight.astype(mx.float16), (1, 1), (1, 1))
    assert not cpu_conv.applies(mx.zeros((1, 8, 8, 1)), mx.zeros((4, 3, 3, 1)), (1, 1), (1, 1))


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the product is MKL's (the dev install has it here)")
def test_sgemm_refuses_what_does_not_fit():
    """The raw product checks shapes, dtypes and layouts before handing pointers to MKL."""
    a, b = np.ones((5, 4), np.float32), np.ones((3, 4), np.float32)
    out = np.zeros((5, 3), np.float32)
    cpu_blas.sgemm_nt(a, b, out, beta=0.0)
    np.testing.assert_array_equal(out, np.full((5, 3), 4.0, np.float32))
    for bad in (
        (a, np.ones((3, 5), np.float32), out),  # inner sizes differ
        (a, b, np.zeros((5, 4), np.float32)),  # output shaped wrong
        (a.astype(np.float64), b, out),
        (np.ones((4, 5), np.float32).T, b, out),  # not C-contiguous
    ):
        with pytest.raises(ValueError):
            cpu_blas.sgemm_nt(*bad, beta=0.0)


def test_sgemm_refuses_sizes_over_32_bits(monkeypatch):
    """cblas takes 32-bit sizes: larger ones are refused before MKL sees them (here with the limit lowered to 4)."""
    monkeypatch.setattr(cpu_blas, "MAX_SIZE", 4)
    with pytest.raises(ValueError, match="too large"):
        cpu_blas.sgemm_nt(np.ones((5, 2), np.float32), np.ones((3, 2), np.float32), np.zeros((5, 3), np.float32), 0.0)


def test_the_blas_route_convolves_as_conv2d(monkeypatch):
    """Through the model's Conv2d: stride 1 by the taps (where MKL is), stride 2 and the stem by MLX's conv2d."""
    rng = np.random.default_rng(1)
    for in_channels, stride in ((32, 1), (32, 2), (1, 1)):
        conv = wespeaker.Conv2d(in_channels, 24, 3, stride=stride, padding=1, bias=False)
        conv.weight = mx.array(rng.normal(0, 0.1, conv.weight.shape).astype(np.float32))
        x = mx.array(rng.normal(0, 1, (2, 20, 11, in_channels)).astype(np.float32))
        monkeypatch.setattr(wespeaker, "CONV_ROUTE", "blas")
        ours = np.array(conv(x))
        monkeypatch.setattr(wespeaker, "CONV_ROUTE", "conv2d")
        np.testing.assert_allclose(ours, np.array(conv(x)), rtol=0, atol=2e-5)


def test_the_kernel_route_falls_back_to_the_product_off_cuda(monkeypatch):
    """The CUDA kernel does not apply on this CPU: "kernel" convolves as the unfolded product, the same values."""
    monkeypatch.setattr(wespeaker, "CONV_ROUTE", "kernel")
    conv = wespeaker.Conv2d(32, 32, 3, padding=1, bias=False)
    x = mx.array(np.random.default_rng(1).normal(0, 1, (2, 20, 9, 32)).astype(np.float32))
    assert not conv_kernel.applies(x, conv.weight)
    product = wespeaker.unfolded_conv2d(x, conv.weight, (1, 1), (1, 1))
    np.testing.assert_array_equal(np.array(conv(x)), np.array(product))


@pytest.mark.parametrize(
    ("info", "capable"),
    [
        ({"compute_capability_major": 9, "compute_capability_minor": 0}, True),
        ({"compute_capability_major": 7, "compute_capability_minor": 5}, False),
        ({"architecture": "sm_80"}, True),
        ({"architecture": "sm_120a"}, True),
        ({"architecture": "sm_75"}, False),
        ({"device_name": "a GPU that names no architecture"}, False),
    ],
)
def test_the_kernel_needs_a_gpu_with_cp_async(monkeypatch, info, capable):
    """The kernel copies with `cp.async` (compute capability 8.0 on): an older GPU convolves as the unfolded product."""
    monkeypatch.setattr(conv_kernel.mx, "device_info", lambda device=None: info)
    monkeypatch.setattr(conv_kernel, "on_cuda", lambda: True)
    conv_kernel.has_cp_async.cache_clear()
    try:
        x, weight = mx.zeros((1, 10, 7, 32)), mx.zeros((32, 3, 3, 32))
        assert conv_kernel.has_cp_async() is capable and conv_kernel.applies(x, weight) is capable
    finally:
        conv_kernel.has_cp_async.cache_clear()


@pytest.mark.parametrize(
    ("shape", "out_channels", "kernel", "stride", "launch"),
    [
        ((3, 80, 37, 32), 32, 3, 1, ((128, 32, 8, 4, 16, 2), (70 * 128, 1, 1), (128, 1, 1), (3, 80, 37, 32))),
        ((3, 80, 37, 32), 64, 3, 2, ((64, 64, 8, 4, 16, 2), (36 * 128, 1, 1), (128, 1, 1), (3, 40, 19, 64))),
        ((2, 40, 19, 64), 128, 1, 2, ((64, 64, 8, 4, 16, 1), (7 * 128, 2, 1), (128, 1, 1), (2, 20, 10, 128))),
    ],
)
def test_the_kernel_is_launched_with_its_sizes_tiles_and_grid(monkeypatch, shape, out_channels, kernel, stride, launch):
    """What `conv2d` hands MLX's CUDA kernel (checked here with a stand-in; the kernel itself runs on CUDA only):
    the sizes, the weights as (taps x in, out), the tile and sum mode, one thread block per BM output pixels."""
    calls = []

    def stand_in(**arguments):
        calls.append(arguments)
        return [mx.zeros(arguments["output_shapes"][0])]

    monkeypatch.setattr(conv_kernel, "_KERNEL", [stand_in])
    x = mx.zeros(shape)
    weight = mx.array(np.arange(out_channels * kernel * kernel * shape[-1], dtype=np.float32)).reshape(
        out_channels, kernel, kernel, shape[-1]
    )
    padding = (kernel // 2, kernel // 2)
    out = conv_kernel.conv2d(x, weight, (stride, stride), padding)
    (call,) = calls
    template, grid, threadgroup, output_shape = launch
    out_h, out_w = output_shape[1:3]
    expected_sizes = [shape[0], shape[1], shape[2], out_h, out_w, shape[3], out_channels, kernel, kernel]
    assert np.array(call["inputs"][2]).tolist() == expected_sizes + [stride, stride, *padding, 0]  # no epilogue
    np.testing.assert_array_equal(np.array(call["inputs"][1]), np.array(weight).reshape(out_channels, -1).T)
    assert [value for _, value in call["template"]] == list(template)
    assert call["grid"] == grid and call["threadgroup"] == threadgroup
    assert out.shape == output_shape == tuple(call["output_shapes"][0])


@pytest.mark.skipif(conv_kernel.on_cuda(), reason="on CUDA the kernel compiles: the GPU benchmarks run it")
def test_mlx_takes_the_kernels_arguments():
    """MLX binds `compile_kernel`'s arguments, then finds no CUDA back-end on this CPU (a wrong name fails first)."""
    with pytest.raises(RuntimeError, match="No CUDA back-end"):
        conv_kernel.compile_kernel("wespeaker_conv2d", "wt", conv_kernel.SOURCE)


def test_the_kernel_launches_nothing_for_an_empty_batch():
    """No windows, no kernel launch: an empty result of the right shape, on any device."""
    out = conv_kernel.conv2d(mx.zeros((0, 20, 9, 32)), mx.zeros((64, 3, 3, 32)), (2, 2), (1, 1))
    assert out.shape == (0, 10, 5, 64)


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the tiles' products need MKL (the dev install has it here)")
@pytest.mark.parametrize(
    ("batch", "samples", "kernel", "stride", "exact"),
    [(3, 5000, 251, 10, True), (1, 4111, 17, 3, True), (2, 260, 251, 10, False)],
)
def test_sinc_conv1d_in_tiles_is_mlx_conv1d(batch, samples, kernel, stride, exact, monkeypatch):
    """SincNet's one-channel strided convolution, a tile of frames at a time (tiles of 64 here, a short last one):
    MLX's own product bit for bit where MLX unfolds too; two frames MLX sums otherwise, to rounding."""
    monkeypatch.setattr(cpu_conv, "FRAMES_PER_TILE", 64)
    rng = np.random.default_rng(samples)
    conv = nn.Conv1d(1, 80, kernel, stride=stride, bias=False)
    conv.weight = mx.array(rng.normal(0, 0.1, conv.weight.shape).astype(np.float32))
    x = mx.array(rng.normal(0, 1, (batch, samples, 1)).astype(np.float32))
    assert cpu_conv.applies_1d(x, conv)
    ours = np.array(cpu_conv.conv1d(x, conv.weight, stride))
    theirs = np.array(conv(x))
    assert ours.shape == theirs.shape
    if exact:
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_conv1d_in_tiles_applies_only_without_padding_or_dilation():
    x = mx.zeros((2, 1000, 1))
    assert cpu_conv.applies_1d(x, nn.Conv1d(1, 8, 31, stride=10, bias=False)) == (cpu_blas.loaded is not None)
    assert cpu_conv.applies_1d(mx.zeros((2, 1000, 4)), nn.Conv1d(4, 8, 5)) == (cpu_blas.loaded is not None)
    assert not cpu_conv.applies_1d(x, nn.Conv1d(1, 8, 31, padding=2, bias=False))
    assert not cpu_conv.applies_1d(x, nn.Conv1d(1, 8, 31, dilation=2, bias=False))
    assert not cpu_conv.applies_1d(mx.zeros((2, 1000, 3)), nn.Conv1d(4, 8, 5))  # channels that do not match
    assert not cpu_conv.applies_1d(mx.zeros((2, 20, 1)), nn.Conv1d(1, 8, 31, bias=False))  # shorter than the kernel
    assert not cpu_conv.applies_1d(mx.zeros((2, 1000, 4), mx.float16), nn.Conv1d(4, 8, 5))


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the tiles' products need MKL (the dev install has it here)")
@pytest.mark.parametrize(
    ("batch", "frames", "channels", "exact"),
    [(3, 1777, 80, True), (2, 590, 60, True), (1, 70, 60, True), (2, 5, 80, False)],
)
def test_conv1d_of_channels_in_tiles_is_mlx_conv1d(batch, frames, channels, exact, monkeypatch):
    """SincNet's second and third convolutions (5 taps of 80 or 60 channels), a tile of frames at a time (tiles of
    64 here, a short last one joined to the one before: MKL sums products of a few rows otherwise): MLX's own
    conv1d bit for bit, each frame's taps and channels unfolded as MLX does; one frame a window, to rounding."""
    monkeypatch.setattr(cpu_conv, "FRAMES_PER_TILE", 64)
    rng = np.random.default_rng(frames)
    weight = mx.array(rng.normal(0, 0.1, (60, 5, channels)).astype(np.float32))
    x = mx.array(rng.normal(0, 1, (batch, frames, channels)).astype(np.float32))
    ours = np.array(cpu_conv.conv1d(x, weight, 1))
    theirs = np.array(mx.conv1d(x, weight))
    assert ours.shape == theirs.shape == (batch, frames - 4, 60)
    if exact:
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the product is MKL's (the dev install has it here)")
@pytest.mark.parametrize("rows", [1, 7, 4712])
def test_linear_in_threads_is_mlx_addmm(rows, monkeypatch):
    """The LSTM's input projections, rows shared among threads: MLX's addmm bit for bit."""
    monkeypatch.setenv(cpu_blas.THREADS_VARIABLE, "2")
    rng = np.random.default_rng(rows)
    x, weight, bias = (rng.normal(0, 1, shape).astype(np.float32) for shape in ((rows, 256), (512, 256), (512,)))
    theirs = np.array(mx.addmm(mx.array(bias), mx.array(x), mx.array(weight).T))
    np.testing.assert_array_equal(cpu_blas.linear(x, weight, bias), theirs)
    out = np.full((rows, 512), np.nan, np.float32)
    assert cpu_blas.linear(x, weight, bias, out=out) is out
    np.testing.assert_array_equal(out, theirs)


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the taps' products need MKL (the dev install has it here)")
@pytest.mark.parametrize("threads", [2, 3])
def test_products_in_threads_are_one_threads_bit_for_bit(threads, monkeypatch):
    """The taps, the conv1d tiles and the linear products shared among threads (each a range of rows): the same sums
    as on one thread, every thread given work."""
    import threading

    rng = np.random.default_rng(threads)
    image = mx.array(rng.normal(0, 1, (3, 21, 13, 32)).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.1, (24, 3, 3, 32)).astype(np.float32))
    samples = mx.array(rng.normal(0, 1, (3, 4001, 1)).astype(np.float32))
    filters = mx.array(rng.normal(0, 0.1, (80, 251, 1)).astype(np.float32))
    frames, taps = (mx.array(rng.normal(0, 1, shape).astype(np.float32)) for shape in ((2, 300, 80), (60, 5, 80)))
    rows, projection, bias = (rng.normal(0, 1, shape).astype(np.float32) for shape in ((200, 60), (512, 60), (512,)))
    monkeypatch.setattr(cpu_conv, "FRAMES_PER_TILE", 64)  # 6 tiles per window
    product, callers = cpu_blas.sgemm_nt, set()

    def spied(*args, **kwargs):
        callers.add(threading.get_ident())
        return product(*args, **kwargs)

    monkeypatch.setattr(cpu_blas, "sgemm_nt", spied)
    results = {}
    for count in (1, threads):
        monkeypatch.setenv(cpu_blas.THREADS_VARIABLE, str(count))
        callers.clear()
        results[count] = [
            np.array(cpu_conv.conv2d(image, weight)),
            np.array(cpu_conv.conv1d(samples, filters, 10)),
            np.array(cpu_conv.conv1d(frames, taps, 1)),
            cpu_blas.linear(rows, projection, bias),
        ]
        assert len(callers) == count
    for one, many in zip(results[1], results[threads]):
        np.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("total", [1, 2, 7, 100])
def test_in_threads_gives_every_row_to_one_thread(total, monkeypatch):
    monkeypatch.setenv(cpu_blas.THREADS_VARIABLE, "3")
    seen = np.zeros(total, int)

    def work(start: int, stop: int) -> None:
        seen[start:stop] += 1

    cpu_blas.in_threads(work, total)
    assert (seen == 1).all()


@pytest.mark.parametrize(
    ("total", "least", "ranges"), [(100, 64, 1), (127, 64, 1), (128, 64, 2), (1000, 64, 3), (0, 64, 1)]
)
def test_in_threads_gives_each_thread_at_least_its_least(total, least, ranges, monkeypatch):
    """Products of `MIN_ROWS` rows or more: fewer threads rather than shorter ranges."""
    monkeypatch.setenv(cpu_blas.THREADS_VARIABLE, "3")
    seen = []
    cpu_blas.in_threads(lambda start, stop: seen.append((start, stop)), total, least=least)
    assert len(seen) == ranges
    assert sorted(seen)[0][0] == 0 and sorted(seen)[-1][1] == total
    assert all(stop - start >= least for start, stop in seen) or ranges == 1


@pytest.mark.parametrize(("value", "expected"), [("4", 4), ("1", 1), ("0", None), ("two", None), ("", None)])
def test_the_threads_knob(value, expected, monkeypatch):
    """A positive number is taken; anything else means the usable cores."""
    import os

    monkeypatch.setenv(cpu_blas.THREADS_VARIABLE, value)
    assert cpu_blas.threads() == (expected or len(os.sched_getaffinity(0)))


@pytest.mark.skipif(cpu_blas.loaded is None, reason="the product is MKL's (the dev install has it here)")
@pytest.mark.parametrize(("batch", "samples"), [(3, 50001), (2, 8001), (1, 281)])
def test_sinc_conv1d_pooled_in_tiles_is_mlx_pooled_conv1d(batch, samples):
    """SincNet's |conv| max-pooled by 3 a tile at a time (4,975 frames in tiles of 2,046, a partial last window
    dropped): MLX's pool of |conv1d| bit for bit."""
    rng = np.random.default_rng(samples)
    conv = nn.Conv1d(1, 80, 251, stride=10, bias=False)
    conv.weight = mx.array(rng.normal(0, 0.1, conv.weight.shape).astype(np.float32))
    x = mx.array(rng.normal(0, 1, (batch, samples, 1)).astype(np.float32))
    ours = np.array(cpu_conv.conv1d(x, conv.weight, 10, pool=3))
    theirs = np.array(nn.MaxPool1d(3, stride=3)(mx.abs(conv(x))))
    assert ours.shape == theirs.shape == (batch, ((samples - 251) // 10 + 1) // 3, 80)
    np.testing.assert_array_equal(ours, theirs)


def numpy_conv_kernel(**arguments):
    """A stand-in for `conv_kernel`'s CUDA kernel at stride 1 without padding, in numpy: x (N, 1, T, in) and the
    weights as (taps x in, out), from the arguments MLX would get."""
    x, wt, sizes = (np.array(a) for a in arguments["inputs"][:3])
    assert sizes[13] == 0  # no epilogue
    taps = int(sizes[8])
    frames = np.lib.stride_tricks.sliding_window_view(x[:, 0], taps, axis=1)  # (N, T', in, taps)
    unfolded = frames.transpose(0, 1, 3, 2).reshape(*frames.shape[:2], -1)  # (N, T', taps x in)
    return [mx.array((unfolded @ wt)[:, None].astype(np.float32))]


@pytest.mark.parametrize(("out_channels", "frames"), [(60, 41), (64, 9), (32, 5)])
def test_conv1d_through_the_kernel_is_mlx_conv1d(monkeypatch, out_channels, frames):
    """SincNet's second convolution through `conv_kernel` (80 in channels): a height-1 convolution whose out channels
    are padded with zero filters to a multiple of 32 and dropped after, here through a numpy stand-in of the kernel."""
    monkeypatch.setattr(conv_kernel, "_KERNEL", [numpy_conv_kernel])
    rng = np.random.default_rng(out_channels)
    x = mx.array(rng.normal(0, 1, (3, frames, 80)).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.1, (out_channels, 5, 80)).astype(np.float32))
    ours = conv_kernel.conv1d(x, weight)
    assert ours.shape == (3, frames - 4, out_channels)
    np.testing.assert_allclose(np.array(ours), np.array(mx.conv1d(x, weight)), rtol=0, atol=1e-5)


def test_conv1d_through_the_kernel_needs_cuda_and_channels_in_sixteens(monkeypatch):
    x, weight = mx.zeros((2, 30, 80)), mx.zeros((60, 5, 80))
    assert conv_kernel.applies_1d(x, weight) == (conv_kernel.on_cuda() and conv_kernel.has_cp_async())
    monkeypatch.setattr(conv_kernel, "on_cuda", lambda: True)
    monkeypatch.setattr(conv_kernel, "has_cp_async", lambda: True)
    assert conv_kernel.applies_1d(x, weight)
    assert not conv_kernel.applies_1d(mx.zeros((2, 30, 60)), mx.zeros((60, 5, 60)))  # stage 2: 60 in channels
    assert not conv_kernel.applies_1d(mx.zeros((2, 4, 80)), weight)  # shorter than the kernel
    assert not conv_kernel.applies_1d(x.astype(mx.float16), weight.astype(mx.float16))


def mlx_conv_kernel(**arguments):
    """A stand-in for `conv_kernel`'s CUDA kernel with its epilogue: MLX's conv2d on the weights it is handed (taps x
    in, out), then the batch norm (mean, variance, weight, bias, eps), shortcut and ReLU the sizes ask for."""
    x, wt, sizes, mean, var, scale, shift, eps, shortcut = arguments["inputs"]
    n, h, w, ho, wo, ci, co, kh, kw, sh, sw, ph, pw, epilogue = np.array(sizes).tolist()
    weight = wt.T.reshape(co, kh, kw, ci)
    out = mx.conv2d(x, weight, (sh, sw), (ph, pw))
    assert out.shape == (n, ho, wo, co) == tuple(arguments["output_shapes"][0])
    if epilogue > 0:
        out = scale * ((out - mean) * mx.rsqrt(var + eps)) + shift
    if epilogue == 3:
        out = out + shortcut
    if epilogue >= 2:
        out = mx.maximum(out, 0)
    return [out]


def random_batch_norm(channels: int, rng: np.random.Generator) -> nn.BatchNorm:
    bn = nn.BatchNorm(channels, eps=1e-5)
    bn.update(
        {
            "running_mean": mx.array(rng.normal(0, 0.5, channels).astype(np.float32)),
            "running_var": mx.array(rng.uniform(0.2, 2, channels).astype(np.float32)),
            "weight": mx.array(rng.uniform(0.5, 1.5, channels).astype(np.float32)),
            "bias": mx.array(rng.normal(0, 0.5, channels).astype(np.float32)),
        }
    )
    bn.eval()
    return bn


@pytest.mark.parametrize(("relu", "with_shortcut"), [(False, False), (True, False), (True, True)])
def test_the_kernels_epilogue_is_the_batch_norm_relu_after_the_convolution(monkeypatch, relu, with_shortcut):
    """bn, bn then ReLU, bn + shortcut then ReLU as the kernel writes its output (through a stand-in of the kernel):
    the epilogue mode in the sizes, the batch norm's rows and the shortcut handed over, MLX's result after conv2d."""
    calls = []

    def stand_in(**arguments):
        calls.append(arguments)
        return mlx_conv_kernel(**arguments)

    monkeypatch.setattr(conv_kernel, "_KERNEL", [stand_in])
    rng = np.random.default_rng(int(relu) + 2 * int(with_shortcut))
    x = mx.array(rng.normal(0, 1, (2, 9, 7, 32)).astype(np.float32))
    weight = mx.array(rng.normal(0, 0.1, (64, 3, 3, 32)).astype(np.float32))
    bn = random_batch_norm(64, rng)
    shortcut = mx.array(rng.normal(0, 1, (2, 9, 7, 64)).astype(np.float32)) if with_shortcut else None
    ours = conv_kernel.conv2d(x, weight, (1, 1), (1, 1), norm=bn, relu=relu, shortcut=shortcut)
    convolved = mx.conv2d(x, weight, (1, 1), (1, 1))
    theirs = wespeaker.batch_norm_relu(bn, convolved, shortcut) if relu else bn(convolved)
    (call,) = calls
    assert np.array(call["inputs"][2]).tolist()[-1] == (3 if with_shortcut else 2 if relu else 1)
    statistics = [bn.running_mean, bn.running_var, bn.weight, bn.bias]
    assert all(handed is given for handed, given in zip(call["inputs"][3:7], statistics))
    assert np.array(call["inputs"][7]).tolist() == [np.float32(1e-5)]
    assert call["inputs"][8] is shortcut if with_shortcut else call["inputs"][8].size == 1
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("norm, relu", [(False, False), (True, False), (False, True)])
def test_a_shortcut_needs_the_batch_norm_and_relu(norm, relu):
    batch_norm = nn.BatchNorm(32) if norm else None
    with pytest.raises(ValueError, match="epilogue"):
        conv_kernel.conv2d(
            mx.zeros((1, 4, 4, 16)),
            mx.zeros((32, 1, 1, 16)),
            (1, 1),
            (0, 0),
            norm=batch_norm,
            relu=relu,
            shortcut=mx.zeros(1),
        )


def test_relu_needs_the_batch_norm():
    with pytest.raises(ValueError, match="epilogue"):
        conv_kernel.conv2d(mx.zeros((1, 4, 4, 16)), mx.zeros((32, 1, 1, 16)), (1, 1), (0, 0), relu=True)


def test_the_resnet_runs_its_batch_norms_in_the_kernels_epilogue(monkeypatch):
    """With the kernel route on CUDA (a stand-in of the kernel here), each block's convolutions carry their batch
    norms, the second its shortcut and ReLU, a projected shortcut its batch norm alone; the stem, whose one input
    channel the kernel does not take, keeps the product. The blocks' output is the CPU route's."""
    rng = np.random.default_rng(5)
    block = wespeaker.BasicBlock(32, 64, 2)
    block.update(
        nn.utils.tree_map(lambda p: mx.array(rng.normal(0, 0.1, p.shape).astype(np.float32)), block.parameters())
    )
    for bn in (block.bn1, block.bn2, block.shortcut[1]):
        bn.update({"running_var": mx.array(rng.uniform(0.2, 2, bn.running_var.shape).astype(np.float32))})
    block.eval()
    x = mx.array(np.maximum(rng.normal(0, 1, (2, 10, 9, 32)), 0).astype(np.float32))
    theirs = block(x)
    epilogues = []

    def stand_in(**arguments):
        epilogues.append(np.array(arguments["inputs"][2]).tolist()[-1])
        return mlx_conv_kernel(**arguments)

    monkeypatch.setattr(conv_kernel, "_KERNEL", [stand_in])
    monkeypatch.setattr(wespeaker, "route", lambda: "kernel")
    monkeypatch.setattr(wespeaker, "fused", lambda bn: True)
    monkeypatch.setattr(conv_kernel, "applies", lambda x, weight: x.shape[-1] % 16 == 0)
    ours = block(x)
    assert epilogues == [2, 1, 3]
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=1e-5)


def test_the_kernels_cuda_source_run_on_the_cpu_gives_float64s_convolutions():
    """benchmarks/emulate_conv_kernel.py compiles the kernel's CUDA source with g++ (a thread per CUDA thread, each
    `cp.async` copy done at once) and compares it with float64 at odd shapes, both sum modes and every epilogue: it
    exits 1 if one output is over 1e-5 of its scale away."""
    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    done = subprocess.run(
        [sys.executable, "emulate_conv_kernel.py"], cwd=benchmarks, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("epilogue 3: max") == 2 and done.stdout.count(": max") == 14
