"""The one exception hierarchy of NeuroMV.

Every error that NeuroMV raises on purpose is a :class:`NeuroMVError`. Its message is a single line that names
the problem (and the file, where there is one), so the CLI can print it as it is.
"""

from __future__ import annotations

__all__ = ["NeuroMVError", "ParameterError", "AudioError", "ImageError", "ModelError", "SeparationError", "CuesError",
           "VideoError", "OutputError", "LookError",
           "Interrupted", "summary"]


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


class CuesError(NeuroMVError):
    """A cues file (``neuromv analyze``'s JSON) cannot be used: missing, not JSON, another schema version, or a
    field with impossible values."""


class VideoError(NeuroMVError):
    """A video to measure (``neuromv sync``) cannot be used: missing, not a video, corrupt, or without frames."""


class OutputError(NeuroMVError):
    """The output cannot be written where asked: a directory, the input itself, an existing file..."""


class LookError(ParameterError):
    """A look (``--look``, :mod:`neuromv.looks`) cannot be used: an unknown name, a file that is missing, not a
    regular file, too large or not TOML, or a key or value no look may have."""


class Interrupted(NeuroMVError):
    """The work was cancelled (Ctrl-C, SIGTERM, or a cancel event); nothing was left behind."""



def summary(exc: BaseException) -> str:
    """A one-line reason for ``exc``, to quote inside a NeuroMV error message.

    The operating system's (or FFmpeg's) own wording where the exception carries one (``strerror``, as in
    "No such file or directory", without the ``[Errno 2]`` prefix and file name that ``str`` adds), else the first
    non-blank line of ``str(exc)``, else the exception's type name (for an exception without a message).

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
        One line, never empty.

    Examples
    --------
    >>> summary(FileNotFoundError(2, "No such file or directory", "song.wav"))
    'No such file or directory'
    >>> summary(ValueError("bad header\\nat byte 12"))
    'bad header'
    >>> summary(KeyError())
    'KeyError'
    """
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
