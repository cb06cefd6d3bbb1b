"""The server's requests and answers: which hosts and pages it answers (:class:`SameHostOnly`), request bodies
under deadlines (:func:`read_body`), checked JSON (:func:`parse_json`, :func:`json_body`), and the errors:
:class:`Refused` and the one handler per error kind (:func:`exception_handlers`), each answering
``{"error": "..."}`` with a 4xx (503/507 when busy or full)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import NeuroMVError, ParameterError
from . import config

if TYPE_CHECKING:
    from .jobs import ServerState

log = logging.getLogger(__name__)


class Refused(Exception):
    """A request the server will not serve now: ``status`` (408, 413, 429, 503, 507...) and a one-line message.
    Raised by the storage quota and the job queue; the app answers it as ``{"error": message}``."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


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
    hosts = list(config.LOCAL_HOSTS) + [_host_of(bind) or bind.lower()] + [_host_of(h) or h.lower() for h in extra]
    if bind in config.WILDCARDS:
        hosts.append("ip")
    return tuple(dict.fromkeys(h for h in hosts if h))


class SameHostOnly:
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

    too_large = f"{what}: too large; the limit is {mb(limit)}"
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, too_large, close=True)
    t0 = time.monotonic()
    size, parts = 0, []
    while True:
        elapsed = time.monotonic() - t0
        wait = config.UPLOAD_IDLE_S
        if elapsed > config.UPLOAD_GRACE_S or size < config.UPLOAD_MIN_RATE * config.UPLOAD_GRACE_S:
            # the time left before the average rate falls under the minimum (with the grace period)
            wait = min(wait, max(0.0, config.UPLOAD_GRACE_S + size / config.UPLOAD_MIN_RATE - elapsed) + 0.05)
        try:
            message = await asyncio.wait_for(request.receive(), timeout=wait)
        except asyncio.TimeoutError:
            raise Refused(408, f"{what}: the upload was too slow (at least {config.UPLOAD_MIN_RATE // 1024} KB/s "
                               f"is needed, and a pause under {config.UPLOAD_IDLE_S:g} s)", close=True) from None
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


def mb(n: int) -> str:
    """``n`` bytes as '12 MB' (or '64 KB' under a megabyte), for messages."""
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
    if deepest > config.MAX_JSON_DEPTH:
        raise ParameterError(f"the request is nested too deeply (more than {config.MAX_JSON_DEPTH} levels)")

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
        raise ParameterError(f"the request is nested too deeply (more than {config.MAX_JSON_DEPTH} levels)") from None


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



async def json_body(request, allowed: tuple[str, ...]) -> dict:
    """A job request's JSON body (at most :data:`~neuromv.serve.config.MAX_JSON` bytes, with its length), checked:
    only the fields ``allowed``, each of its type."""
    if not request.headers.get("content-length", "").isdigit():
        raise Refused(411, f"the request must be JSON of at most {config.MAX_JSON // 1024} KB, with its length")
    return _fields(parse_json(await read_body(request, config.MAX_JSON, "the request")), allowed)


def server_state(request) -> ServerState:
    """The :class:`~neuromv.serve.jobs.ServerState` of the app that received ``request``."""
    return request.app.state.neuromv


def error_response(status: int, message: str, close: bool = False):
    """A JSON ``{"error": message}`` answer with ``status`` (``close``: and ``Connection: close``)."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"} if close else None)


async def _on_refused(request, exc: Refused):
    return error_response(exc.status, exc.message, exc.close)


async def _on_neuromv_error(request, exc: NeuroMVError):
    return error_response(400, server_state(request).public(str(exc)))


async def _on_http_exception(request, exc):
    return error_response(exc.status_code, str(exc.detail))


async def _on_os_error(request, exc: OSError):
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        log.warning("out of file descriptors or memory: %s", exc.strerror)
        return error_response(503, "the server is out of resources for the moment (open files); try again shortly",
                              True)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return error_response(507, "the server's disk is full", True)
    raise exc


async def _on_disconnect(request, exc):
    from starlette.responses import Response

    if not getattr(request.state, "disconnect_logged", False):  # one line per disconnect
        log.info("%s %s: the client went away", request.method, request.url.path)
    return Response(status_code=499)


def exception_handlers() -> dict:
    """The app's handler for each error kind: :class:`Refused`, :class:`~neuromv.errors.NeuroMVError` (400),
    Starlette's ``HTTPException``, ``OSError`` (503 out of resources, 507 disk full) and a client gone away."""
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    return {Refused: _on_refused, NeuroMVError: _on_neuromv_error, HTTPException: _on_http_exception,
            OSError: _on_os_error, ClientDisconnect: _on_disconnect}
