"""The LSTM recurrence of one layer, both directions at once.

`run` takes the input projections of every step (x @ Wx^T + bias, the reverse direction already
read backwards) and runs the cell over time. On a GPU it runs a custom kernel that keeps h in shared
memory and c in registers and does all time steps in one launch (CUDA and Metal, the same
algorithm); elsewhere, or for sizes the kernel does not handle, a portable MLX loop. Both compute in
float32 with PyTorch's gate order i, f, g, o.
"""

from __future__ import annotations

import os

import mlx.core as mx

# MLX_SEGMENTATION_LSTM_KERNEL=0 forces the portable loop (to compare, or if a GPU misbehaves).
KERNEL_ENABLED = os.environ.get("MLX_SEGMENTATION_LSTM_KERNEL", "1") != "0"
MAX_THREADS = 1024  # one thread per gate column: 4 * hidden must fit in one thread block
SHARED_BYTES = {"cuda": 48 * 1024, "metal": 32 * 1024}  # static shared / threadgroup memory per block

CUDA_SOURCE = """
    constexpr int G = 4 * H;
    constexpr int P = TILE / 4;  // (batch, unit) pairs each thread updates
    const int j = threadIdx.x;   // gate column
    const int b0 = blockIdx.x * TILE;
    const int d = blockIdx.y;
    __shared__ float h_s[TILE][H];
    __shared__ float g_s[TILE][G];
    float c_r[P];
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        const bool valid = b0 + b < B;
        const size_t s = ((size_t)d * B + b0 + b) * H + u;
        h_s[b][u] = valid ? h0[s] : 0.0f;
        c_r[p] = valid ? c0[s] : 0.0f;
    }
    __syncthreads();
    const float* w = whT + (size_t)d * H * G;
    for (int t = 0; t < T; ++t) {
        float acc[TILE];
        for (int b = 0; b < TILE; ++b) acc[b] = 0.0f;
        for (int k = 0; k < H; ++k) {
            const float wk = w[k * G + j];
            for (int b = 0; b < TILE; ++b) acc[b] += h_s[b][k] * wk;
        }
        for (int b = 0; b < TILE; ++b) {
            if (b0 + b < B) g_s[b][j] = xg[(((size_t)d * B + b0 + b) * T + t) * G + j] + acc[b];
        }
        __syncthreads();
        for (int p = 0; p < P; ++p) {
            const int q = j + p * G, b = q / H, u = q % H;
            if (b0 + b < B) {
                const float i = 1.0f / (1.0f + expf(-g_s[b][u]));
                const float f = 1.0f / (1.0f + expf(-g_s[b][H + u]));
                const float g = tanhf(g_s[b][2 * H + u]);
                const float o = 1.0f / (1.0f + expf(-g_s[b][3 * H + u]));
                const float c = f * c_r[p] + i * g;
                const float h = o * tanhf(c);
                c_r[p] = c;
                h_s[b][u] = h;
                out[(((size_t)d * B + b0 + b) * T + t) * H + u] = h;
            }
        }
        __syncthreads();
    }
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        if (b0 + b < B) {
            const size_t s = ((size_t)d * B + b0 + b) * H + u;
            hn[s] = h_s[b][u];
            cn[s] = c_r[p];
        }
    }
"""

METAL_SOURCE = """
    constexpr int G = 4 * H;
    constexpr int P = TILE / 4;
    const int j = int(thread_position_in_threadgroup.x);
    const int b0 = int(threadgroup_position_in_grid.x) * TILE;
    const int d = int(threadgroup_position_in_grid.y);
    threadgroup float h_s[TILE][H];
    threadgroup float g_s[TILE][G];
    float c_r[P];
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        const bool valid = b0 + b < B;
        const size_t s = (size_t(d) * B + b0 + b) * H + u;
        h_s[b][u] = valid ? h0[s] : 0.0f;
        c_r[p] = valid ? c0[s] : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const device float* w = whT + size_t(d) * H * G;
    for (int t = 0; t < T; ++t) {
        float acc[TILE];
        for (int b = 0; b < TILE; ++b) acc[b] = 0.0f;
        for (int k = 0; k < H; ++k) {
            const float wk = w[k * G + j];
            for (int b = 0; b < TILE; ++b) acc[b] = metal::fma(h_s[b][k], wk, acc[b]);
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
                h_s[b][u] = h;
                out[((size_t(d) * B + b0 + b) * T + t) * H + u] = h;
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (int p = 0; p < P; ++p) {
        const int q = j + p * G, b = q / H, u = q % H;
        if (b0 + b < B) {
            const size_t s = (size_t(d) * B + b0 + b) * H + u;
            hn[s] = h_s[b][u];
            cn[s] = c_r[p];
        }
    }
"""

_KERNELS: dict[str, object] = {}


def gpu_backend() -> str | None:
    """"cuda" or "metal" when MLX computes on such a GPU by default, else None."""
    if mx.default_device().type != mx.DeviceType.gpu:
        return None
    if mx.metal.is_available():
        return "metal"
    if hasattr(mx, "cuda") and mx.cuda.is_available():
        return "cuda"
    return None


def _tile(backend: str, hidden: int) -> int | None:
    """Batch elements per thread block: the largest of 16, 8, 4 whose h and gates fit in shared memory."""
    for tile in (16, 8, 4):
        if tile * 5 * hidden * 4 <= SHARED_BYTES[backend]:
            return tile
    return None


def kernel_applies(hidden: int, dtype: mx.Dtype, backend: str | None = None) -> bool:
    backend = backend or gpu_backend()
    return KERNEL_ENABLED and backend is not None and dtype == mx.float32 and 4 * hidden <= MAX_THREADS and _tile(backend, hidden) is not None


def run(
    projected: mx.array, Wh: mx.array, h: mx.array, c: mx.array, *, use_kernel: bool | None = None
) -> tuple[mx.array, mx.array, mx.array]:
    """projected (D, B, T, 4H), Wh (D, 4H, H), h and c (D, B, H) -> hidden states (D, B, T, H), h_T, c_T."""
    hidden = Wh.shape[-1]
    if use_kernel is None:
        use_kernel = kernel_applies(hidden, projected.dtype)
    if use_kernel:
        return _run_kernel(projected, Wh, h, c, gpu_backend() or "cuda")
    return _run_portable(projected, Wh, h, c)


def _run_portable(projected: mx.array, Wh: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    Wh_T = Wh.transpose(0, 2, 1)
    hidden = []
    for t in range(projected.shape[2]):
        gates = projected[:, :, t] + h @ Wh_T
        i, f, g, o = mx.split(gates, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        hidden.append(h)
    return mx.stack(hidden, axis=2), h, c


def _run_kernel(projected: mx.array, Wh: mx.array, h: mx.array, c: mx.array, backend: str) -> tuple[mx.array, mx.array, mx.array]:
    directions, batch, steps, gates = projected.shape
    hidden = gates // 4
    tile = _tile(backend, hidden)
    if backend not in _KERNELS:
        make = mx.fast.cuda_kernel if backend == "cuda" else mx.fast.metal_kernel
        _KERNELS[backend] = make(
            name="pyannet_lstm_recurrence",
            input_names=["xg", "whT", "h0", "c0"],
            output_names=["out", "hn", "cn"],
            source=CUDA_SOURCE if backend == "cuda" else METAL_SOURCE,
        )
    state_shape = (directions, batch, hidden)
    out, hn, cn = _KERNELS[backend](
        inputs=[projected, Wh.transpose(0, 2, 1), h, c],
        template=[("B", batch), ("T", steps), ("H", hidden), ("TILE", tile)],
        grid=(-(-batch // tile) * gates, directions, 1),
        threadgroup=(gates, 1, 1),
        output_shapes=[(directions, batch, steps, hidden), state_shape, state_shape],
        output_dtypes=[mx.float32] * 3,
    )
    return out, hn, cn
