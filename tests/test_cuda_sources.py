"""Every CUDA kernel the runtime launches compiles, with the template values and input types it is launched with.

No GPU is needed: the kernels are built as MLX's `mx.fast.cuda_kernel` builds them (its signature of typed input
pointers and outputs, the template values as constants, then the source) and compiled for an H100 (sm_90) by NVRTC,
the compiler MLX itself uses, from the `nvidia-cuda-nvrtc-cu12` wheel that torch's Linux build installs. The
entry points run on the CPU with `mx.fast.cuda_kernel` replaced by a recorder that returns zeros, so the template
values are the ones the Python side computes for each shape, not values written again here.
"""

import ctypes
import platform
from pathlib import Path

import mlx.core as mx
import pytest

from mlx_segmentation import conv_kernel, norm_kernel, pooling, recurrence, sinc_kernel

if platform.system() != "Linux":
    pytest.skip("NVRTC comes with torch's Linux wheels only", allow_module_level=True)

CUDA_TYPES = {mx.float32: "float", mx.int32: "int32_t", mx.float16: "__half", mx.bfloat16: "__nv_bfloat16"}


def nvrtc() -> ctypes.CDLL:
    import nvidia.cuda_nvrtc

    (library,) = (Path(p) / "lib" / "libnvrtc.so.12" for p in nvidia.cuda_nvrtc.__path__)
    return ctypes.CDLL(str(library))


def mlx_kernel_source(name: str, source: str, inputs: list[tuple[str, mx.array]], outputs, template) -> str:
    """The translation unit `mx.fast.cuda_kernel` compiles (mlx/backend/cuda/custom_kernel.cpp, `build_kernel`)."""
    parameters = [f"    const {CUDA_TYPES[array.dtype]}* {input_name}" for input_name, array in inputs]
    parameters += [f"    {CUDA_TYPES[dtype]}* {output_name}" for output_name, dtype in outputs]
    constants = [
        f"  constexpr bool {n} = {str(v).lower()};" if isinstance(v, bool) else f"  constexpr int {n} = {v};"
        for n, v in template
    ]
    return (
        "typedef int int32_t;\nnamespace mlx::core::cu {\n__global__ void "
        + name
        + "(\n"
        + ",\n".join(parameters)
        + ") {\n"
        + "\n".join(constants)
        + "\n"
        + source
        + "\n}\n}\n"
    )


def compile_for_h100(source: str) -> tuple[int, str]:
    """NVRTC's result code and log (ptxas's report of registers and spills included)."""
    lib = nvrtc()
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"kernel.cu", 0, None, None) == 0
    options = [b"--gpu-architecture=sm_90", b"-std=c++17", b"--ptxas-options=-v"]
    code = lib.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    lib.nvrtcDestroyProgram(ctypes.byref(program))
    return code, log.value.decode()


@pytest.fixture
def launches(monkeypatch):
    """Each launch the entry points make: (kernel name, source, named inputs, outputs, template)."""
    recorded = []

    def cuda_kernel(name, input_names, output_names, source, **_):
        def launch(inputs, template, grid, threadgroup, output_shapes, output_dtypes, **__):
            assert len(inputs) == len(input_names) and all(isinstance(a, mx.array) for a in inputs)
            assert threadgroup[0] * threadgroup[1] * threadgroup[2] <= 1024 and grid[0] % threadgroup[0] == 0
            recorded.append(
                (name, source, list(zip(input_names, inputs)), list(zip(output_names, output_dtypes)), template)
            )
            return [mx.zeros(shape, dtype=dtype) for shape, dtype in zip(output_shapes, output_dtypes)]

        return launch

    monkeypatch.setattr(mx.fast, "cuda_kernel", cuda_kernel)
    monkeypatch.setattr(conv_kernel, "_KERNEL", [])
    monkeypatch.setattr(sinc_kernel, "_KERNEL", [])
    monkeypatch.setattr(norm_kernel, "_KERNEL", [])
    monkeypatch.setattr(recurrence, "_KERNELS", {})
    monkeypatch.setattr(pooling, "_KERNELS", {})
    return recorded


def the_runtimes_launches() -> None:
    """The kernels at the shapes the models run: the LSTM at each CUDA tile, the ResNet's convolutions (1 and 9 taps,
    32 to 256 channels), SincNet's stages and pools."""
    for batch in (32, 128, 256, 1024):  # tiles 1, 2, 4 (weight rows in registers) and 8
        state = mx.zeros((2, batch, 128))
        recurrence._run_kernel(mx.zeros((2, batch, 3, 512)), mx.zeros((2, 512, 128)), state, state, "cuda")
    for channels in (32, 64, 128, 256):
        for taps in (1, 3):
            weight = mx.zeros((channels, taps, taps, 32))
            conv_kernel.conv2d(mx.zeros((2, 10, 8, 32)), weight, (1, 1), (taps // 2, taps // 2))
    conv_kernel.conv1d(mx.zeros((2, 30, 80)), mx.zeros((60, 5, 80)))
    sinc_kernel.conv_abs_max_pool(mx.zeros((2, 16000, 1)), mx.zeros((80, 251, 1)), 10, 3)
    pooling.abs_max_pool(mx.zeros((2, 30, 80)), None, 3)
    for channels, pool, slope in ((80, 1, 0.01), (60, 3, 0.01), (1, 1, None)):
        norm_kernel.pool_norm(mx.zeros((2, 30, channels)), mx.ones(channels), mx.zeros(channels), 1e-5, pool, slope)


def test_every_kernel_compiles_for_an_h100_in_registers(launches, monkeypatch):
    monkeypatch.setattr(recurrence, "gpu_backend", lambda: "cuda")
    the_runtimes_launches()
    names = {name for name, *_ in launches}
    assert names == {
        "pyannet_lstm_recurrence",
        "wespeaker_conv2d",
        "sinc_conv_abs_max_pool",
        "sincnet_abs_max_pool",
        "sincnet_pool_norm",
    }
    compiled = set()
    for name, source, inputs, outputs, template in launches:
        key = (name, tuple(template))
        if key in compiled:
            continue
        compiled.add(key)
        code, log = compile_for_h100(mlx_kernel_source(name, source, inputs, outputs, template))
        assert code == 0, f"{name} {template}:\n{log}"
        assert "0 bytes spill stores" in log, f"{name} {template} spills registers:\n{log}"
        assert "0 bytes stack frame" in log, f"{name} {template} keeps an array in local memory:\n{log}"
    assert len(compiled) >= 12


def test_a_broken_source_fails_to_compile():
    """The check can fail: a source naming what no template or input defines does not compile."""
    x = mx.zeros(4)
    code, log = compile_for_h100(
        mlx_kernel_source("broken", "y[0] = x[0] * UNDEFINED;", [("x", x)], [("y", mx.float32)], [])
    )
    assert code != 0 and "UNDEFINED" in log
