"""The LSTM recurrence of one layer, both directions at once.

`run` takes the input projections of every step (x @ Wx^T + bias, the reverse direction already
read backwards) and runs the cell over time. On a GPU it runs a custom kernel that keeps h in shared
memory and c in registers and does all time steps in one launch (CUDA and Metal, the same
algorithm and sums; on CUDA each thread also keeps part of its weight column in registers, and a
small batch spreads over one or two windows per thread block). On the CPU it runs a numpy loop:
MLX's CPU backend spends about 20 us per operation and computes exp and tanh one value at a time,
numpy about 1 us and with SIMD, which makes the recurrence 5 times faster there. Elsewhere (other
dtypes, sizes the kernel does not handle) a portable MLX loop. All compute in float32 with
PyTorch's gate order i, f, g, o.
"""

from __future__ import annotations

import os

import mlx.core as mx
import numpy as np

from . import kernel_arguments

# MLX_SEGMENTATION_LSTM_KERNEL=0 forces the portable MLX loop on every device (to compare, or if a
# GPU misbehaves).
KERNEL_ENABLED = os.environ.get("MLX_SEGMENTATION_LSTM_KERNEL", "1") != "0"
MAX_THREADS = 1024  # one thread per gate column: 4 * hidden must fit in one thread block
SHARED_BYTES = {"cuda": 48 * 1024, "metal": 32 * 1024}  # static shared / threadgroup memory per block

CUDA_SOURCE = """
    constexpr int G = 4 * H;
    constexpr int PAIRS = TILE * H;      // (batch, unit) pairs of the block
    constexpr int P = (PAIRS + G - 1) / G;  // pairs each thread updates
    const int B = sizes[0], T = sizes[1];  // batch and steps: runtime values, so that one compiled kernel serves all
    const int j = threadIdx.x;   // gate column
    const int b0 = blockIdx.x * TILE;
    const int d = blockIdx.y;    // direction: 1 reads and writes time backwards
    __shared__ __align__(16) float h_s[TILE][H];
    __shared__ float g_s[TILE][G];
    float c_r[P];
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        const bool valid = b0 + b < B;
        const size_t s = ((size_t)d * B + b0 + b) * H + u;
        c_r[p] = 0.0f;
        if (q < PAIRS) {
            h_s[b][u] = valid ? h0[s] : 0.0f;
            c_r[p] = valid ? c0[s] : 0.0f;
        }
    }
    __syncthreads();
    const float* w = whT + (size_t)d * H * G;
    float w_r[R > 0 ? R : 1];  // the column's first R weights, held in registers for every step
    for (int k = 0; k < R; ++k) w_r[k] = w[k * G + j];
    for (int step = 0; step < T; ++step) {
        const int t = d == 0 ? step : T - 1 - step;
        float acc[TILE], xv[TILE];  // xv: this step's input projections, loaded before the product (EARLY)
        for (int b = 0; b < TILE; ++b) {
            acc[b] = 0.0f;
            if (EARLY) xv[b] = b0 + b < B ? xg[(((size_t)d * B + b0 + b) * T + t) * G + j] : 0.0f;
        }
        for (int k = 0; k < R; k += 4) {
            for (int b = 0; b < TILE; ++b) {
                const float4 hv = *reinterpret_cast<const float4*>(&h_s[b][k]);
                const float* wk = &w_r[k];
                acc[b] = fmaf(hv.w, wk[3], fmaf(hv.z, wk[2], fmaf(hv.y, wk[1], fmaf(hv.x, wk[0], acc[b]))));
            }
        }
        auto rows4 = [&](int k) {  // four rows of the column read from memory
            const float w0 = w[k * G + j], w1 = w[(k + 1) * G + j], w2 = w[(k + 2) * G + j], w3 = w[(k + 3) * G + j];
            for (int b = 0; b < TILE; ++b) {
                const float4 hv = *reinterpret_cast<const float4*>(&h_s[b][k]);
                acc[b] = fmaf(hv.w, w3, fmaf(hv.z, w2, fmaf(hv.y, w1, fmaf(hv.x, w0, acc[b]))));
            }
        };
        if (EARLY) {  // unrolled: the loads of eight iterations in flight at once
            #pragma unroll 8
            for (int k = R; k < H; k += 4) rows4(k);
        } else {
            for (int k = R; k < H; k += 4) rows4(k);
        }
        for (int b = 0; b < TILE; ++b) {
            if (b0 + b < B) g_s[b][j] = (EARLY ? xv[b] : xg[(((size_t)d * B + b0 + b) * T + t) * G + j]) + acc[b];
        }
        __syncthreads();
        for (int p = 0; p < P; ++p) {
            const int q = j + p * G, b = q / H, u = q % H;
            if (q < PAIRS && b0 + b < B) {
                const float i = 1.0f / (1.0f + expf(-g_s[b][u]));
                const float f = 1.0f / (1.0f + expf(-g_s[b][H + u]));
                const float g = tanhf(g_s[b][2 * H + u]);
                const float o = 1.0f / (1.0f + expf(-g_s[b][3 * H + u]));
                const float c = f * c_r[p] + i * g;
                const float h = o * tanhf(c);
                c_r[p] = c;
                h_s[b][u] = h;
                out[((size_t)(b0 + b) * T + t) * (D * H) + d * H + u] = h;
            }
        }
        __syncthreads();
    }
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        if (q < PAIRS && b0 + b < B) {
            const size_t s = ((size_t)d * B + b0 + b) * H + u;
            hn[s] = h_s[b][u];
            cn[s] = c_r[p];
        }
    }
"""

METAL_SOURCE = """
    constexpr int G = 4 * H;
    constexpr int P = TILE / 4;
    const int B = sizes[0], T = sizes[1];
    const int j = int(thread_position_in_threadgroup.x);
    const int b0 = int(threadgroup_position_in_grid.x) * TILE;
    const int d = int(threadgroup_position_in_grid.y);
    threadgroup float4 h_s4[TILE][H / 4];  // h, read four units at a time
    threadgroup float* h_s = (threadgroup float*)h_s4;
    threadgroup float g_s[TILE][G];
    float c_r[P];
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        const bool valid = b0 + b < B;
        const size_t s = (size_t(d) * B + b0 + b) * H + u;
        h_s[b * H + u] = valid ? h0[s] : 0.0f;
        c_r[p] = valid ? c0[s] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const device float* w = whT + size_t(d) * H * G;
    for (int step = 0; step < T; ++step) {
        const int t = d == 0 ? step : T - 1 - step;
        float acc[TILE];
        for (int b = 0; b < TILE; ++b) acc[b] = 0.0f;
        for (int k = 0; k < H; k += 4) {
            const float w0 = w[k * G + j], w1 = w[(k + 1) * G + j], w2 = w[(k + 2) * G + j], w3 = w[(k + 3) * G + j];
            for (int b = 0; b < TILE; ++b) {
                const float4 hv = h_s4[b][k / 4];
                acc[b] = metal::fma(hv.w, w3, metal::fma(hv.z, w2, metal::fma(hv.y, w1, metal::fma(hv.x, w0, acc[b]))));
            }
        }
        for (int b = 0; b < TILE; ++b) {
            if (b0 + b < B) g_s[b][j] = xg[((size_t(d) * B + b0 + b) * T + t) * G + j] + acc[b];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (int p = 0; p < P; ++p) {
            const int q = j + p * G, b = q / H, u = q % H;
            if (b0 + b < B) {
                const float i = 1.0f / (1.0f + metal::precise::exp(-g_s[b][u]));
                const float f = 1.0f / (1.0f + metal::precise::exp(-g_s[b][H + u]));
                const float g = metal::precise::tanh(g_s[b][2 * H + u]);
                const float o = 1.0f / (1.0f + metal::precise::exp(-g_s[b][3 * H + u]));
                const float c = f * c_r[p] + i * g;
                const float h = o * metal::precise::tanh(c);
                c_r[p] = c;
                h_s[b * H + u] = h;
                out[(size_t(b0 + b) * T + t) * (D * H) + d * H + u] = h;
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        if (b0 + b < B) {
            const size_t s = (size_t(d) * B + b0 + b) * H + u;
            hn[s] = h_s[b * H + u];
            cn[s] = c_r[p];
        }
    }
"""

_KERNELS: dict[str, object] = {}


def gpu_backend() -> str | None:
    """ "cuda" or "metal" when MLX computes on such a GPU by default, else None."""
    if mx.default_device().type != mx.DeviceType.gpu:
        return None
    if mx.metal.is_available():
        return "metal"
    if hasattr(mx, "cuda") and mx.cuda.is_available():
        return "cuda"
    return None


# Benchmarking: MLX_SEGMENTATION_LSTM_TILE=1, 2, 4, 8 or 16 forces a tile (1 and 2 on CUDA only); any other
# value is ignored. MLX_SEGMENTATION_LSTM_REGISTERS=0, 32 or 64 forces the weight rows CUDA keeps in registers.
TILE = {"1": 1, "2": 2, "4": 4, "8": 8, "16": 16}.get(os.environ.get("MLX_SEGMENTATION_LSTM_TILE", ""), 0)
REGISTERS = {"0": 0, "32": 32, "64": 64}.get(os.environ.get("MLX_SEGMENTATION_LSTM_REGISTERS", ""), -1)
# MLX_SEGMENTATION_LSTM_EARLY=0 or 1 forces CUDA's early loads (`_early_loads`) off or on.
EARLY = {"0": 0, "1": 1}.get(os.environ.get("MLX_SEGMENTATION_LSTM_EARLY", ""), -1)


def _tile(backend: str, hidden: int, batch: int) -> int | None:
    """Batch elements per thread block: on CUDA 1 up to 64 windows, 2 up to 128, 4 up to 512, else 8.

    Each step is a chain of dependent operations, so small batches run fastest spread over as many
    blocks as the GPU runs at once (an H100 has 132 multiprocessors; two directions per window).
    Measured on an H100 (benchmarks/results/h100_lstm_sweep.log): one layer at batch 32 takes 0.69 ms
    with tile 1, 1.32 with 4 (both with 64 weight rows in registers); at 256 tile 4 is fastest, at
    1024 tile 8. Metal keeps 4 and 8 (its kernel updates TILE / 4 pairs per thread).
    """
    if backend == "cuda":
        preferred = 1 if batch <= 64 else 2 if batch <= 128 else 4 if batch <= 512 else 8
        candidates = (16, 8, 4, 2, 1)
    else:
        preferred = 4 if batch <= 512 else 8
        candidates = (16, 8, 4)
    preferred = TILE or preferred
    for tile in candidates:
        if tile <= preferred and tile * 5 * hidden * 4 <= SHARED_BYTES[backend]:
            return tile
    return None


def _register_rows(hidden: int, tile: int) -> int:
    """Rows of the recurrent weights each CUDA thread keeps in registers: 64 up to tile 4 and 128 units.

    Read from registers instead of memory at every step: 1.8 to 3.4 times faster per layer up to
    tile 4 (same sums, same order). With 8 windows per block, or more than 512 threads (hidden > 128),
    64 rows would exceed the registers a block may have.
    """
    rows = REGISTERS if REGISTERS >= 0 else (64 if tile <= 4 and hidden <= 128 else 0)
    return min(rows, hidden)


def _early_loads(tile: int, rows: int) -> bool:
    """Whether each CUDA step loads its input projections before the product with h and unrolls the product's loop
    over the weight rows read from memory (the same sums in the same order): on, but for tile 4 with register rows.

    One layer of 589 steps on an H100 (benchmarks/results/h100_lstm_variants.log), on against off: batch 32 (tile
    1) 1.03 against 1.27 ms, 128 (tile 2) 1.42 against 1.96, 1024 (tile 8) 9.50 against 12.18. With 4 windows per
    block and 64 rows in registers it needs more registers than a block of 512 threads may have.
    """
    if EARLY >= 0:
        return bool(EARLY)
    return rows == 0 or tile <= 2


def kernel_applies(hidden: int, dtype: mx.Dtype) -> bool:
    backend = gpu_backend()
    return (
        KERNEL_ENABLED
        and backend is not None
        and dtype == mx.float32
        and 4 * hidden <= MAX_THREADS
        and hidden % 4 == 0
        and _tile(backend, hidden, 1) is not None
    )


def run(projected: mx.array, Wh: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """projected (D, B, T, 4H) in time order, Wh (D, 4H, H), h and c (D, B, H).

    Returns the hidden states (B, T, D * H) as PyTorch lays out a bidirectional LSTM's output (the
    reverse direction runs from the last step to the first), and the final h and c (D, B, H).
    """
    if kernel_applies(Wh.shape[-1], projected.dtype):
        return _run_kernel(projected, Wh, h, c, gpu_backend())
    if numpy_applies(projected.dtype):
        return run_numpy(projected, Wh, h, c)
    return _run_portable(projected, Wh, h, c)


def numpy_applies(dtype: mx.Dtype) -> bool:
    return KERNEL_ENABLED and mx.default_device().type == mx.DeviceType.cpu and dtype == mx.float32


def run_numpy(
    projected: mx.array | np.ndarray, Wh: mx.array, h: mx.array, c: mx.array
) -> tuple[mx.array, mx.array, mx.array]:
    """`run` in numpy, in place on preallocated buffers (no copy of the inputs); each step's h is written where the
    next step reads it, in step order, and laid out as `run`'s outputs at the end."""
    directions, batch, steps, gates_size = projected.shape
    hidden = gates_size // 4
    inputs = np.asarray(projected, dtype=np.float32)
    weights = np.ascontiguousarray(np.asarray(Wh, dtype=np.float32).transpose(0, 2, 1))  # (D, H, 4H)
    states = np.empty((steps + 1, directions, batch, hidden), np.float32)  # h before each step, and the last
    states[0] = np.asarray(h, dtype=np.float32)
    c = np.array(c, dtype=np.float32)
    gates, g, cell = np.empty((directions, batch, gates_size), np.float32), np.empty_like(c), np.empty_like(c)
    i, f, o = gates[..., :hidden], gates[..., hidden : 2 * hidden], gates[..., 3 * hidden :]
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88 gives sigmoid 0, as it should
        for step in range(steps):
            times = (step, steps - 1 - step)  # the reverse direction reads time backwards
            np.matmul(states[step], weights, out=gates)
            for d in range(directions):
                gates[d] += inputs[d, :, times[d]]
            np.tanh(gates[..., 2 * hidden : 3 * hidden], out=g)
            np.negative(gates, out=gates)  # sigmoid of all four (the g column is not read again)
            np.exp(gates, out=gates)
            gates += 1.0
            np.reciprocal(gates, out=gates)
            c *= f
            np.multiply(i, g, out=cell)
            c += cell
            np.tanh(c, out=cell)
            np.multiply(o, cell, out=states[step + 1])
    outputs = np.empty((batch, steps, directions * hidden), dtype=np.float32)
    outputs[:, :, :hidden] = states[1:, 0].transpose(1, 0, 2)
    if directions == 2:  # the reverse direction's step s is time steps - 1 - s
        outputs[:, :, hidden:] = states[:0:-1, 1].transpose(1, 0, 2)
    return mx.array(outputs), mx.array(states[steps]), mx.array(c)


def _run_portable(projected: mx.array, Wh: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    directions = projected.shape[0]
    if directions == 2:  # step both directions together: the reverse one reads time backwards
        projected = mx.stack([projected[0], projected[1, :, ::-1]])
    Wh_T = Wh.transpose(0, 2, 1)
    hidden = []
    for t in range(projected.shape[2]):
        gates = projected[:, :, t] + h @ Wh_T
        i, f, g, o = mx.split(gates, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        hidden.append(h)
    outputs = mx.stack(hidden, axis=2)  # (directions, batch, time, hidden)
    if directions == 2:
        return mx.concatenate([outputs[0], outputs[1, :, ::-1]], axis=-1), h, c
    return outputs[0], h, c


def _run_kernel(
    projected: mx.array, Wh: mx.array, h: mx.array, c: mx.array, backend: str
) -> tuple[mx.array, mx.array, mx.array]:
    directions, batch, steps, gates = projected.shape
    hidden = gates // 4
    tile = _tile(backend, hidden, batch)
    rows = _register_rows(hidden, tile)
    if backend not in _KERNELS:
        make = mx.fast.cuda_kernel if backend == "cuda" else mx.fast.metal_kernel
        _KERNELS[backend] = make(
            name="pyannet_lstm_recurrence",
            input_names=["xg", "whT", "h0", "c0", "sizes"],
            output_names=["out", "hn", "cn"],
            source=CUDA_SOURCE if backend == "cuda" else METAL_SOURCE,
        )
    state_shape = (directions, batch, hidden)
    out, hn, cn = _KERNELS[backend](
        inputs=[projected, Wh.transpose(0, 2, 1), h, c, kernel_arguments.int32s(batch, steps)],
        template=[("D", directions), ("H", hidden), ("TILE", tile)]
        + ([("R", rows), ("EARLY", int(_early_loads(tile, rows)))] if backend == "cuda" else []),
        grid=(-(-batch // tile) * gates, directions, 1),
        threadgroup=(gates, 1, 1),
        output_shapes=[(batch, steps, directions * hidden), state_shape, state_shape],
        output_dtypes=[mx.float32] * 3,
    )
    return out, hn, cn
