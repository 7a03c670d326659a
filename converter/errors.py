"""Errors the CLI reports as one line and a non-zero exit."""


class ConverterError(Exception):
    """Base class: the message is the whole line shown to the user."""


class CheckpointError(ConverterError):
    """The file is not a readable PyTorch checkpoint."""


class ForbiddenGlobalError(CheckpointError):
    """The pickle asks for a global outside the allow-list."""


class ArchitectureError(ConverterError):
    """The checkpoint holds a model we cannot convert."""


class MappingError(ConverterError):
    """Source tensors and MLX parameters do not match one to one."""


class OutputError(ConverterError):
    """The output folder cannot be written as asked."""


class RecipeError(ConverterError):
    """A recipe in models/ is invalid or its source cannot be had."""
