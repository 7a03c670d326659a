"""Run pyannote's speaker-segmentation models with MLX."""

from .config import FrameTiming, ModelConfig, Specifications
from .loading import ModelLoadError, load
from .pyannet import PyanNet

__version__ = "0.1.0"

__all__ = ["FrameTiming", "ModelConfig", "ModelLoadError", "PyanNet", "Specifications", "load", "__version__"]
