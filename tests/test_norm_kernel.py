"""SincNet's max-pool, instance norm and LeakyReLU as one CUDA kernel (`norm_kernel`): what it is handed and its
way of summing, checked here through a numpy stand-in that follows the kernel's lanes, chunks and merges in float32
(the kernel runs on CUDA only; benchmarks/segmentation_stages.py compares it with MLX's operations and float64 on a
GPU, and the checks run the whole models through it there)."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_segmentation import conv_kernel, norm_kernel, pyannet

F32 = np.float32


def merge(a, b):
    """The kernel's `merge` (Chan et al.) of (count, mean, sum of squares) b into a, in float32, where b has frames."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    total = n_a + n_b
    delta = mean_b - mean_a
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = mean_a + delta * (n_b / total)
        m2 = m2_a + (m2_b + delta * delta * (n_a * n_b / total))
    has = n_b > 0
    return np.where(has, total, n_a), np.where(has, mean, mean_a), np.where(has, m2, m2_a)


def numpy_pool_norm(**arguments):
    """The kernel's result from the arguments MLX would get, summed as the kernel sums: each lane's frames J at a time
    (their mean, then the squares around it), merged into the lane's statistics, then the lanes in a tree."""
    x, weight, bias, params = (np.array(a, F32) for a in arguments["inputs"][:4])
    steps, frames, channels = (int(v) for v in np.array(arguments["inputs"][4]))
    template = dict(arguments["template"])
    group, lanes, pool, leaky = template["CG"], template["TL"], template["POOL"], template["LEAKY"]
    assert arguments["threadgroup"] == (group * lanes, 1, 1) and group * lanes <= norm_kernel.THREADS
    assert arguments["grid"] == (channels // group * group * lanes, len(x), 1) and channels % group == 0
    assert x.shape[1:] == (steps, channels)
    batch, J = len(x), norm_kernel.J
    pooled = x[:, : frames * pool].reshape(batch, frames, pool, channels).max(axis=2)
    first = pooled[:, :1]
    chunks = -(-frames // (J * lanes))
    shifted = np.zeros((batch, chunks * J * lanes, channels), F32)
    shifted[:, :frames] = pooled - first
    valid = np.arange(chunks * J * lanes) < frames
    v = shifted.reshape(batch, chunks, J, lanes, channels)  # frame (k J + j) lanes + l is lane l's chunk k, row j
    valid = valid.reshape(chunks, J, lanes)[None, :, :, :, None]
    count = valid.sum(axis=2, dtype=np.int64).astype(F32)  # (1, chunks, lanes, 1)
    total = np.zeros((batch, chunks, lanes, channels), F32)
    for j in range(J):
        total = total + v[:, :, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        part_mean = total / count
    part_m2 = np.zeros_like(total)
    for j in range(J):
        d = v[:, :, j] - part_mean
        part_m2 = np.where(valid[:, :, j], (d.astype(np.float64) ** 2 + part_m2).astype(F32), part_m2)
    zeros = np.zeros((batch, lanes, channels), F32)
    stats = (zeros, zeros, zeros)
    for k in range(chunks):
        stats = merge(stats, (np.broadcast_to(count[:, k], zeros.shape), part_mean[:, k], part_m2[:, k]))
    apart = 1
    while apart < lanes:
        takers = np.arange(0, lanes - apart, 2 * apart)
        merged = merge(tuple(s[:, takers] for s in stats), tuple(s[:, takers + apart] for s in stats))
        for s, m in zip(stats, merged):
            s[:, takers] = m
        apart *= 2
    mean, scale = stats[1][:, :1], (1 / np.sqrt(stats[2][:, :1] / F32(frames) + params[0])).astype(F32)
    out = weight * (((pooled - first) - mean) * scale) + bias
    if leaky:
        out = np.where(out > 0, out, out * params[1])
    return [mx.array(out.astype(F32))]


def mlx_pool_norm(x, norm, pool, slope):
    """What the model computes without the kernel: MLX's max-pool, `pyannet.InstanceNorm`, LeakyReLU."""
    pooled = nn.MaxPool1d(pool, stride=pool)(x) if pool > 1 else x
    out = pyannet._instance_norm(pooled, norm.weight, norm.bias, norm.eps)
    return out if slope is None else nn.leaky_relu(out, slope)


@pytest.mark.parametrize(
    ("batch", "steps", "channels", "pool", "slope"),
    [
        (3, 5333, 80, 1, 0.01),
        (2, 5329, 60, 3, 0.01),
        (2, 1777, 60, 3, 0.01),
        (2, 80000, 1, 1, None),
        (1, 40, 37, 1, 0.2),
    ],
)
def test_the_kernel_gets_its_sizes_and_gives_the_modules_result(monkeypatch, batch, steps, channels, pool, slope):
    """Sizes, template, grid and parameters through the stand-in: MLX's max-pool, instance norm and LeakyReLU within
    float32 rounding, on values with an offset (which the statistics around the first frame keep exact)."""
    calls = []

    def stand_in(**arguments):
        calls.append(arguments)
        return numpy_pool_norm(**arguments)

    monkeypatch.setattr(norm_kernel, "_KERNEL", [stand_in])
    rng = np.random.default_rng(steps)
    x = mx.array((rng.normal(0, 1, (batch, steps, channels)) * rng.uniform(0.1, 10, channels) + 3).astype(F32))
    norm = pyannet.InstanceNorm(channels)
    norm.weight = mx.array(rng.uniform(0.5, 2, channels).astype(F32))
    norm.bias = mx.array(rng.normal(0, 1, channels).astype(F32))
    ours = norm_kernel.pool_norm(x, norm.weight, norm.bias, norm.eps, pool, slope)
    theirs = mlx_pool_norm(x, norm, pool, slope)
    (call,) = calls
    assert ours.shape == theirs.shape == (batch, steps // pool, channels)
    assert np.array(call["inputs"][4]).tolist() == [steps, steps // pool, channels]
    assert np.array(call["inputs"][3]).tolist() == pytest.approx([1e-5, 0.0 if slope is None else slope])
    assert dict(call["template"])["LEAKY"] == (slope is not None) and dict(call["template"])["POOL"] == pool
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=2e-5)


def test_its_statistics_are_as_close_to_float64_as_the_modules():
    """Ten seconds of one channel with a large offset: the kernel's sums stay near float64, as MLX's blocked ones."""
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1, (1, 160_000, 1)) * 0.01 + 0.5).astype(F32)
    exact = (x - x.mean(axis=1, dtype=np.float64)) / np.sqrt(x.astype(np.float64).var(axis=1) + 1e-5)
    arguments = {
        "inputs": [x, np.ones(1), np.zeros(1), np.array([1e-5, 0.0]), np.array([160_000, 160_000, 1])],
        "template": [("CG", 1), ("TL", 512), ("POOL", 1), ("LEAKY", 0)],
        "grid": (512, 1, 1),
        "threadgroup": (512, 1, 1),
    }
    (ours,) = numpy_pool_norm(**arguments)
    theirs = mlx_pool_norm(mx.array(x), pyannet.InstanceNorm(1), 1, None)
    kernel_distance = np.abs(np.array(ours, np.float64) - exact).max()
    module_distance = np.abs(np.array(theirs, np.float64) - exact).max()
    assert kernel_distance < 2e-5 and kernel_distance < 2 * module_distance + 1e-6


def test_a_constant_channel_normalises_to_exactly_the_bias(monkeypatch):
    """Digital silence (and any constant channel): zero variance, the output exactly the norm's bias, then its
    LeakyReLU, as in float64."""
    monkeypatch.setattr(norm_kernel, "_KERNEL", [numpy_pool_norm])
    x = np.random.default_rng(1).normal(0, 1, (2, 900, 4)).astype(F32)
    x[0, :, 1] = 0.3
    x[1, :, 2] = 0.0
    bias = mx.array([0.1, -0.5, 0.25, 1.0])
    out = np.array(norm_kernel.pool_norm(mx.array(x), mx.ones(4), bias, 1e-5, 3, 0.01))
    assert np.all(out[0, :, 1] == F32(-0.5) * F32(0.01)) and np.all(out[1, :, 2] == F32(0.25))


def test_the_model_runs_its_norms_through_the_kernel(monkeypatch):
    """With the kernel applying (its stand-in here), SincNet's input norm and its three stages' pool, norm and LeakyReLU
    go through it, each stage's pool as the model's (1 after the sinc filters' own, 3 after the other two), and the
    model's output stays the same within float32 rounding."""
    calls = []

    def stand_in(**arguments):
        calls.append(dict(arguments["template"]))
        return numpy_pool_norm(**arguments)

    sincnet = pyannet.SincNet(stride=10)
    rng = np.random.default_rng(2)
    sincnet.update(nn.utils.tree_map(lambda p: mx.array(rng.normal(0, 0.1, p.shape).astype(F32)), sincnet.parameters()))
    windows = mx.array(rng.normal(0, 0.1, (2, 32000)).astype(F32))
    theirs = sincnet(windows)
    monkeypatch.setattr(norm_kernel, "_KERNEL", [stand_in])
    monkeypatch.setattr(norm_kernel, "applies", lambda x: x.dtype == mx.float32 and x.ndim == 3)
    ours = sincnet(windows)
    assert [(c["CG"], c["POOL"], c["LEAKY"]) for c in calls] == [(1, 1, 0), (20, 1, 1), (20, 3, 1), (20, 3, 1)]
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=1e-5)


def test_it_applies_on_cuda_to_float32_and_a_grid_of_windows(monkeypatch):
    x = mx.zeros((2, 100, 60))
    assert norm_kernel.applies(x) == conv_kernel.on_cuda()
    monkeypatch.setattr(conv_kernel, "on_cuda", lambda: True)
    assert norm_kernel.applies(x)
    assert not norm_kernel.applies(x.astype(mx.float16))
    assert not norm_kernel.applies(mx.zeros((2, 100)))
    assert not norm_kernel.applies(mx.zeros((norm_kernel.MAX_BATCH + 1, 1, 1)))
    monkeypatch.setattr(conv_kernel, "on_cuda", lambda: False)
    assert not norm_kernel.applies(x)


@pytest.mark.parametrize(
    ("channels", "shape"), [(80, (20, 25)), (60, (20, 25)), (1, (1, 512)), (64, (16, 32)), (37, (1, 512))]
)
def test_a_block_holds_the_most_channels_that_divide_them_up_to_20(channels, shape):
    assert norm_kernel.block_shape(channels) == shape


def test_no_frames_no_launch(monkeypatch):
    monkeypatch.setattr(norm_kernel, "_KERNEL", [None])
    assert norm_kernel.pool_norm(mx.zeros((2, 2, 60)), mx.ones(60), mx.zeros(60), 1e-5, 3, 0.01).shape == (2, 0, 60)
