"""Live preview in the browser: a small local web app (Starlette) where the CPPN plays with the music in WebGL.

The server does what needs Python: it decodes a dropped song and computes its features (the dB mel matrix of
:func:`neuromv.features.song_db`), hands out a CPPN's weights, and renders the final video with the offline
pipeline. The page (``neuromv/web/``, shipped in the package) plays the song, turns the dB matrix into z exactly
as :func:`neuromv.features.latents_from_db` does, and evaluates the CPPN per pixel in a fragment shader, choosing
the frame from the audio clock, so knobs such as reactivity, smoothing and zoom act at once.

It is a small, bounded service (docs/security.md): it answers only its own host names and pages, runs at most
``jobs`` fits, separations or renders at a time (the others wait in a short queue), keeps its files within a
storage quota (least recently used songs, images and videos go first), cuts off slow or oversized uploads, and
answers every bad request with a 4xx (503/507 when busy or full) and a one-line message naming the user's file.

Run it with ``neuromv serve``; :func:`create_app` gives the ASGI app for tests or other servers.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import errno
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import Interrupted, NeuroMVError, ParameterError

__all__ = ["create_app", "serve", "listen", "cli_command", "Job", "JobQueue", "Storage", "Refused",
           "MAX_UPLOAD", "MAX_IMAGE_UPLOAD", "MAX_STORAGE", "MAX_JSON", "MAX_JSON_DEPTH", "MAX_FEATURES",
           "MAX_WAITING", "MAX_CONNECTIONS", "UPLOAD_IDLE_S", "UPLOAD_MIN_RATE", "UPLOAD_GRACE_S", "LOCAL_HOSTS",
           "ASSETS", "page_config"]

log = logging.getLogger(__name__)

#: Largest song upload (bytes): a long song in a lossless format fits. ``--max-upload``.
MAX_UPLOAD = 512 * 2**20
#: Largest image upload (bytes). ``--max-image``.
MAX_IMAGE_UPLOAD = 32 * 2**20
#: Quota of the work folder (bytes): songs, their features and stems, images and videos. ``--max-storage``.
MAX_STORAGE = 2 * 2**30
#: Largest JSON request body (bytes): settings documents are a few hundred.
MAX_JSON = 64 * 1024
#: Deepest nesting of a JSON request (a settings document has 2 levels).
MAX_JSON_DEPTH = 16
#: Largest feature matrix a song may have (mel bands x frames, float32: 16 MB). One hour at 30 fps and 32 bands
#: is 3.5 million.
MAX_FEATURES = 2**22
#: Jobs that may wait for a free slot; more are refused with 429.
MAX_WAITING = 16
#: Finished jobs remembered (a prepare job's result holds weights and features; only the last few are kept).
MAX_FINISHED = 64
MAX_FINISHED_PREPARE = 8
#: Open connections and requests at once (uvicorn's ``limit_concurrency``; more get 503). ``--max-connections``.
MAX_CONNECTIONS = 64
#: Idle connections are closed after this many seconds (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE_S = 5
#: An upload that sends nothing for this many seconds is cut off (408).
UPLOAD_IDLE_S = 5.0
#: After UPLOAD_GRACE_S seconds, an upload must have arrived at UPLOAD_MIN_RATE bytes/s on average, or it is cut off.
UPLOAD_MIN_RATE = 32 * 1024
UPLOAD_GRACE_S = 10.0
#: Bytes after the end of an image's data that are tolerated (some cameras append a preview or a video) besides
#: twice the image's own size.
IMAGE_TRAILER = 2**20
#: Host names the server always answers (a page of another site, or a DNS-rebound name, is refused).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The page's files (in ``neuromv/web/``) under ``/assets/``, the only ones served besides the page itself (``/``:
#: index.html with :func:`page_config` in it) and rendered videos. The .js files are ES modules (app.js imports the
#: others); capture.js is the live mode's AudioWorklet.
ASSETS = {"app.js": "text/javascript", "api.js": "text/javascript", "colour.js": "text/javascript",
          "gl.js": "text/javascript", "live.js": "text/javascript", "mel.js": "text/javascript",
          "capture.js": "text/javascript", "style.css": "text/css"}
#: Where index.html receives :func:`page_config` (as the text of a ``<script type="application/json">``).
_CONFIG_MARK = "/*neuromv-config*/"
_WEB = Path(__file__).resolve().parent / "web"
_WILDCARDS = ("0.0.0.0", "::", "")


class Refused(Exception):
    """A request the server will not serve now: ``status`` (408, 413, 429, 503, 507...) and a one-line message.
    Raised by the storage quota and the job queue; the app answers it as ``{"error": message}``."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


def _b64(a: np.ndarray) -> str:
    """float32 array -> base64 of its little-endian bytes (the page reads it as a Float32Array)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def net_json(net) -> dict:
    """A CPPN's weights as the page's shaders take them: per layer ``w`` [shape=(out, in)] and ``b``
    [shape=(out,)], base64 float32; an image-mode CPPN also has ``pulse`` [shape=(n_z, 3, hidden)]. Layer 0's
    inputs are (x, y, r, z...) for an abstract CPPN, (x, y, r) for an image one."""
    layers = [{"out": int(l.weight.shape[0]), "in": int(l.weight.shape[1]),
               "w": _b64(l.weight.detach().numpy()), "b": _b64(l.bias.detach().numpy())} for l in net.layers]
    out = {"n_z": net.n_z, "hidden": net.hidden, "seed": net.seed, "image": net.image, "layers": layers}
    if net.image:
        out["pulse"] = _b64(net.pulse.detach().numpy())
    return out


def cppn_json(n_z: int, hidden: int, seed: int) -> dict:
    """:func:`net_json` of the abstract CPPN of ``seed``."""
    from .cppn import CPPN

    return net_json(CPPN(n_z, hidden, seed=seed))


def cli_command(song: str, output: str, settings: dict, image: str = "none") -> str:
    """The ``neuromv render`` command line that renders ``song`` with ``settings`` (only what differs from the
    defaults), from the settings table (:data:`neuromv.settings.SETTINGS`: each row's flag; width and height as
    ``--size``). ``image``: 'none' (abstract), 'auto' (the song's cover art, the CLI's default) or an image file."""
    import shlex

    from .settings import SETTINGS, RenderSettings

    s = RenderSettings.from_dict(settings)
    default = RenderSettings()
    args = ["neuromv", "render", song, "-o", output]
    for row in SETTINGS:
        v = getattr(s, row.name)
        if v == row.default or row.flag is None:
            continue
        if row.kind is bool:
            if v:
                args.append(row.flag)
            continue
        args += [row.flag, str(v)]
    if (s.width, s.height) != (default.width, default.height):
        args += ["--size", f"{s.width}x{s.height}"]
    if image != "auto":
        args += ["--image", image]
    return " ".join(shlex.quote(a) for a in args)


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


@dataclasses.dataclass
class Job:
    """A fit, separation or render the server runs for the page (one table of them: :class:`JobQueue`).

    ``state`` is 'queued', 'running', 'done', 'error' or 'cancelled'; ``stage``, ``done`` and ``total`` are the
    running stage's progress; ``result`` is a prepare's panels or a render's video (an :class:`Item`). ``uses``:
    the stored items it needs (pinned until it ends).
    """

    id: str
    kind: str
    target: Callable
    args: tuple
    uses: list[Item]
    state: str = "queued"
    stage: str = ""
    done: int = 0
    total: int = 0
    error: str | None = None
    result: Any = None
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def progress(self, stage: str, done: int, total: int | None) -> None:
        """A :data:`neuromv.progress.ProgressCallback` that the page polls."""
        self.stage, self.done, self.total = stage, int(done), int(total or 0)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")


class JobQueue:
    """The job table: at most ``workers`` jobs run at a time (one thread each), up to :data:`MAX_WAITING` wait
    in order; a cancelled job leaves the queue at once, a running one is asked to stop (its ``cancel`` event).
    ``public(text, job)`` turns an error into what the page may see (no server paths)."""

    def __init__(self, workers: int, storage: Storage, public: Callable[[str, Job], str]) -> None:
        if not 1 <= workers <= 64:
            raise ParameterError(f"jobs must be from 1 to 64, not {workers}")
        self.workers, self.storage, self.public = workers, storage, public
        self.jobs: dict[str, Job] = {}
        self.waiting: collections.deque[Job] = collections.deque()
        self.running = 0
        self.lock = threading.Lock()

    def get(self, jid: str) -> Job | None:
        return self.jobs.get(jid)

    def position(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` starts (0 once it runs)."""
        with self.lock:
            if job.state != "queued":
                return 0
            return self.running + self.waiting.index(job) if job in self.waiting else 0

    def submit(self, kind: str, target: Callable, *args, uses: Iterable[Item] = ()) -> Job:
        """Queue ``target(job, *args)``; :class:`Refused` 429 when :data:`MAX_WAITING` jobs already wait."""
        job = Job(uuid.uuid4().hex, kind, target, args, list(uses))
        with self.lock:
            if len(self.waiting) >= MAX_WAITING:
                raise Refused(429, f"the server is busy: {len(self.waiting)} jobs are waiting; try again later")
            self.storage.pin(job.uses)
            self.jobs[job.id] = job
            self.waiting.append(job)
            self._forget_old()
        self._pump()
        return job

    def cancel(self, job: Job) -> None:
        """Stop ``job``: dropped at once when it waits, asked to stop (at its next check) when it runs."""
        job.cancel.set()
        with self.lock:
            if job in self.waiting:
                self.waiting.remove(job)
                job.state = "cancelled"
                self.storage.unpin(job.uses)

    def cancel_all(self, kind: str | None = None) -> None:
        for job in list(self.jobs.values()):
            if not job.finished and (kind is None or job.kind == kind):
                self.cancel(job)

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every job and wait (``timeout`` s in all) for the running ones to stop."""
        self.cancel_all()
        deadline = time.monotonic() + timeout
        for job in list(self.jobs.values()):
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    def _pump(self) -> None:
        with self.lock:
            while self.running < self.workers and self.waiting:
                job = self.waiting.popleft()
                job.state = "running"
                self.running += 1
                job.thread = threading.Thread(target=self._run, args=(job,), daemon=True, name=f"neuromv-{job.kind}")
                job.thread.start()

    def _run(self, job: Job) -> None:
        try:
            job.result = job.target(job, *job.args)
            job.state = "done"
        except Interrupted:
            job.state = "cancelled"
        except Refused as e:
            job.error, job.state = self.public(e.message, job), "error"
        except NeuroMVError as e:
            job.error, job.state = self.public(str(e), job), "error"
        except Exception as e:  # noqa: BLE001 - reported on the page; the server keeps running
            log.exception("%s job failed", job.kind)
            job.error, job.state = self.public(f"failed: {type(e).__name__}: {e}", job), "error"
        finally:
            self.storage.unpin(job.uses)
            with self.lock:
                self.running -= 1
            self._pump()

    def _forget_old(self) -> None:
        """Keep the newest :data:`MAX_FINISHED` finished jobs (:data:`MAX_FINISHED_PREPARE` prepares, whose
        results are large); a forgotten render's video is deleted."""
        finished = [j for j in self.jobs.values() if j.finished]
        prepares = [j for j in finished if j.kind == "prepare"]
        drop = finished[:-MAX_FINISHED] + prepares[:-MAX_FINISHED_PREPARE]
        for job in drop:
            if self.jobs.pop(job.id, None) is not None and isinstance(job.result, Item):
                self.storage.remove(job.result)


# ---- requests: hosts, bodies, JSON --------------------------------------------------------------------------------

def _host_of(value: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1'; '[::1]:8765' -> '::1'; 'http://localhost:8765' -> 'localhost'."""
    from urllib.parse import urlsplit

    value = value.strip()
    try:
        return (urlsplit(value if "//" in value else f"//{value}").hostname or "").lower()
    except ValueError:
        return ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def allowed_hosts(bind: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host names a server bound to ``bind`` answers: the local names, ``bind`` itself and ``extra``
    (``--allow-host``). A wildcard bind (0.0.0.0, ::) also answers any IP address ('ip'): a DNS-rebinding
    attack needs a name, never an address."""
    hosts = list(LOCAL_HOSTS) + [_host_of(bind) or bind.lower()] + [_host_of(h) or h.lower() for h in extra]
    if bind in _WILDCARDS:
        hosts.append("ip")
    return tuple(dict.fromkeys(h for h in hosts if h))


class _SameHostOnly:
    """ASGI middleware: answer only requests for ``hosts`` (a DNS-rebound name is refused); refuse requests that
    another site's page sent: every ``/api/`` request with ``Sec-Fetch-Site`` cross-site or same-site (another
    port of this machine), and every request whose Origin is not this server."""

    def __init__(self, app, hosts: Iterable[str]) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            from starlette.responses import JSONResponse

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "")
            name = _host_of(host)
            origin = headers.get("origin")
            api = scope["path"].startswith("/api/")
            reason = None
            if name not in self.hosts and not ("ip" in self.hosts and _is_ip(name)):
                reason = (f"unknown host {name[:100]!r}: the server answers only its own names "
                          f"(start it with --allow-host {name[:100]} to add this one)")
            elif origin is not None and (api or scope["method"] not in ("GET", "HEAD")) and \
                    origin.split("://", 1)[-1].lower() != host.lower():
                reason = "cross-site request refused"
            elif api and headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                reason = "cross-site request refused"
            if reason:
                await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request, limit: int, what: str, sink=None) -> bytes:
    """Read a request's body under our own deadlines: :class:`Refused` 413 past ``limit`` bytes (at once when
    Content-Length says so), 408 when nothing comes for :data:`UPLOAD_IDLE_S` s or when, after
    :data:`UPLOAD_GRACE_S` s, less than :data:`UPLOAD_MIN_RATE` bytes/s came. ``sink(chunk)`` takes each chunk
    (an upload being written; nothing is returned); without it the body is returned."""
    from starlette.requests import ClientDisconnect

    too_large = f"{what}: too large; the limit is {_mb(limit)}"
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, too_large, close=True)
    t0 = time.monotonic()
    size, parts = 0, []
    while True:
        elapsed = time.monotonic() - t0
        wait = UPLOAD_IDLE_S
        if elapsed > UPLOAD_GRACE_S or size < UPLOAD_MIN_RATE * UPLOAD_GRACE_S:
            # the time left before the average rate falls under the minimum (with the grace period)
            wait = min(wait, max(0.0, UPLOAD_GRACE_S + size / UPLOAD_MIN_RATE - elapsed) + 0.05)
        try:
            message = await asyncio.wait_for(request.receive(), timeout=wait)
        except asyncio.TimeoutError:
            raise Refused(408, f"{what}: the upload was too slow (at least {UPLOAD_MIN_RATE // 1024} KB/s "
                               f"is needed, and a pause under {UPLOAD_IDLE_S:g} s)", close=True) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, too_large, close=True)
        if sink is None:
            parts.append(chunk)
        elif chunk:
            await sink(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


def _mb(n: int) -> str:
    return f"{n // 2**20} MB" if n >= 2**20 else f"{n // 1024} KB"


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def parse_json(body: bytes) -> Any:
    """A JSON request body, checked: :class:`ParameterError` with our message for invalid JSON, NaN or
    Infinity, or nesting deeper than :data:`MAX_JSON_DEPTH`."""
    depth = deepest = 0
    for c in _STRING.sub(b'""', body):  # brackets outside strings
        if c in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in b"]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise ParameterError(f"the request is nested too deeply (more than {MAX_JSON_DEPTH} levels)")

    def constant(name):
        raise ParameterError(f"the request is not valid JSON ({name} is not a JSON number)")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=constant)
    except UnicodeDecodeError:
        raise ParameterError("the request is not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise ParameterError(f"the request is not valid JSON ({e.msg.lower()} at line {e.lineno}, "
                             f"column {e.colno})") from None
    except RecursionError:
        raise ParameterError(f"the request is nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None


def _fields(body: Any, allowed: tuple[str, ...]) -> dict:
    """The fields of a job request, type-checked: song and image ids (str or null), settings (an object),
    output (str)."""
    if not isinstance(body, dict):
        raise ParameterError("the request must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ParameterError(f"unknown field(s) {', '.join(unknown)[:200]}; expected {', '.join(allowed)}")
    for key in ("song", "image", "output"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ParameterError(f"{key} must be a string")
    if not isinstance(body.get("settings", {}), dict):
        raise ParameterError("settings must be a JSON object")
    return body


# ---- the app ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ServerState:
    """What every route reads (``request.app.state.neuromv``): the work folder's :class:`Storage`, the
    :class:`JobQueue` and the upload limits."""

    workdir: Path
    storage: Storage
    queue: JobQueue
    max_upload: int
    max_image: int

    def public(self, text: str, job: Job | None = None, items: Iterable[Item] = ()) -> str:
        """``text`` as the page may see it: stored files named by the user's file names, the work folder's path
        never shown, one line, at most 500 characters."""
        for item in list(items) + (job.uses if job is not None else []):
            for p in item.paths:
                text = text.replace(str(p), item.name)
        text = text.replace(str(self.workdir), "(work folder)")
        text = " ".join(text.split())
        return text if len(text) <= 500 else text[:497] + "..."


def _state(request) -> ServerState:
    return request.app.state.neuromv


def _error(status: int, message: str, close: bool = False):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"} if close else None)


def page_config() -> dict:
    """The constants and choices the page's code (``web/*.js``) uses, read from the Python modules that define them,
    so that the page keeps no copies: the CPPN's gains (:data:`neuromv.settings.Z_GAIN`, ``PULSE_GAIN``), the
    image mode's :data:`neuromv.cppn.FLOOR` and :data:`neuromv.renderer.CENTRE_FRAMES`, the colour matrix's
    :data:`neuromv.renderer.LUMA`, the features' :data:`neuromv.features.ANALYSIS_SR` and ``TOP_DB``, the default
    settings (every row of the settings table, :data:`neuromv.settings.SETTINGS`) and the choice lists (fit modes,
    separators with their stems, layouts: the table's; the quality presets' sizes). A JSON object, embedded in the
    page (``/``)."""
    from . import cppn, features, renderer, settings

    rows = {row.name: row for row in settings.SETTINGS}
    return {
        "Z_GAIN": settings.Z_GAIN, "PULSE_GAIN": settings.PULSE_GAIN, "FLOOR": cppn.FLOOR,
        "CENTRE_FRAMES": renderer.CENTRE_FRAMES, "LUMA": list(renderer.LUMA),
        "ANALYSIS_SR": features.ANALYSIS_SR, "TOP_DB": features.TOP_DB,
        "defaults": {name: row.default for name, row in rows.items()},
        "choices": {"fit": list(rows["fit"].choices), "layout": list(rows["layout"].choices),
                    "separator": {name: list(settings.SEPARATOR_STEMS[name]) for name in rows["separator"].choices},
                    "size": {name: [q["width"], q["height"]] for name, q in settings.QUALITY.items()}},
    }


async def _page(request):
    """index.html with :func:`page_config` in it (``<`` escaped: the JSON cannot end its script element)."""
    from starlette.responses import HTMLResponse

    config = json.dumps(page_config()).replace("<", "\\u003c")
    return HTMLResponse((_WEB / "index.html").read_text(encoding="utf-8").replace(_CONFIG_MARK, config))


async def _asset(request):
    from starlette.responses import FileResponse

    name = request.path_params["name"]
    if name not in ASSETS:  # a fixed list: no path ever reaches the file system
        return _error(404, "not found")
    return FileResponse(_WEB / name, media_type=ASSETS[name])


async def _favicon(request):
    from starlette.responses import Response

    return Response(status_code=204)


async def _receive(request, kind: str, limit: int) -> Item:
    """Store an upload in the work folder under a name of our own, within the storage quota. The item comes
    back pinned; on any failure (too large, too slow, the client gone) nothing is kept."""
    from urllib.parse import unquote

    st = _state(request)
    name = Path(unquote(request.headers.get("x-filename", kind))).name[:200] or kind
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > min(limit, st.storage.quota):
        # refused before a byte is read; larger than the whole storage: 413 too
        what = f"{name}: too large; the limit is {_mb(min(limit, st.storage.quota))}"
        raise Refused(413, what + (" (--max-storage)" if st.storage.quota < limit else ""), close=True)
    suffix = "".join(c for c in Path(name).suffix[:10] if c.isalnum() or c == ".")
    item = st.storage.add(kind, name, suffix)
    try:
        with open(item.paths[0], "wb") as f:
            async def sink(chunk: bytes) -> None:
                st.storage.reserve(item, len(chunk))
                f.write(chunk)

            await read_body(request, limit, name, sink)
        return item
    except BaseException as e:
        st.storage.remove(item)
        from starlette.requests import ClientDisconnect

        if isinstance(e, ClientDisconnect):
            log.info("upload of %s cut short: the client went away", name)
            request.state.disconnect_logged = True
        raise


async def _receive_checked(request, kind: str, limit: int, check: Callable[[Item], dict]) -> Item:
    """:func:`_receive`, then ``check(item)`` on a worker thread (its dict goes into ``item.info``). A file that
    fails the check is not kept; the message names the user's file."""
    from starlette.concurrency import run_in_threadpool

    st = _state(request)
    item = await _receive(request, kind, limit)
    try:
        item.info = await run_in_threadpool(check, item)
        st.storage.settle(item)
        return item
    except NeuroMVError as e:
        st.storage.remove(item)
        raise ParameterError(st.public(str(e), items=[item])) from None
    except BaseException:
        st.storage.remove(item)
        raise
    finally:
        st.storage.unpin([item])


def _check_image(item: Item) -> dict:
    """Decode an uploaded image (:func:`neuromv.image.load_image`) and refuse one followed by much more data than
    it holds (a small picture that smuggles a large file)."""
    from .errors import ImageError
    from .image import load_image

    path = item.paths[0]
    pixels = load_image(path)
    from PIL import Image

    size = path.stat().st_size
    with open(path, "rb") as f, Image.open(f) as im:
        if im.format not in ("TIFF", "MPO", "WEBP"):  # TIFF: data anywhere, by offsets; WebP: RIFF-sized
            im.load()
            if getattr(im, "is_animated", False):
                im.seek(im.n_frames - 1)  # every frame is image data
                im.load()
            trailing = size - f.tell()
            if trailing > IMAGE_TRAILER + 2 * f.tell():
                raise ImageError(f"{item.name}: {trailing / 2**20:.1f} MB of data after the end of the image; "
                                 f"refused")
        elif im.format == "WEBP":
            f.seek(4)
            declared = int.from_bytes(f.read(4), "little") + 8  # the RIFF chunk's size
            if size - declared > IMAGE_TRAILER + 2 * declared:
                raise ImageError(f"{item.name}: {(size - declared) / 2**20:.1f} MB of data after the end of the "
                                 f"image; refused")
    return {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])}


async def _upload_image(request):
    from starlette.responses import JSONResponse

    st = _state(request)
    item = await _receive_checked(request, "image", st.max_image, _check_image)
    return JSONResponse({"id": item.id, "name": item.name, **item.info})


def _song_query(request) -> tuple[float, int]:
    from .settings import RenderSettings

    q = request.query_params
    try:
        fps, n_mels = float(q.get("fps", 30)), int(q.get("n_mels", 32))
    except ValueError:
        raise ParameterError("fps and n_mels must be numbers") from None
    RenderSettings(fps=fps, n_mels=n_mels)  # the render's limits
    return fps, n_mels


async def _upload_song(request):
    from starlette.responses import JSONResponse

    st = _state(request)
    fps, n_mels = _song_query(request)  # checked before the upload is read
    item = await _receive_checked(request, "song", st.max_upload,
                                  lambda item: _analyse(item, fps, n_mels, st.storage))
    return JSONResponse({"id": item.id, "name": item.name, "features": f"/api/songs/{item.id}/features",
                         **{k: v for k, v in item.info.items() if k != "features"}})


async def _song_features(request):
    """The song's dB mel matrix as little-endian float32 bytes, (n_mels, n_frames) row-major (``X-Shape``)."""
    from starlette.responses import FileResponse

    item = _state(request).storage.get(request.path_params["sid"], "song")
    info = item.info
    return FileResponse(info["features"], media_type="application/octet-stream",
                        headers={"X-Shape": f"{info['n_mels']},{info['n_frames']}", "X-Dtype": "float32-le",
                                 "Cache-Control": "no-store"})


async def _cppn(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    from .settings import RenderSettings

    q = request.query_params
    try:
        n_z, hidden, seed = int(q.get("n_z", 32)), int(q.get("hidden", 32)), int(q.get("seed", 0))
    except ValueError:
        raise ParameterError("n_z, hidden and seed must be integers") from None
    RenderSettings(n_mels=n_z, hidden=hidden, seed=seed)  # the same limits as a render's
    return JSONResponse(await run_in_threadpool(cppn_json, n_z, hidden, seed))


async def _json_body(request, allowed: tuple[str, ...]) -> dict:
    if not request.headers.get("content-length", "").isdigit():
        raise Refused(411, f"the request must be JSON of at most {MAX_JSON // 1024} KB, with its length")
    return _fields(parse_json(await read_body(request, MAX_JSON, "the request")), allowed)


def _job_request(st: ServerState, body: dict, need_song: bool = True):
    """(song item or None, settings, image, the items it uses) of a prepare or render request: image is 'none',
    'auto' or an uploaded image's file, as :func:`neuromv.render` takes it."""
    from .settings import RenderSettings

    song = None
    if body.get("song") is not None or need_song:
        if body.get("song") is None:
            raise ParameterError("unknown song: upload it first")
        song = st.storage.get(body["song"], "song")
    settings = RenderSettings.from_dict(body.get("settings", {}))
    image, uses = body.get("image") or "none", [song] if song else []
    if image not in ("none", "auto"):
        item = st.storage.get(image, "image")
        image = item.paths[0]
        uses.append(item)
    return song, settings, image, uses


async def _start_prepare(request):
    from starlette.responses import JSONResponse

    st = _state(request)
    song, settings, image, uses = _job_request(st, await _json_body(request, ("song", "image", "settings")),
                                               need_song=False)
    if song is None and (settings.stem_names() or image == "auto"):
        raise ParameterError("stems and the song's cover art need a song: upload it first")
    st.queue.cancel_all("prepare")  # one picture at a time: a newer request replaces the ones under way
    job = st.queue.submit("prepare", _prepare, song, settings, image, st, uses=uses)
    return JSONResponse({"job": job.id, "position": st.queue.position(job)})


async def _start_render(request):
    from starlette.responses import JSONResponse

    st = _state(request)
    song, settings, image, uses = _job_request(st, await _json_body(request, ("song", "image", "settings")))
    job = st.queue.submit("render", _render, song, settings, image, st, uses=uses)
    return JSONResponse({"job": job.id, "position": st.queue.position(job)})


def _job(request) -> Job:
    job = _state(request).queue.get(request.path_params["jid"])
    if job is None:
        raise Refused(404, "no such job")
    return job


async def _job_status(request):
    from starlette.responses import JSONResponse

    job = _job(request)
    out = {"state": job.state, "stage": job.stage, "done": job.done, "total": job.total, "error": job.error,
           "position": _state(request).queue.position(job)}
    if job.state == "done":
        if isinstance(job.result, Item):
            out["url"] = f"/api/files/{job.id}"
        else:
            out["result"] = job.result
    return JSONResponse(out)


async def _cancel_job(request):
    from starlette.responses import JSONResponse

    job = _job(request)
    _state(request).queue.cancel(job)
    return JSONResponse({"state": job.state})


async def _download(request):
    from starlette.responses import FileResponse

    st = _state(request)
    job = st.queue.get(request.path_params["jid"])  # files are found by job id only, never by path
    if job is None or job.state != "done" or not isinstance(job.result, Item):
        raise Refused(404, "no such video")
    item = st.storage.get(job.result.id, "video")
    return FileResponse(item.paths[0] / "video.mp4", media_type="video/mp4", filename=item.name)


async def _command(request):
    from starlette.responses import JSONResponse

    st = _state(request)
    body = await _json_body(request, ("song", "image", "settings", "output"))
    song, image = "song.mp3", body.get("image") or "none"
    with st.storage.lock:
        if body.get("song") in st.storage.items:
            song = st.storage.items[body["song"]].name
        if image not in ("none", "auto"):
            image = st.storage.items[image].name if image in st.storage.items else "image.png"
    return JSONResponse({"command": cli_command(song, body.get("output") or "video.mp4",
                                                body.get("settings", {}), image)})


async def _on_refused(request, exc: Refused):
    return _error(exc.status, exc.message, exc.close)


async def _on_neuromv_error(request, exc: NeuroMVError):
    return _error(400, _state(request).public(str(exc)))


async def _on_http_exception(request, exc):
    return _error(exc.status_code, str(exc.detail))


async def _on_os_error(request, exc: OSError):
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        log.warning("out of file descriptors or memory: %s", exc.strerror)
        return _error(503, "the server is out of resources for the moment (open files); try again shortly", True)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _error(507, "the server's disk is full", True)
    raise exc


async def _on_disconnect(request, exc):
    from starlette.responses import Response

    if not getattr(request.state, "disconnect_logged", False):  # one line per disconnect
        log.info("%s %s: the client went away", request.method, request.url.path)
    return Response(status_code=499)


def create_app(*, workdir: str | os.PathLike | None = None, max_upload: int = MAX_UPLOAD,
               max_image: int = MAX_IMAGE_UPLOAD, max_storage: int = MAX_STORAGE, jobs: int = 1,
               hosts: Iterable[str] = LOCAL_HOSTS):
    """The web app (Starlette ASGI).

    Parameters
    ----------
    workdir : path, optional
        Where uploads, their features and stems, and rendered videos are kept. Default: a new temporary folder,
        removed at shutdown.
    max_upload, max_image : int
        Largest accepted song and image upload, in bytes.
    max_storage : int
        Quota of the work folder in bytes; the least recently used files go first.
    jobs : int
        Jobs (fits, separations, renders) that run at a time; up to :data:`MAX_WAITING` more wait.
    hosts : iterable of str
        The host names it answers to (the Host header): see :func:`allowed_hosts` ('ip': any IP address).
        Requests another site's page sent are refused whatever ``hosts``.
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect
    from starlette.routing import Route

    for name, v in (("max_upload", max_upload), ("max_image", max_image), ("max_storage", max_storage)):
        if not (isinstance(v, int) and v > 0):
            raise ParameterError(f"{name} must be a positive number of bytes, not {v!r}")
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="neuromv-serve-")) if own else Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    storage = Storage(folder, max_storage)
    state = ServerState(folder, storage, None, int(max_upload), int(max_image))  # type: ignore[arg-type]
    state.queue = JobQueue(jobs, storage, lambda text, job: state.public(text, job))

    routes = [
        Route("/", _page),
        Route("/favicon.ico", _favicon),
        Route("/assets/{name}", _asset),
        Route("/api/songs", _upload_song, methods=["POST"]),
        Route("/api/songs/{sid}/features", _song_features),
        Route("/api/images", _upload_image, methods=["POST"]),
        Route("/api/prepare", _start_prepare, methods=["POST"]),
        Route("/api/cppn", _cppn),
        Route("/api/render", _start_render, methods=["POST"]),
        Route("/api/jobs/{jid}", _job_status),
        Route("/api/jobs/{jid}/cancel", _cancel_job, methods=["POST"]),
        Route("/api/files/{jid}", _download),
        Route("/api/cli", _command, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        state.queue.close()
        if own:
            shutil.rmtree(folder, ignore_errors=True)

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(_SameHostOnly, hosts=tuple(hosts))],
                    exception_handlers={Refused: _on_refused, NeuroMVError: _on_neuromv_error,
                                        HTTPException: _on_http_exception, OSError: _on_os_error,
                                        ClientDisconnect: _on_disconnect})
    app.state.neuromv = state
    return app


def _analyse(item: Item, fps: float, n_mels: int, storage: Storage) -> dict:
    """Decode and check an uploaded song, and store its dB mel matrix (what the page needs to compute z) as
    little-endian float32 beside it. A matrix over :data:`MAX_FEATURES` values is refused before it is computed."""
    from .audio import AudioFile
    from .features import n_video_frames, song_db
    from .image import find_cover_art

    path = item.paths[0]
    song = AudioFile(path)
    n_frames = n_video_frames(song.n_samples, song.sr, fps)
    if n_frames * n_mels > MAX_FEATURES:
        raise Refused(413, f"{item.name}: {n_frames} frames x {n_mels} bands is more features than the server sends "
                           f"({MAX_FEATURES:,}); choose a lower fps or fewer bands, or a shorter excerpt")
    db = song_db(song.blocks(), song.sr, fps=fps, n_mels=n_mels)
    features = path.with_name(path.stem + ".f32")
    item.paths.append(features)
    storage.reserve(item, db.nbytes)
    features.write_bytes(np.ascontiguousarray(db, dtype="<f4").tobytes())
    return {"duration": song.duration, "fps": fps, "n_mels": n_mels, "n_frames": int(db.shape[1]),
            "cover": find_cover_art(path) is not None, "features": features}


def _prepare(job: Job, song: Item | None, settings, image: str | Path, st: ServerState) -> dict:
    """What the page needs to play ``settings`` with ``image`` ('none', 'auto' or a file): per panel (one, or one
    per stem) its place in the frame (fractions), the CPPN's weights (fitted to the image, if any) and the dB mel
    matrix of its audio (None: the song's own, which the page has). The panels are the render's own
    (:func:`neuromv.plan.make_plan`)."""
    from .audio import AudioFile
    from .features import song_db
    from .plan import make_plan

    plan = make_plan(None if song is None else song.paths[0], settings, image=image,
                     cache_root=None if song is None else _stem_root(song, st))
    plan.find_cover()
    stems = {}
    if plan.stems:
        audio = AudioFile(song.paths[0], start=settings.start, duration=settings.duration).load()
        if song.info["n_frames"] * song.info["n_mels"] * len(plan.stems) > 4 * MAX_FEATURES:
            raise Refused(413, f"{song.name}: too many features for stems at this fps and number of bands")
        stems = _stems(job, song, audio, plan, st)
    out = []
    for p in plan.layout():
        net = plan.network(p, progress=job.progress, cancel=job.cancel)
        db = None
        if p.name is not None:
            a = stems[p.name]
            db = _b64(song_db(a.blocks(), a.sr, fps=settings.fps, n_mels=settings.n_mels))
        x, y, w, h = p.box
        out.append({"name": p.name, "box": [x / settings.width, y / settings.height, w / settings.width,
                                            h / settings.height], "net": net_json(net), "db": db})
    return {"panels": out, "layout": settings.layout if stems else None}


def _stem_root(song: Item, st: ServerState) -> Path:
    """The folder of ``song``'s stems' cache: the song's own in the work folder (counted by the quota, removed with
    the song), never the user's cache."""
    root = st.workdir / f"stems-{song.id}"
    if root not in song.paths:
        song.paths.append(root)
    return root


def _reserve_stems(song: Item, settings, audio, st: ServerState) -> None:
    """Reserve the storage of ``song``'s stems of ``audio`` (float32, one copy per stem) before they are made."""
    st.storage.reserve(song, len(settings.stem_names()) * audio.n_samples * audio.channels * 4 + 4096,
                       what=f"{song.name}'s stems")


def _stems(job: Job, song: Item, audio, plan, st: ServerState) -> dict:
    """The song's stems (:meth:`neuromv.plan.Plan.separate`), cached in :func:`_stem_root`."""
    _stem_root(song, st)
    _reserve_stems(song, plan.settings, audio, st)
    try:
        return plan.separate(audio, progress=job.progress, cancel=job.cancel)
    finally:
        st.storage.settle(song)


class _VideoWatch:
    """A render job's progress callback that also keeps the video's folder within its storage reservation
    (reserved ahead in steps of 8 MB; :class:`Refused` 507 stops the render when the quota cannot give more)."""

    STEP = 8 * 2**20

    def __init__(self, job: Job, item: Item, storage: Storage) -> None:
        self.job, self.item, self.storage, self.checked = job, item, storage, 0.0

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self.job.progress(stage, done, total)
        now = time.monotonic()
        if now - self.checked > 0.25:
            self.checked = now
            if du(self.item.paths[0]) > self.item.size - self.STEP // 2:
                self.storage.reserve(self.item, self.STEP, what=f"the video of {self.item.name}")


def _render(job: Job, song: Item, settings, image: str | Path, st: ServerState) -> Item:
    """Render ``song`` into a new video item; stems come from (or go to) the song's folder in the work folder
    (:func:`_stem_root`), as the preview's do."""
    from .audio import AudioFile
    from .pipeline import render

    video = st.storage.add("video", Path(song.name).stem + ".mp4", uid=job.id)
    try:
        video.paths[0].mkdir()
        watch = _VideoWatch(job, video, st.storage)
        watch.storage.reserve(video, _VideoWatch.STEP, what=f"the video of {video.name}")
        root = None
        if settings.stem_names():
            root = _stem_root(song, st)
            _reserve_stems(song, settings, AudioFile(song.paths[0], start=settings.start,
                                                     duration=settings.duration), st)
        try:
            render(song.paths[0], video.paths[0] / "video.mp4", settings, image=image, overwrite=True,
                   progress=watch, cancel=job.cancel, cache_root=root)
        finally:
            if root is not None:
                st.storage.settle(song)
        st.storage.settle(video)
        st.storage.unpin([video])
        return video
    except BaseException:
        st.storage.remove(video)
        raise


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); :class:`ParameterError` with one line when
    the address is unknown or in use."""
    if not 0 <= port < 65536:
        raise ParameterError(f"port must be from 1 to 65535, not {port}")
    try:
        info = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise ParameterError(f"cannot listen on {host!r}: unknown host ({getattr(e, 'strerror', e)})") from None
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in _WILDCARDS else 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ParameterError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()}") from None
    sock.setblocking(False)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, *, max_upload: int = MAX_UPLOAD,
          max_image: int = MAX_IMAGE_UPLOAD, max_storage: int = MAX_STORAGE, jobs: int = 1,
          allow_hosts: Iterable[str] = (), max_connections: int = MAX_CONNECTIONS,
          on_listen: Callable[[str], None] | None = None) -> None:
    """Run the app with uvicorn until interrupted.

    The socket is bound first (:func:`listen`): an address in use or unknown is a :class:`ParameterError`, and
    ``on_listen(url)`` is called only once it listens. Uvicorn answers 503 beyond ``max_connections`` open
    connections and closes idle ones after :data:`KEEP_ALIVE_S` s. Other parameters: :func:`create_app`.
    """
    import uvicorn

    if not 0 < port < 65536:
        raise ParameterError(f"port must be from 1 to 65535, not {port}")
    if not 1 <= max_connections <= 10_000:
        raise ParameterError(f"max connections must be from 1 to 10000, not {max_connections}")
    sock = listen(host, port)
    try:
        if host not in LOCAL_HOSTS:
            log.warning("serving on %s: anyone who can reach this machine can use the server", host)
        app = create_app(max_upload=max_upload, max_image=max_image, max_storage=max_storage, jobs=jobs,
                         hosts=allowed_hosts(host, allow_hosts))
        config = uvicorn.Config(app, log_level="warning", limit_concurrency=max_connections,
                                timeout_keep_alive=KEEP_ALIVE_S, lifespan="on")
        server = uvicorn.Server(config)
        if on_listen is not None:
            on_listen(f"http://{f'[{host}]' if ':' in host else host}:{port}/")
        server.run(sockets=[sock])
    finally:
        sock.close()
