"""Writing files safely, in one place for every output (video, model, WAV stems, caches).

- :func:`check_output`: the check of an output path before any slow work, including a probe that the folder is
  writable.
- :class:`AtomicFile`, :func:`atomic_file` and :func:`atomic_files`: an output is written to a temporary file beside
  it and appears only when complete. Without ``overwrite``, the finished file is hard-linked into place, which
  fails if the name exists: of two writers racing to the same absent path, exactly one wins and the other gets
  :class:`~neuromv.errors.OutputError` (no-clobber is atomic, not a check-then-write).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError, summary

__all__ = ["check_output", "AtomicFile", "atomic_file", "atomic_files", "umask", "open_input_file", "check_input_file"]

log = logging.getLogger(__name__)

#: errno values of a filesystem without hard links (FAT, some network shares): no-clobber falls back to a check.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def umask() -> int:
    """The process's umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _exists_message(path: Path) -> str:
    return f"{path}: already exists (use --overwrite to replace it)"


def check_output(path: str | os.PathLike, *, inputs: Iterable = (), overwrite: bool = False, kind: str = "output",
                 suffixes: Sequence[str] | None = None) -> Path:
    """Check, before any slow work, that an output can be written at ``path`` without harming anything; return it.

    The folder's writability is probed by creating and removing a temporary file in it, so an unwritable folder
    fails at once rather than after the work.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or, for a folder that will be made, the folder) to write.
    inputs : iterable of paths
        Files that must never be overwritten (the song, the image, the model...); other objects are skipped.
    overwrite : bool
        Whether an existing ``path`` may be replaced.
    kind : str
        What is written, for the messages: ``'video'``, ``'model'``, ``'stem'``...
    suffixes : sequence of str, optional
        The extensions allowed (lower case, with the dot); None: any.

    Raises
    ------
    OutputError
        ``path`` is a directory, is one of ``inputs``, has an extension not in ``suffixes``, is in a folder that
        does not exist or cannot be written, exists and ``overwrite`` is false, or exists and is not a regular
        file (a FIFO, a device). One line, naming the path.
    """
    raw = os.fspath(path)
    out = Path(raw)
    example = out / f"{kind}{suffixes[0] if suffixes else ''}"
    if raw.endswith(os.sep) or out.is_dir():
        raise OutputError(f"{out}: is a directory; give a {kind} file name such as {example}")
    for src in inputs:
        if not isinstance(src, (str, os.PathLike)):
            continue
        src = Path(src)
        try:
            same = out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src))
        except OSError:
            same = False
        if same:
            also = f" ({src})" if src != out else ""
            raise OutputError(f"{out}: is an input file{also}; refusing to overwrite an input")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise OutputError(f"{out}: unsupported extension {out.suffix or '(none)'!r}; a {kind} file must end in "
                          + " or ".join(suffixes))
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{out}: folder {parent} does not exist")
    if out.exists() and not overwrite:
        raise OutputError(_exists_message(out))
    if out.exists() and not out.is_file():
        raise OutputError(f"{out}: is not a regular file (a FIFO or a device); refusing to replace it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".neuromv-probe-", suffix=".part", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{out}: cannot write in folder {parent} ({summary(e)})") from None
    return out


class AtomicFile:
    """A temporary file beside ``path`` that becomes ``path`` only on :meth:`commit`.

    Parameters
    ----------
    path : str or os.PathLike
        The final name.
    overwrite : bool
        True: :meth:`commit` replaces an existing file (``os.replace``). False: it hard-links the temporary file to
        ``path``, which fails atomically if ``path`` exists (then :class:`OutputError`, and the temporary file is
        removed).

    Attributes
    ----------
    path : Path
        The final name.
    tmp : Path
        The temporary file (hidden, ``.<name>.<random>.part``), created empty with mode 0600 until committed.

    Raises
    ------
    OutputError
        The temporary file cannot be created (an unwritable or missing folder).
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = True) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.committed = False
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write in folder {self.path.parent} ({summary(e)})") from None
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        """Give the finished file its usual permissions and put it in place; return :attr:`path`.

        Raises
        ------
        OutputError
            Without ``overwrite``, ``path`` exists now (another writer got there first); the temporary file is
            removed and ``path`` is untouched.
        """
        try:
            os.chmod(self.tmp, 0o666 & ~umask())  # mkstemp makes it 0600
            if self.overwrite:
                os.replace(self.tmp, self.path)
            else:
                self._link()
        except BaseException:
            self.discard()
            raise
        self.committed = True
        return self.path

    def _link(self) -> None:
        try:
            os.link(self.tmp, self.path)
        except FileExistsError:
            raise OutputError(_exists_message(self.path)) from None
        except OSError as e:
            if e.errno not in _NO_LINKS:
                raise
            # no hard links on this filesystem: a check, then a rename (a race is possible here only)
            log.debug("%s: no hard links here (%s); no-clobber by a check", self.path, summary(e))
            if self.path.exists():
                raise OutputError(_exists_message(self.path)) from None
            os.replace(self.tmp, self.path)
            return
        self.tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        """Delete the temporary file; :attr:`path` is untouched (idempotent)."""
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], *, overwrite: bool = True) -> Iterator[list[str]]:
    """Yield temporary file names beside each of ``paths``; when the block succeeds, every one is put in place
    (after the block, so all are complete before any appears). On any error (including KeyboardInterrupt) the
    temporary files are deleted and ``paths`` are untouched; should one of them turn out to exist without
    ``overwrite``, those already put in place by this call are removed again and OutputError is raised."""
    files: list[AtomicFile] = []
    try:
        for p in paths:
            files.append(AtomicFile(p, overwrite=overwrite))
        yield [os.fspath(f.tmp) for f in files]
        done: list[AtomicFile] = []
        try:
            for f in files:
                f.commit()
                done.append(f)
        except BaseException:
            for f in done:
                if not overwrite:  # a new name that this call made: remove it again
                    f.path.unlink(missing_ok=True)
            raise
    except BaseException:
        for f in files:
            f.discard()
        raise


#: The error each kind of input raises (one home for "which error names a bad song, image or model").
_INPUT_ERRORS = {"audio": "AudioError", "image": "ImageError", "model": "ModelError", "cues": "CuesError",
                 "video": "VideoError", "look": "LookError"}


def open_input_file(path: str | os.PathLike, kind: str, max_bytes: int | None = None) -> BinaryIO:
    """Open an input (a song, an image, a model) for reading, if it is a regular file of at most ``max_bytes``.

    Never blocks and never reads a byte of anything else: the path is ``stat``-ed first, so a FIFO (whose
    ``open`` would wait for a writer), a device such as /dev/zero (endless), a socket or a directory is refused
    at once; the file is then opened with ``O_NONBLOCK`` and checked again with ``fstat``, so one swapped in
    between is refused too.

    Parameters
    ----------
    path : str or os.PathLike
    kind : {'audio', 'image', 'model', 'cues', 'video', 'look'}
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
    what = {"audio": "an audio file", "image": "an image", "model": "a model file", "cues": "a cues file",
            "video": "a video file", "look": "a look file"}[kind]
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
@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success it gets the usual permissions and is put in place
    (replacing ``path``, or, without ``overwrite``, OutputError if ``path`` exists by then); on any error
    (including KeyboardInterrupt) it is deleted and ``path`` is untouched."""
    with atomic_files([path], overwrite=overwrite) as (tmp,):
        yield tmp
