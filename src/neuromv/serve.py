"""Live preview in the browser: a small local web app (Starlette) where the CPPN plays with the music in WebGL.

The server does what needs Python: it decodes a dropped song and computes its features (the dB mel matrix of
:func:`neuromv.features.song_db`), hands out a CPPN's weights, and renders the final video with the offline
pipeline. The page (``neuromv/web/``, shipped in the package) plays the song, turns the dB matrix into z exactly
as :func:`neuromv.features.latents_from_db` does, and evaluates the CPPN per pixel in a fragment shader, choosing
the frame from the audio clock, so knobs such as reactivity, smoothing and zoom act at once.

Safety: it binds to 127.0.0.1 unless told otherwise, limits upload size, serves only its own assets and the files
it rendered (by id, never by path), and answers a bad upload with a message instead of failing.

Run it with ``neuromv serve``; :func:`create_app` gives the ASGI app for tests or other servers.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np

from .errors import NeuroMVError, ParameterError

__all__ = ["create_app", "serve", "cli_command", "MAX_UPLOAD", "ASSETS"]

log = logging.getLogger(__name__)

#: Largest upload accepted (bytes): a long song in a lossless format fits.
MAX_UPLOAD = 512 * 2**20
#: Largest JSON request body (bytes): settings documents are a few hundred.
MAX_JSON = 64 * 1024
#: Finished prepare jobs kept (their results hold weights and features).
MAX_FINISHED = 8
#: Hosts the server answers by default (a page of another site, or a DNS-rebound name, is refused).
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The page's files (in ``neuromv/web/``), the only ones served besides rendered videos.
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "mel.js": "text/javascript",
          "capture.js": "text/javascript", "style.css": "text/css"}
_WEB = Path(__file__).resolve().parent / "web"


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
    defaults). ``image``: 'none' (abstract), 'auto' (the song's cover art, the CLI's default) or an image file."""
    import shlex

    from .settings import RenderSettings

    s = RenderSettings.from_dict(settings)
    default = RenderSettings()
    args = ["neuromv", "render", song, "-o", output]
    for f in dataclasses.fields(RenderSettings):
        v, d = getattr(s, f.name), getattr(default, f.name)
        if v == d or f.name in ("width", "height"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            if v:
                args.append(flag)
            continue
        args += [flag, str(v)]
    if (s.width, s.height) != (default.width, default.height):
        args += ["--size", f"{s.width}x{s.height}"]
    if image != "auto":
        args += ["--image", image]
    return " ".join(shlex.quote(a) for a in args)


class _State:
    """Songs received and render jobs, in a work folder of the server's own."""

    def __init__(self, workdir: Path, max_upload: int) -> None:
        self.workdir, self.max_upload = workdir, max_upload
        self.songs: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.lock = threading.Lock()


def _host_of(value: str) -> str:
    """'127.0.0.1:8765' -> '127.0.0.1'; '[::1]:8765' -> '::1'; 'http://localhost:8765' -> 'localhost'."""
    from urllib.parse import urlsplit

    value = value.strip()
    try:
        return (urlsplit(value if "//" in value else f"//{value}").hostname or "").lower()
    except ValueError:
        return ""


class _SameHostOnly:
    """ASGI middleware: answer only requests for ``hosts`` (a DNS-rebound name is refused), and refuse requests
    that change something when a page of another site sent them (their Origin is not this server)."""

    def __init__(self, app, hosts) -> None:
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            from starlette.responses import PlainTextResponse

            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "")
            origin = headers.get("origin")
            reason = None
            if "*" not in self.hosts and _host_of(host) not in self.hosts:
                reason = "unknown host"
            elif scope["method"] not in ("GET", "HEAD") and origin is not None and \
                    origin.split("://", 1)[-1].lower() != host.lower():
                reason = "cross-site request refused"
            if reason:
                await PlainTextResponse(reason, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(*, workdir: str | os.PathLike | None = None, max_upload: int = MAX_UPLOAD,
               hosts: tuple[str, ...] | None = LOCAL_HOSTS):
    """The web app (Starlette ASGI).

    Parameters
    ----------
    workdir : path, optional
        Where uploaded songs and rendered videos are kept. Default: a new temporary folder, removed at shutdown.
    max_upload : int
        Largest accepted upload in bytes.
    hosts : tuple of str or None
        The host names it answers to (the Host header); None: any (a server that listens beyond this machine).
        Requests that change something are refused when another site's page sent them, whatever ``hosts``.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="neuromv-serve-")) if own else Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    state = _State(folder, int(max_upload))

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def page(request: Request) -> Response:
        return FileResponse(_WEB / "index.html", media_type=ASSETS["index.html"])

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:  # a fixed list: no path ever reaches the file system
            return error(404, "not found")
        return FileResponse(_WEB / name, media_type=ASSETS[name])

    async def receive(request: Request, kind: str) -> tuple[str, str, Path] | JSONResponse:
        """Store an upload in the work folder under a name of our own: (id, the user's file name, path)."""
        too_large = f"file too large: the limit is {state.max_upload // 2**20} MB"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > state.max_upload:
            return error(413, too_large)
        from urllib.parse import unquote

        name = Path(unquote(request.headers.get("x-filename", kind))).name or kind
        uid = uuid.uuid4().hex
        path = state.workdir / f"{kind}-{uid}{''.join(c for c in Path(name).suffix[:10] if c.isalnum() or c == '.')}"
        size = 0
        try:
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > state.max_upload:
                        f.close()
                        path.unlink(missing_ok=True)
                        return error(413, too_large)
                    f.write(chunk)
        except BaseException:  # the client went away (or the server is stopping): no partial file is kept
            path.unlink(missing_ok=True)
            raise
        return uid, name, path

    async def receive_checked(request: Request, kind: str, check):
        """:func:`receive`, then ``check(path)`` on a worker thread: (id, name, path, its result), or the error
        response (a file that fails the check is not kept)."""
        got = await receive(request, kind)
        if isinstance(got, Response):
            return got
        uid, name, path = got
        try:
            return uid, name, path, await run_in_threadpool(check, path)
        except NeuroMVError as e:
            path.unlink(missing_ok=True)
            return error(400, f"{name}: {str(e).split(': ', 1)[-1]}")  # the user's name, not the stored one
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    async def upload_image(request: Request) -> Response:
        from .image import load_image

        got = await receive_checked(request, "image", load_image)
        if isinstance(got, Response):
            return got
        iid, name, path, pixels = got
        with state.lock:
            state.images[iid] = {"path": path, "name": name}
        return JSONResponse({"id": iid, "name": name, "width": int(pixels.shape[1]), "height": int(pixels.shape[0])})

    async def upload_song(request: Request) -> Response:
        from .settings import RenderSettings

        try:  # checked before the upload is read
            q = request.query_params
            fps, n_mels = float(q.get("fps", 30)), int(q.get("n_mels", 32))
            RenderSettings(fps=fps, n_mels=n_mels)
        except (ValueError, NeuroMVError) as e:
            return error(400, f"fps and n_mels: {e}")
        got = await receive_checked(request, "song", lambda path: _analyse(path, fps, n_mels))
        if isinstance(got, Response):
            return got
        sid, name, path, info = got
        with state.lock:
            state.songs[sid] = {"path": path, "name": name, **{k: info[k] for k in ("duration", "n_frames", "cover")}}
        return JSONResponse({"id": sid, "name": name, **info})

    async def cppn(request: Request) -> Response:
        from .settings import RenderSettings

        try:
            q = request.query_params
            n_z, hidden, seed = int(q.get("n_z", 32)), int(q.get("hidden", 32)), int(q.get("seed", 0))
            RenderSettings(n_mels=n_z, hidden=hidden, seed=seed)  # the same limits as a render's
        except (ValueError, NeuroMVError) as e:
            return error(400, f"n_z, hidden and seed: {e}")
        return JSONResponse(await run_in_threadpool(cppn_json, n_z, hidden, seed))

    async def json_body(request: Request):
        declared = request.headers.get("content-length")
        if not declared or not declared.isdigit() or int(declared) > MAX_JSON:
            raise ParameterError(f"the request must be JSON of at most {MAX_JSON // 1024} KB, with its length")
        body = await request.json()
        if not isinstance(body, dict):
            raise ParameterError("the request must be a JSON object")
        return body

    def job_request(body: dict, need_song: bool = True):
        """(song, settings, image) of a prepare or render request: image is 'none', 'auto' or an uploaded image's
        file, as :func:`neuromv.render` takes it."""
        from .settings import RenderSettings

        song = state.songs.get(body.get("song"))
        if song is None and (need_song or body.get("song") is not None):
            raise ParameterError("unknown song: upload it first")
        settings = RenderSettings.from_dict(body.get("settings", {}))
        image = body.get("image") or "none"
        if image not in ("none", "auto"):
            if image not in state.images:
                raise ParameterError("unknown image: upload it first")
            image = state.images[image]["path"]
        return song, settings, image

    def start_job(kind: str, target, *args) -> JSONResponse:
        jid = uuid.uuid4().hex
        job = {"kind": kind, "state": "running", "stage": "", "done": 0, "total": 0, "error": None, "result": None,
               "cancel": threading.Event()}
        with state.lock:
            finished = [k for k, j in state.jobs.items() if j["state"] != "running" and j["kind"] == "prepare"]
            for k in finished[:-MAX_FINISHED]:  # prepared pictures are fetched once; keep only the last few
                del state.jobs[k]
            state.jobs[jid] = job
        job["thread"] = threading.Thread(target=_run_job, args=(job, target, *args), daemon=True)
        job["thread"].start()
        return JSONResponse({"job": jid})

    async def start_prepare(request: Request) -> Response:
        try:
            song, settings, image = job_request(await json_body(request), need_song=False)
            if song is None and (settings.stem_names() or image == "auto"):
                raise ParameterError("stems and the song's cover art need a song: upload it first")
        except (ValueError, TypeError, NeuroMVError) as e:
            return error(400, str(e))
        with state.lock:  # one picture at a time: a newer request replaces the one under way
            for job in state.jobs.values():
                if job["kind"] == "prepare" and job["state"] == "running":
                    job["cancel"].set()
        return start_job("prepare", _prepare, song, settings, image)

    async def start_render(request: Request) -> Response:
        try:
            song, settings, image = job_request(await json_body(request))
        except (ValueError, TypeError, NeuroMVError) as e:
            return error(400, str(e))
        path = state.workdir / f"video-{uuid.uuid4().hex}.mp4"
        return start_job("render", _render, song, settings, image, path)

    async def job_status(request: Request) -> Response:
        job = state.jobs.get(request.path_params["jid"])
        if job is None:
            return error(404, "no such job")
        out = {k: job[k] for k in ("state", "stage", "done", "total", "error")}
        if job["state"] == "done":
            if isinstance(job["result"], Path):
                out["url"] = f"/api/files/{request.path_params['jid']}"
            else:
                out["result"] = job["result"]
        return JSONResponse(out)

    async def cancel_job(request: Request) -> Response:
        job = state.jobs.get(request.path_params["jid"])
        if job is None:
            return error(404, "no such job")
        job["cancel"].set()
        return JSONResponse({"state": job["state"]})

    async def download(request: Request) -> Response:
        job = state.jobs.get(request.path_params["jid"])  # files are found by job id only, never by path
        if job is None or job["state"] != "done" or not isinstance(job["result"], Path):
            return error(404, "no such video")
        return FileResponse(job["result"], media_type="video/mp4", filename=job["name"])

    async def command(request: Request) -> Response:
        try:
            body = await json_body(request)
            song = state.songs.get(body.get("song"), {}).get("name", "song.mp3")
            image = body.get("image") or "none"
            if image not in ("none", "auto"):
                image = state.images.get(image, {}).get("name", "image.png")
            return JSONResponse({"command": cli_command(song, body.get("output") or "video.mp4",
                                                        body.get("settings", {}), image)})
        except (ValueError, TypeError, NeuroMVError) as e:
            return error(400, str(e))

    def cleanup() -> None:
        for job in state.jobs.values():
            job["cancel"].set()
        import time

        deadline = time.monotonic() + 10
        for job in state.jobs.values():  # a job still writing must stop before its folder goes (10 s in all)
            job["thread"].join(max(0.0, deadline - time.monotonic()))
        if own:
            shutil.rmtree(folder, ignore_errors=True)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/assets/{name}", asset),
        Route("/api/songs", upload_song, methods=["POST"]),
        Route("/api/images", upload_image, methods=["POST"]),
        Route("/api/prepare", start_prepare, methods=["POST"]),
        Route("/api/cppn", cppn),
        Route("/api/render", start_render, methods=["POST"]),
        Route("/api/jobs/{jid}", job_status),
        Route("/api/jobs/{jid}/cancel", cancel_job, methods=["POST"]),
        Route("/api/files/{jid}", download),
        Route("/api/cli", command, methods=["POST"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        cleanup()

    from starlette.middleware import Middleware

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(_SameHostOnly, hosts=hosts if hosts is not None else ("*",))])
    app.state.neuromv = state
    return app


def _analyse(path: Path, fps: float, n_mels: int) -> dict:
    """Decode and check a song, and compute its dB mel matrix (what the page needs to compute z)."""
    from .audio import AudioFile
    from .features import song_db
    from .image import find_cover_art

    song = AudioFile(path)
    db = song_db(song.blocks(), song.sr, fps=fps, n_mels=n_mels)
    return {"duration": song.duration, "fps": fps, "n_mels": n_mels, "n_frames": int(db.shape[1]),
            "cover": find_cover_art(path) is not None, "db": _b64(db)}


def _run_job(job: dict, target, *args) -> None:
    """Run ``target(job, *args)`` on a worker thread; its result (or error) goes into ``job`` for the page."""
    try:
        job["result"] = target(job, *args)
        job["state"] = "done"
    except NeuroMVError as e:
        job["state"], job["error"] = "error", str(e)
    except Exception as e:  # noqa: BLE001 - reported on the page; the server keeps running
        log.exception("job failed")
        job["state"], job["error"] = "error", f"failed: {e}"


def _progress(job: dict):
    def progress(stage: str, done: int, total: int) -> None:
        job["stage"], job["done"], job["total"] = stage, done, total

    return progress


def _prepare(job: dict, song: dict | None, settings, image: str | Path) -> dict:
    """What the page needs to play ``settings`` with ``image`` ('none', 'auto' or a file): per panel (one, or one
    per stem) its place in the frame (fractions), the CPPN's weights (fitted to the image, if any) and the dB mel
    matrix of its audio (None: the song's own, which the page has). Mirrors :func:`neuromv.pipeline.render`."""
    from dataclasses import replace

    from .audio import AudioFile
    from .features import song_db
    from .pipeline import _cppn_for, _resolve_image, stem_audio, stem_panels

    progress = _progress(job)
    pixels, _ = _resolve_image(image, None if song is None else song["path"], settings.background)
    if settings.stem_names():
        audio = AudioFile(song["path"], start=settings.start, duration=settings.duration).load()
        stems = stem_audio(audio, settings, progress=progress, cancel=job["cancel"])
        panels = stem_panels(settings)
    else:
        stems, panels = {}, [(None, (0, 0, settings.width, settings.height), replace(settings, stems=None))]
    out = []
    for name, (x, y, w, h), st in panels:
        net = _cppn_for(pixels, st, progress=progress, cancel=job["cancel"])
        db = None
        if name is not None:
            a = stems[name]
            db = _b64(song_db(a.blocks(), a.sr, fps=settings.fps, n_mels=settings.n_mels))
        out.append({"name": name, "box": [x / settings.width, y / settings.height, w / settings.width,
                                          h / settings.height], "net": net_json(net), "db": db})
    return {"panels": out, "layout": settings.layout if stems else None}


def _render(job: dict, song: dict, settings, image: str | Path, path: Path) -> Path:
    from .pipeline import render

    job["name"] = Path(song["name"]).stem + ".mp4"
    render(song["path"], path, settings, image=image, overwrite=True, progress=_progress(job), cancel=job["cancel"])
    return path


def serve(host: str = "127.0.0.1", port: int = 8765, *, max_upload: int = MAX_UPLOAD) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this machine can use the server", host)
    if not 0 < port < 65536:
        raise ParameterError(f"port must be from 1 to 65535, not {port}")
    local = host in ("127.0.0.1", "localhost", "::1")
    uvicorn.run(create_app(max_upload=max_upload, hosts=LOCAL_HOSTS if local else None), host=host, port=port,
                log_level="warning")
