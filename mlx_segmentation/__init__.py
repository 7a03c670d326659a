"""Run pyannote's speaker-segmentation and speaker-embedding models with MLX."""

import os

# MLX's CUDA backend multiplies float32 matrices in TF32 (10-bit mantissa) unless told otherwise,
# which moved this model's outputs by up to 6e-3 on speech (measured on an H100), 50 times
# PyTorch's own float32 error. Exact float32 unless the user chose before importing us.
os.environ.setdefault("MLX_ENABLE_TF32", "0")

# Before MLX is imported: on Linux, MKL's matrix products for MLX's CPU backend, if installed (see cpu_blas).
from .cpu_blas import load as load_cpu_blas  # noqa: E402

load_cpu_blas()

from .config import FrameTiming, PyanNetConfig, Specifications
from .loading import ModelLoadError, load
from .pipeline_loading import load_pipeline
from .pyannet import PyanNet

__version__ = "0.1.0"

__all__ = [
    "FrameTiming",
    "ModelLoadError",
    "PyanNet",
    "PyanNetConfig",
    "Specifications",
    "load",
    "load_pipeline",
    "__version__",
]
