"""Tried, not kept: the windows' spans copied to the GPU by `mx.load`, not made by `mx.array` (CUDA managed memory).

    python benchmarks/upload_copy.py

`mx.load` is MLX's one operation that copies host memory to the device (`cudaMemcpyAsync` from a pageable
buffer); here it reads an array as a .npy stream served from the array's own buffer. Times 66 MB (a batch of
1024 windows' span) to the GPU and summed there, both ways, three times each; then both behind a busy stream
(a product queued first). On an H100 (benchmarks/results/h100_upload_copy.log) the copy was slower (47 to 58 ms
against 28 to 52) and, behind a busy stream, held the host until the stream drained; the hour's speech
detection was no faster (h100_upload_ab.log).
"""

from __future__ import annotations  # noqa: I001  (mlx_segmentation before MLX: it may load MKL for MLX's CPU)

import io
import time

import mlx_segmentation  # noqa: F401
import mlx.core as mx
import numpy as np


class NpyStream(io.RawIOBase):
    """`array` as the bytes of a .npy file, for `mx.load`: the header, then the array's own buffer (no copy)."""

    name = "array.npy"  # mx.load reads the format from the name

    def __init__(self, array: np.ndarray) -> None:
        super().__init__()
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
        self.header = header.getvalue()
        self.data = memoryview(array).cast("B")
        self.size = len(self.header) + len(self.data)
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = min(max(start + offset, 0), self.size)
        return self.position

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        for begin, part in ((0, self.header), (len(self.header), self.data)):
            first = self.position + done - begin
            if 0 <= first < len(part) and done < len(out):
                count = min(len(part) - first, len(out) - done)
                out[done : done + count] = part[first : first + count]
                done += count
        self.position += done
        return done


def load_copy(array: np.ndarray) -> mx.array:
    """`array` through `mx.load` on the default stream: in the device's own memory on CUDA."""
    return mx.load(NpyStream(np.ascontiguousarray(array)))


def main() -> None:
    samples = np.random.default_rng(0).standard_normal(16_500_000).astype(np.float32)
    ways = [("mx.array", mx.array), ("mx.load", load_copy)]
    for label, make in ways * 3:
        mx.synchronize()
        start = time.perf_counter()
        mx.eval(mx.sum(make(samples)))
        print(f"{label}: 66 MB to the GPU and summed: {1e3 * (time.perf_counter() - start):.1f} ms", flush=True)
    product = mx.random.normal((8192, 8192))
    mx.eval(product)
    for label, make in ways * 2:
        mx.synchronize()
        start = time.perf_counter()
        busy = product @ product
        mx.async_eval(busy)
        queued = time.perf_counter()
        total = mx.sum(make(samples))
        mx.async_eval(total)
        returned = time.perf_counter()
        mx.eval(total, busy)
        print(
            f"{label} behind a busy stream: queue {1e3 * (returned - queued):.1f} ms, "
            f"all {1e3 * (time.perf_counter() - start):.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
