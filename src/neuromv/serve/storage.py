"""The server's work folder under a storage quota: :class:`Item` (a stored song, image or video), :class:`Storage`
(reservations ahead of every write, least-recently-used eviction of unpinned items) and :func:`du`."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .http import Refused

log = logging.getLogger(__name__)


def du(path: Path) -> int:
    """Bytes in a file or a folder tree (0 when missing)."""
    try:
        if path.is_file():
            return path.stat().st_size
        total = 0
        for root, _, files in os.walk(path):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, f)).st_size
        return total
    except OSError:
        return 0


@dataclasses.dataclass
class Item:
    """Something the server keeps in its work folder: a song (with its features and stems), an image or a video.

    Attributes
    ----------
    id : str
    kind : {'song', 'image', 'video'}
    name : str
        The user's file name (shown in messages; stored files have names of the server's own).
    paths : list of Path
        Its files and folders.
    size : int
        Bytes counted against the quota (reserved ahead of writing, then the real size).
    used : float
        When it was last used (``time.monotonic()``), for least-recently-used eviction.
    pins : int
        Requests and jobs using it now: a pinned item is never evicted.
    info : dict
        What the routes need about it (a song's duration and features; an image's size).
    """

    id: str
    kind: str
    name: str
    paths: list[Path]
    size: int = 0
    used: float = dataclasses.field(default_factory=time.monotonic)
    pins: int = 0
    info: dict = dataclasses.field(default_factory=dict)


class Storage:
    """The work folder under a quota of ``quota`` bytes, with least-recently-used eviction of unpinned items.

    Every byte written is reserved first (:meth:`reserve`), so the folder stays within the quota; when an
    item cannot fit, :class:`Refused` 413 (it would not fit an empty folder) or 507 (what is in use fills it).
    """

    #: Removed items remembered, to say "removed to make room" rather than "unknown".
    GONE_KEPT = 1000

    def __init__(self, folder: Path, quota: int) -> None:
        self.folder, self.quota = folder, int(quota)
        self.items: dict[str, Item] = {}
        self.gone: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.lock = threading.RLock()

    def used(self) -> int:
        with self.lock:
            return sum(i.size for i in self.items.values())

    def add(self, kind: str, name: str, suffix: str = "", uid: str | None = None) -> Item:
        """A new, empty, pinned item whose first file is ``<kind>-<id><suffix>`` in the folder."""
        uid = uid or uuid.uuid4().hex
        item = Item(uid, kind, name, [self.folder / f"{kind}-{uid}{suffix}"], pins=1)
        with self.lock:
            self.items[uid] = item
        return item

    def get(self, uid: Any, kind: str) -> Item:
        """The item ``uid`` of ``kind``, marked as used now; :class:`Refused` 400 (unknown) or 410 (evicted)."""
        with self.lock:
            item = self.items.get(uid) if isinstance(uid, str) else None
            if item is None or item.kind != kind:
                if isinstance(uid, str) and self.gone.get(uid) == kind:
                    raise Refused(410, f"this {kind} was removed to make room (the server keeps at most "
                                       f"{self.quota // 2**20} MB): upload it again")
                raise Refused(400, f"unknown {kind}: upload it first")
            item.used = time.monotonic()
            return item

    def pin(self, items: Iterable[Item]) -> None:
        with self.lock:
            for i in items:
                i.pins += 1
                i.used = time.monotonic()

    def unpin(self, items: Iterable[Item]) -> None:
        with self.lock:
            for i in items:
                i.pins = max(0, i.pins - 1)

    def reserve(self, item: Item, nbytes: int, what: str | None = None) -> None:
        """Count ``nbytes`` more for ``item``, evicting the least recently used unpinned items as needed."""
        if nbytes <= 0:
            return
        with self.lock:
            if item.size + nbytes > self.quota:
                raise Refused(413, f"{what or item.name}: too large for the server's storage of "
                                   f"{self.quota // 2**20} MB (--max-storage)", close=True)
            need = self.used() + nbytes - self.quota
            if need > 0:
                victims, freed = [], 0
                for other in sorted(self.items.values(), key=lambda i: i.used):
                    if freed >= need:
                        break
                    if other is not item and other.pins == 0:
                        victims.append(other)
                        freed += other.size
                if freed < need:
                    raise Refused(507, f"{what or item.name}: the server's storage ({self.quota // 2**20} MB, "
                                       f"--max-storage) is full with files in use; try again when a job has "
                                       f"finished", close=True)
                for other in victims:
                    log.info("storage: removing %s %s (%.1f MB) to make room", other.kind, other.name,
                             other.size / 2**20)
                    self.remove(other, evicted=True)
            item.size += nbytes

    def settle(self, item: Item) -> None:
        """Count what ``item``'s files really take (after a write whose size was estimated)."""
        real = sum(du(p) for p in item.paths)
        with self.lock:
            if real > item.size:
                self.reserve(item, real - item.size)
            item.size = real

    def remove(self, item: Item, evicted: bool = False) -> None:
        """Delete ``item``'s files and forget it."""
        with self.lock:
            if self.items.get(item.id) is item:
                del self.items[item.id]
                if evicted:
                    self.gone[item.id] = item.kind
                    while len(self.gone) > self.GONE_KEPT:
                        self.gone.popitem(last=False)
        for p in item.paths:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
