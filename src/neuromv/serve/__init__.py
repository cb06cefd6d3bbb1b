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

The package: :mod:`~neuromv.serve.config` (the limits), :mod:`~neuromv.serve.storage` (the work folder under a
quota), :mod:`~neuromv.serve.jobs` (the job table and the work it runs), :mod:`~neuromv.serve.http` (hosts, bodies,
JSON, errors), :mod:`~neuromv.serve.routes` (the page, the API, :func:`create_app`); here :func:`serve` and
:func:`listen`. A test that changes a limit patches ``neuromv.serve.config``, where the code reads it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterable

from ..errors import ParameterError
from . import config
# every name the single-file module had stays importable from neuromv.serve
from .config import (IMAGE_TRAILER, KEEP_ALIVE_S, LOCAL_HOSTS, MAX_CONNECTIONS, MAX_FEATURES, MAX_FINISHED,
                     MAX_FINISHED_PREPARE, MAX_IMAGE_UPLOAD, MAX_JSON, MAX_JSON_DEPTH, MAX_STORAGE, MAX_UPLOAD,
                     MAX_WAITING, UPLOAD_GRACE_S, UPLOAD_IDLE_S, UPLOAD_MIN_RATE)
from .http import Refused, allowed_hosts, parse_json, read_body
from .jobs import Job, JobQueue, ServerState, cppn_json, net_json
from .routes import ASSETS, cli_command, create_app, page_config
from .storage import Item, Storage, du

__all__ = ["create_app", "serve", "listen", "cli_command", "Job", "JobQueue", "Storage", "Refused",
           "MAX_UPLOAD", "MAX_IMAGE_UPLOAD", "MAX_STORAGE", "MAX_JSON", "MAX_JSON_DEPTH", "MAX_FEATURES",
           "MAX_WAITING", "MAX_CONNECTIONS", "UPLOAD_IDLE_S", "UPLOAD_MIN_RATE", "UPLOAD_GRACE_S", "LOCAL_HOSTS",
           "ASSETS", "page_config"]

log = logging.getLogger(__name__)


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
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host in config.WILDCARDS else 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ParameterError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()}") from None
    sock.setblocking(False)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8765, *, max_upload: int = config.MAX_UPLOAD,
          max_image: int = config.MAX_IMAGE_UPLOAD, max_storage: int = config.MAX_STORAGE, jobs: int = 1,
          allow_hosts: Iterable[str] = (), max_connections: int = config.MAX_CONNECTIONS,
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
        if host not in config.LOCAL_HOSTS:
            log.warning("serving on %s: anyone who can reach this machine can use the server", host)
        app = create_app(max_upload=max_upload, max_image=max_image, max_storage=max_storage, jobs=jobs,
                         hosts=allowed_hosts(host, allow_hosts))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", limit_concurrency=max_connections,
                                               timeout_keep_alive=config.KEEP_ALIVE_S, lifespan="on"))
        if on_listen is not None:
            on_listen(f"http://{f'[{host}]' if ':' in host else host}:{port}/")
        server.run(sockets=[sock])
    finally:
        sock.close()
