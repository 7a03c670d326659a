"""An optimised BLAS for MLX's CPU backend on Linux, where one is installed.

MLX's Linux CPU wheel multiplies matrices with the reference BLAS it bundles (netlib, no blocking or
vector kernels): about 5 GFLOP/s here, 20 to 30 times slower than PyTorch's. Its convolutions and
matrix products call `cblas_sgemm`, so a library that exports that name and is loaded into the global
symbol scope before MLX is imported serves them instead. Intel MKL's pip wheel (`mkl`, the `cpu`
extra) is one: where it is installed, `load()` loads its single dynamic library, in sequential mode,
and MLX computes the same float32 products, to rounding (the checks pass, and are closer to float64).
`MLX_SEGMENTATION_BLAS=reference` keeps MLX's own.
"""

from __future__ import annotations

import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

CHOICE = "MLX_SEGMENTATION_BLAS"  # "reference": leave MLX's bundled BLAS alone
# Threads sharing our own products (`in_threads`; MKL itself stays sequential, `load` says why). Default: the
# cores this process may run on.
THREADS_VARIABLE = "MLX_SEGMENTATION_CPU_THREADS"
loaded: Path | None = None  # the library MLX's products go to, once `load()` found one


def mkl_library() -> Path | None:
    """Intel MKL's runtime library as pip's `mkl` wheel installs it (into the environment's lib/)."""
    candidates = sorted(Path(sys.prefix, "lib").glob("libmkl_rt.so.*"))
    return candidates[-1] if candidates else None


def load() -> Path | None:
    """Load MKL for MLX if this is Linux, MKL is installed, MLX is not imported yet and the user did not say no."""
    global loaded
    if loaded is not None:
        return loaded
    if not sys.platform.startswith("linux") or os.environ.get(CHOICE) == "reference" or "mlx.core" in sys.modules:
        return None
    library = mkl_library()
    if library is None:
        return None
    # One thread: threaded (Intel or GNU OpenMP, any wait policy), it made MLX 1.2 times faster here but torch in
    # the same process (the checks run both) 2 to 10 times slower (docs/speed.md, CPU).
    os.environ.setdefault("MKL_THREADING_LAYER", "SEQUENTIAL")
    try:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    loaded = library
    return loaded


def described() -> str:
    """Which BLAS MLX's CPU products go to, MKL's threading settings and our products' threads (for benchmarks)."""
    if loaded is None:
        return "MLX's bundled reference BLAS"
    settings = ", ".join(f"{name}={os.environ.get(name)}" for name in ("MKL_THREADING_LAYER", "MKL_NUM_THREADS"))
    return f"{loaded} ({settings}); cpu_conv's products on {threads()} threads"


def threads() -> int:
    """Threads sharing `in_threads` work: `MLX_SEGMENTATION_CPU_THREADS` if a positive number, else the usable cores."""
    value = os.environ.get(THREADS_VARIABLE, "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    usable = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every core
    return len(usable(0)) if usable else os.cpu_count() or 1


_pool: dict[int, ThreadPoolExecutor] = {}  # by thread count


# MKL multiplies products of fewer rows otherwise (2 to 15 rows here, or 1: other sums, other last bits); from 16
# rows on, a row's sums are the same wherever it sits and however many rows share the product (docs/speed.md).
MIN_ROWS = 64


def in_threads(work: Callable[[int, int], None], total: int, least: int = 1) -> None:
    """`work(start, stop)` over `total` rows, one contiguous range per thread, each at least `least` rows (fewer
    threads if need be), and wait for all.

    Ranges of `MIN_ROWS` or more give products the same sums bit for bit as one product of every row. ctypes
    lets go of the GIL during each product, so the threads compute at once. They hold no MLX state: MLX's
    streams are per thread.
    """
    count = max(1, min(threads(), total // max(least, 1)))
    if count <= 1:
        return work(0, total)
    pool = _pool.setdefault(count, ThreadPoolExecutor(count, thread_name_prefix="mlx-segmentation-cpu"))
    bounds = [total * i // count for i in range(count + 1)]
    for future in [pool.submit(work, start, stop) for start, stop in zip(bounds, bounds[1:])]:
        future.result()


_sgemm = None
MAX_SIZE = 2**31 - 1  # cblas takes 32-bit sizes


def sgemm_nt(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float) -> None:
    """c = a @ b.T + beta * c through the loaded library's cblas_sgemm (C-contiguous float32 arrays, checked)."""
    global _sgemm
    m, k = a.shape
    n = b.shape[0]
    arrays = (a, b, c)
    if loaded is None:
        raise RuntimeError("no BLAS loaded for MLX's CPU")
    if b.shape != (n, k) or c.shape != (m, n) or any(x.dtype != np.float32 or not x.flags.c_contiguous for x in arrays):
        raise ValueError(f"sgemm_nt: shapes {a.shape} {b.shape} {c.shape} or dtypes or layouts do not fit")
    if max(m, n, k) > MAX_SIZE:
        raise ValueError(f"sgemm_nt: {m} x {n} x {k} is too large for a 32-bit BLAS interface")
    if _sgemm is None:
        _sgemm = ctypes.CDLL(str(loaded)).cblas_sgemm
        pointer, integer, real = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        _sgemm.argtypes = [integer] * 6 + [real, pointer, integer, pointer, integer, real, pointer, integer]
        _sgemm.restype = None
    row_major, no_transpose, transpose = 101, 111, 112
    _sgemm(row_major, no_transpose, transpose, m, n, k, 1.0, a.ctypes.data, k, b.ctypes.data, k, beta, c.ctypes.data, n)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x @ weight.T + bias for x (rows, in), weight (out, in), bias (out,), into `out` if given (rows, out); the
    rows shared among the threads."""
    out = np.empty((x.shape[0], weight.shape[0]), np.float32) if out is None else out
    out[...] = bias

    def rows_of(start: int, stop: int) -> None:
        sgemm_nt(x[start:stop], weight, out[start:stop], beta=1.0)

    in_threads(rows_of, x.shape[0], least=MIN_ROWS)
    return out
