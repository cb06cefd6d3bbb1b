"""The one exception hierarchy of NeuroMV.

Every error that NeuroMV raises on purpose is a :class:`NeuroMVError`. Its message is a single line that names
the problem (and the file, where there is one), so the CLI can print it as it is.
"""

from __future__ import annotations

__all__ = ["NeuroMVError", "ParameterError", "AudioError", "ImageError", "ModelError", "SeparationError", "OutputError", "Interrupted"]


class NeuroMVError(Exception):
    """Base class of every error NeuroMV raises on purpose."""


class ParameterError(NeuroMVError, ValueError):
    """An option has an impossible value (``fps=0``, ``size=0x0``, an unknown device...)."""


class AudioError(NeuroMVError):
    """An audio input cannot be used: missing, not audio, corrupt, empty or silent."""


class ImageError(NeuroMVError):
    """A reference image cannot be used: missing, not an image, corrupt, too small or too large."""


class ModelError(NeuroMVError):
    """A saved model cannot be used: missing, not a safetensors file, not a NeuroMV model, or damaged."""


class SeparationError(NeuroMVError):
    """A separator cannot run here (a missing optional package, no model, no network)."""


class OutputError(NeuroMVError):
    """The output cannot be written where asked: a directory, the input itself, an existing file..."""


class Interrupted(NeuroMVError):
    """The work was cancelled (Ctrl-C, SIGTERM, or a cancel event); nothing was left behind."""
