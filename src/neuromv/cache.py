"""Content-keyed caches: fitted CPPNs (:func:`neuromv.reference.cached_fit`) and separated stems
(:func:`neuromv.stems.stem_audio`) share one folder layout, one key scheme and one atomic store.

A cache entry is named by a SHA-256 of its inputs (:meth:`ContentCache.key`); it lives under
``<root>/<kind>/`` (root: :func:`cache_dir`). Entries are written through :func:`neuromv._files.atomic_file`, so a
reader never sees a partial file. A cache that cannot be read or written is only a warning: the caller computes
the value again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._files import atomic_file
from .errors import OutputError

__all__ = ["cache_dir", "ContentCache"]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """NeuroMV's cache folder: ``$NEUROMV_CACHE_DIR``, else the platform's user cache folder + ``neuromv``."""
    if os.environ.get("NEUROMV_CACHE_DIR"):
        return Path(os.environ["NEUROMV_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "neuromv" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "neuromv"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neuromv"


class ContentCache:
    """One kind of content-keyed cache: the folder ``<root>/<kind>``.

    Parameters
    ----------
    kind : str
        The subfolder, e.g. ``'fits'`` or ``'stems'``.
    root : path, optional
        The folder that holds it (default: :func:`cache_dir`, looked up when the cache is made; the server keeps
        its own inside its work folder).
    """

    def __init__(self, kind: str, root: str | os.PathLike | None = None) -> None:
        self.kind = kind
        self.folder = Path(root or cache_dir()) / kind

    @staticmethod
    def key(*parts) -> str:
        """The entry name of ``parts``: 32 hex digits of their SHA-256, each part hashed in order as its bytes
        (str: UTF-8; dict: sorted-key JSON; np.ndarray: its C-ordered data; bytes as they are)."""
        h = hashlib.sha256()
        for part in parts:
            if isinstance(part, np.ndarray):
                part = np.ascontiguousarray(part).tobytes()
            elif isinstance(part, dict):
                part = json.dumps(part, sort_keys=True).encode()
            elif isinstance(part, str):
                part = part.encode()
            h.update(part)
        return h.hexdigest()[:32]

    def path(self, key: str, name: str | None = None) -> Path:
        """Where entry ``key`` lives: ``<folder>/<key>`` (a file; give it a suffix in ``key``), or
        ``<folder>/<key>/<name>`` for an entry of several files."""
        return self.folder / key if name is None else self.folder / key / name

    def store(self, path: Path, write: Callable[[str], None]) -> bool:
        """Write one file of an entry atomically: ``write(tmp)`` writes a temporary file that then replaces
        ``path``. Returns False (with a warning) when it cannot be stored."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path) as tmp:
                write(tmp)
        except (OSError, OutputError) as e:
            log.warning("%s cache: could not store %s (%s)", self.kind, path, e)
            return False
        log.debug("%s cache: stored %s", self.kind, path)
        return True
