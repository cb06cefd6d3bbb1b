"""Writing files safely: every output appears only when complete (shared by the model, WAV and cache writers)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "umask", "open_input_file", "check_input_file"]


def umask() -> int:
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success it gets the usual permissions and replaces
    ``path``; on any error (including KeyboardInterrupt) it is deleted and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: The error each kind of input raises (one home for "which error names a bad song, image or model").
_INPUT_ERRORS = {"audio": "AudioError", "image": "ImageError", "model": "ModelError"}


def open_input_file(path: str | os.PathLike, kind: str, max_bytes: int | None = None) -> BinaryIO:
    """Open an input (a song, an image, a model) for reading, if it is a regular file of at most ``max_bytes``.

    Never blocks and never reads a byte of anything else: the path is ``stat``-ed first, so a FIFO (whose
    ``open`` would wait for a writer), a device such as /dev/zero (endless), a socket or a directory is refused
    at once; the file is then opened with ``O_NONBLOCK`` and checked again with ``fstat``, so one swapped in
    between is refused too.

    Parameters
    ----------
    path : str or os.PathLike
    kind : {'audio', 'image', 'model'}
        What the file should be: chooses the error (:class:`~neuromv.errors.AudioError`, ``ImageError``,
        ``ModelError``) and the words of the message.
    max_bytes : int, optional
        Largest size accepted; None: any.

    Returns
    -------
    BinaryIO
        The open file (unbuffered reads of a regular file); the caller closes it.

    Raises
    ------
    AudioError, ImageError, ModelError
        One line naming the file: missing, a directory, not a regular file, empty, or larger than ``max_bytes``.
    """
    from . import errors

    error = getattr(errors, _INPUT_ERRORS[kind])
    what = {"audio": "an audio file", "image": "an image", "model": "a model file"}[kind]
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    _check_regular(path, st, error, what, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        st2 = os.fstat(fd)
        if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            _check_regular(path, st2, error, what, max_bytes)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def check_input_file(path: str | os.PathLike, kind: str, max_bytes: int | None = None) -> int:
    """Check that ``path`` is a regular file fit to read as ``kind`` (:func:`open_input_file`'s checks, without
    keeping it open), for readers that take a file name (FFmpeg, mutagen).

    Returns
    -------
    int
        Its size in bytes.
    """
    with open_input_file(path, kind, max_bytes) as f:
        return os.fstat(f.fileno()).st_size


def _check_regular(path: Path, st: os.stat_result, error, what: str, max_bytes: int | None) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a directory, not {what}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise error(f"{path}: is {kind}, not {what}; only regular files are read")
    if st.st_size == 0:
        raise error(f"{path}: file is empty (0 bytes)")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: is {st.st_size / 2**20:.1f} MB, over the limit of {max_bytes / 2**20:.0f} MB for "
                    f"{what}")
