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
#: The page's files (in ``neuromv/web/``), the only ones served besides rendered videos.
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
_WEB = Path(__file__).resolve().parent / "web"


def _b64(a: np.ndarray) -> str:
    """float32 array -> base64 of its little-endian bytes (the page reads it as a Float32Array)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def cppn_json(n_z: int, hidden: int, seed: int) -> dict:
    """The weights of the abstract CPPN of ``seed``, as the page's shader takes them: per layer ``w``
    [shape=(out, in)] and ``b`` [shape=(out,)], base64 float32. Layer 0's inputs are (x, y, r, z...)."""
    from .cppn import CPPN

    net = CPPN(n_z, hidden, seed=seed)
    layers = [{"out": int(l.weight.shape[0]), "in": int(l.weight.shape[1]),
               "w": _b64(l.weight.detach().numpy()), "b": _b64(l.bias.detach().numpy())} for l in net.layers]
    return {"n_z": n_z, "hidden": hidden, "seed": seed, "layers": layers}


def cli_command(song: str, output: str, settings: dict) -> str:
    """The ``neuromv render`` command line that renders ``song`` with ``settings`` (only what differs from the
    defaults)."""
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
    return " ".join(shlex.quote(a) for a in args)


class _State:
    """Songs received and render jobs, in a work folder of the server's own."""

    def __init__(self, workdir: Path, max_upload: int) -> None:
        self.workdir, self.max_upload = workdir, max_upload
        self.songs: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.lock = threading.Lock()


def create_app(*, workdir: str | os.PathLike | None = None, max_upload: int = MAX_UPLOAD):
    """The web app (Starlette ASGI).

    Parameters
    ----------
    workdir : path, optional
        Where uploaded songs and rendered videos are kept. Default: a new temporary folder, removed at shutdown.
    max_upload : int
        Largest accepted upload in bytes.
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

    async def upload_song(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > state.max_upload:
            return error(413, f"file too large: the limit is {state.max_upload // 2**20} MB")
        name = Path(request.headers.get("x-filename", "song")).name or "song"
        sid = uuid.uuid4().hex
        path = state.workdir / f"song-{sid}{Path(name).suffix[:10]}"
        size = 0
        with open(path, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > state.max_upload:
                    f.close()
                    path.unlink(missing_ok=True)
                    return error(413, f"file too large: the limit is {state.max_upload // 2**20} MB")
                f.write(chunk)
        fps = float(request.query_params.get("fps", 30))
        n_mels = int(request.query_params.get("n_mels", 32))
        try:
            info = await run_in_threadpool(_analyse, path, fps, n_mels)
        except NeuroMVError as e:
            path.unlink(missing_ok=True)
            return error(400, f"{name}: {str(e).split(': ', 1)[-1]}")
        with state.lock:
            state.songs[sid] = {"path": path, "name": name, **{k: info[k] for k in ("duration", "n_frames")}}
        return JSONResponse({"id": sid, "name": name, **info})

    async def cppn(request: Request) -> Response:
        try:
            q = request.query_params
            n_z, hidden, seed = int(q.get("n_z", 32)), int(q.get("hidden", 32)), int(q.get("seed", 0))
            if not (1 <= n_z <= 256 and 1 <= hidden <= 256 and 0 <= seed < 2**63):
                raise ValueError
        except ValueError:
            return error(400, "n_z and hidden must be integers from 1 to 256, seed an integer >= 0")
        return JSONResponse(await run_in_threadpool(cppn_json, n_z, hidden, seed))

    async def start_render(request: Request) -> Response:
        try:
            body = await request.json()
            song = state.songs[body["song"]]
            from .settings import RenderSettings

            settings = RenderSettings.from_dict(body.get("settings", {}))
        except KeyError:
            return error(400, "unknown song: upload it first")
        except (ValueError, TypeError, NeuroMVError) as e:
            return error(400, str(e))
        jid = uuid.uuid4().hex
        job = {"state": "running", "done": 0, "total": 0, "error": None, "cancel": threading.Event(),
               "path": state.workdir / f"video-{jid}.mp4", "name": Path(song["name"]).stem + ".mp4"}
        with state.lock:
            state.jobs[jid] = job
        threading.Thread(target=_render_job, args=(song["path"], settings, job), daemon=True).start()
        return JSONResponse({"job": jid})

    async def job_status(request: Request) -> Response:
        job = state.jobs.get(request.path_params["jid"])
        if job is None:
            return error(404, "no such job")
        out = {k: job[k] for k in ("state", "done", "total", "error")}
        if job["state"] == "done":
            out["url"] = f"/api/files/{request.path_params['jid']}"
        return JSONResponse(out)

    async def cancel_job(request: Request) -> Response:
        job = state.jobs.get(request.path_params["jid"])
        if job is None:
            return error(404, "no such job")
        job["cancel"].set()
        return JSONResponse({"state": job["state"]})

    async def download(request: Request) -> Response:
        job = state.jobs.get(request.path_params["jid"])  # files are found by job id only, never by path
        if job is None or job["state"] != "done":
            return error(404, "no such video")
        return FileResponse(job["path"], media_type="video/mp4", filename=job["name"])

    async def command(request: Request) -> Response:
        try:
            body = await request.json()
            song = state.songs.get(body.get("song"), {}).get("name", "song.mp3")
            return JSONResponse({"command": cli_command(song, body.get("output") or "video.mp4",
                                                        body.get("settings", {}))})
        except (ValueError, TypeError, NeuroMVError) as e:
            return error(400, str(e))

    def cleanup() -> None:
        for job in state.jobs.values():
            job["cancel"].set()
        if own:
            shutil.rmtree(folder, ignore_errors=True)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/assets/{name}", asset),
        Route("/api/songs", upload_song, methods=["POST"]),
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

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.neuromv = state
    return app


def _analyse(path: Path, fps: float, n_mels: int) -> dict:
    """Decode and check a song, and compute its dB mel matrix (what the page needs to compute z)."""
    from .audio import AudioFile
    from .features import song_db

    song = AudioFile(path)
    db = song_db(song.blocks(), song.sr, fps=fps, n_mels=n_mels)
    return {"duration": song.duration, "fps": fps, "n_mels": n_mels, "n_frames": int(db.shape[1]),
            "db": _b64(db)}


def _render_job(song: Path, settings, job: dict) -> None:
    from .pipeline import render

    def progress(stage: str, done: int, total: int) -> None:
        job["stage"], job["done"], job["total"] = stage, done, total

    try:
        render(song, job["path"], settings, image="none", overwrite=True, progress=progress, cancel=job["cancel"])
        job["state"] = "done"
    except NeuroMVError as e:
        job["state"], job["error"] = "error", str(e)
    except Exception as e:  # noqa: BLE001 - reported on the page; the server keeps running
        log.exception("render job failed")
        job["state"], job["error"] = "error", f"render failed: {e}"


def serve(host: str = "127.0.0.1", port: int = 8765, *, max_upload: int = MAX_UPLOAD) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this machine can use the server", host)
    if not 0 < port < 65536:
        raise ParameterError(f"port must be from 1 to 65535, not {port}")
    uvicorn.run(create_app(max_upload=max_upload), host=host, port=port, log_level="warning")
