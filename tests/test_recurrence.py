"""The LSTM recurrence's CPU paths: the numpy loop (the CPU's default) against the portable MLX loop.

Both are checked against PyTorch's LSTM by the component checks (tests/test_checks.py runs them on
this CPU, through the numpy loop); this keeps the MLX loop, which GPUs use for other dtypes, equal to it.
"""

import os
import re
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from mlx_segmentation import recurrence


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("batch", [1, 5])
def test_numpy_loop_equals_the_mlx_loop(directions: int, batch: int):
    rng = np.random.default_rng(directions * 10 + batch)
    hidden, steps = 16, 37
    projected = mx.array(rng.normal(0, 3, (directions, batch, steps, 4 * hidden)).astype(np.float32))
    Wh = mx.array(rng.normal(0, 0.3, (directions, 4 * hidden, hidden)).astype(np.float32))
    h = mx.array(rng.normal(0, 1, (directions, batch, hidden)).astype(np.float32))
    c = mx.array(rng.normal(0, 1, (directions, batch, hidden)).astype(np.float32))
    ours = recurrence.run_numpy(projected, Wh, h, c)
    portable = recurrence._run_portable(projected, Wh, h, c)
    assert ours[0].shape == (batch, steps, directions * hidden)
    for a, b in zip(ours, portable, strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=0, atol=2e-6)


def test_the_cpu_runs_the_numpy_loop_unless_told_not_to(monkeypatch):
    assert mx.default_device().type == mx.DeviceType.cpu
    assert recurrence.numpy_applies(mx.float32)
    assert not recurrence.numpy_applies(mx.float16)
    monkeypatch.setattr(recurrence, "KERNEL_ENABLED", False)
    assert not recurrence.numpy_applies(mx.float32)


def test_sincnet_in_parts_equals_sincnet_whole(converted, monkeypatch):
    """A batch larger than SINCNET_CHUNK_SAMPLES runs SincNet in parts (with a smaller last one): same features."""
    from mlx_segmentation import load, pyannet

    model = load(converted["segmentation-3.0"])
    waveforms = mx.array(np.random.default_rng(0).normal(0, 0.1, (7, 160000)).astype(np.float32))
    whole = model.sincnet(waveforms)
    monkeypatch.setattr(pyannet, "SINCNET_CHUNK_SAMPLES", 3 * 160000)  # parts of 3, 3 and 1 windows
    parts = model.sincnet(waveforms)
    assert parts.shape == whole.shape == (7, 589, 60)
    np.testing.assert_allclose(np.array(parts), np.array(whole), rtol=0, atol=1e-6)


@pytest.mark.parametrize("directions", [1, 2])
def test_lstm_layer_in_stretches_equals_the_layer_at_once(directions: int, monkeypatch):
    """Projections a stretch of steps at a time (uneven: 37 steps in 10s; the reverse direction mirrored): same
    outputs and final state as all at once, from a non-zero state, each stretch a part."""
    from mlx_segmentation import pyannet
    from mlx_segmentation.parts import Parts

    rng = np.random.default_rng(directions)
    batch, steps, inputs, hidden = 3, 37, 12, 8
    layer = pyannet.LSTMLayer(inputs, hidden, directions)
    for name, shape in (("Wx", (directions, 4 * hidden, inputs)), ("Wh", (directions, 4 * hidden, hidden))):
        setattr(layer, name, mx.array(rng.normal(0, 0.5, shape).astype(np.float32)))
    layer.bias = mx.array(rng.normal(0, 0.5, (directions, 4 * hidden)).astype(np.float32))
    x = mx.array(rng.normal(0, 1, (batch, steps, inputs)).astype(np.float32))
    state = tuple(mx.array(rng.normal(0, 1, (directions, batch, hidden)).astype(np.float32)) for _ in range(2))
    at_once, (h, c) = layer(x, state)
    monkeypatch.setattr(pyannet, "LSTM_PART_VALUES", directions * batch * 4 * hidden * 10)
    parts = Parts(ahead=1)
    in_stretches, (h2, c2) = layer(x, state, parts=parts)
    assert len(parts.queued) == 1  # 4 stretches, all but the last waited for
    assert in_stretches.shape == at_once.shape == (batch, steps, directions * hidden)
    for ours, whole in ((in_stretches, at_once), (h2, h), (c2, c)):
        np.testing.assert_allclose(np.array(ours), np.array(whole), rtol=0, atol=1e-6)


def test_kernel_tile_follows_the_batch():
    """CUDA: 1 window per thread block up to 64, 2 up to 128, 4 up to 512, 8 above; Metal 4 then 8; what fits."""
    batches = (1, 32, 64, 65, 128, 129, 512, 513, 4096)
    assert [recurrence._tile("cuda", 128, batch) for batch in batches] == [1, 1, 1, 2, 2, 4, 4, 8, 8]
    assert [recurrence._tile("metal", 128, batch) for batch in (1, 32, 512, 513)] == [4, 4, 4, 8]
    assert recurrence._tile("metal", 256, 4096) == 4  # 8 x 5 x 256 floats exceed Metal's 32 KiB
    assert recurrence._tile("cuda", 4096, 1) is None  # not even one window's h and gates fit


def test_weight_rows_in_registers_only_where_the_block_has_them():
    """64 rows up to 4 windows per block and 128 units (512 threads); none for 8 windows or wider layers."""
    assert [recurrence._register_rows(128, tile) for tile in (1, 2, 4, 8, 16)] == [64, 64, 64, 0, 0]
    assert recurrence._register_rows(256, 1) == 0
    assert recurrence._register_rows(32, 1) == 32


def knob_at_import(variable: str, value: str, attribute: str) -> str:
    """`recurrence.<attribute>` as a fresh process with `variable` set to `value` imports it (no crash at import)."""
    code = f"from mlx_segmentation import recurrence; print(recurrence.{attribute})"
    env = {**os.environ, variable: value}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize(("value", "tile"), [("8", 8), ("1", 1), ("3", 0), ("abc", 0), ("", 0), ("-4", 0)])
def test_the_tile_knob_takes_only_tiles_the_kernel_has(value, tile):
    """MLX_SEGMENTATION_LSTM_TILE: 1, 2, 4, 8 or 16, anything else ignored (no crash at import, no tile of 3)."""
    assert knob_at_import("MLX_SEGMENTATION_LSTM_TILE", value, "TILE") == str(tile)


@pytest.mark.parametrize(("value", "rows"), [("64", 64), ("0", 0), ("48", -1), ("x", -1), ("", -1)])
def test_the_register_knob_takes_only_what_the_kernel_was_measured_with(value, rows):
    """MLX_SEGMENTATION_LSTM_REGISTERS: 0, 32 or 64, anything else ignored (-1: the rule decides)."""
    assert knob_at_import("MLX_SEGMENTATION_LSTM_REGISTERS", value, "REGISTERS") == str(rows)


def test_early_loads_everywhere_but_tile_4_with_register_rows():
    """On for tiles 1 and 2 (64 register rows) and 8 (none); off for tile 4 with 64 rows, which would need more
    registers than a block of 512 threads may have (it failed to launch on an H100)."""
    cases = [(tile, recurrence._register_rows(128, tile)) for tile in (1, 2, 4, 8)]
    assert [recurrence._early_loads(tile, rows) for tile, rows in cases] == [True, True, False, True]
    assert recurrence._early_loads(4, 0)


@pytest.mark.parametrize(("value", "early"), [("0", 0), ("1", 1), ("2", -1), ("yes", -1), ("", -1)])
def test_the_early_loads_knob_takes_only_on_and_off(value, early):
    assert knob_at_import("MLX_SEGMENTATION_LSTM_EARLY", value, "EARLY") == str(early)


def test_the_metal_kernel_names_only_its_own_template_parameters():
    """The CUDA kernel's R and EARLY are not passed to Metal (no Metal here to compile it): its source may not name
    them. Each kernel's upper-case names are its template parameters or constants it declares."""
    for source, passed in (
        (recurrence.METAL_SOURCE, {"D", "H", "TILE"}),
        (recurrence.CUDA_SOURCE, {"D", "H", "TILE", "R", "EARLY"}),
    ):
        names = set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", source))
        declared = set(re.findall(r"\b(?:constexpr int|const int)\s+([A-Z][A-Z0-9_]*)", source))
        declared |= {
            m for line in re.findall(r"const int ([^;]+);", source) for m in re.findall(r"\b([A-Z])\s*=", line)
        }
        assert names <= passed | declared, names - passed - declared
