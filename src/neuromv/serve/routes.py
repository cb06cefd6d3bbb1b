"""The web app: the page (``/``, with :func:`page_config` in it), its assets, and the API's handlers (uploads,
features, CPPNs, prepare and render jobs, their status and files, the matching CLI command), each reading the
:class:`~neuromv.serve.jobs.ServerState` of ``request.app.state``; :func:`create_app` puts them together."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import NeuroMVError, ParameterError
from . import config
from .http import (Refused, SameHostOnly, error_response, exception_handlers, json_body, mb, read_body,
                   server_state)
from .jobs import Job, JobQueue, ServerState, analyse_song, cppn_json, prepare_panels, render_video
from .storage import Item, Storage

log = logging.getLogger(__name__)

#: The page's files (in ``neuromv/web/``) under ``/assets/``, the only ones served besides the page itself (``/``:
#: index.html with :func:`page_config` in it) and rendered videos. The .js files are ES modules (app.js imports the
#: others); capture.js is the live mode's AudioWorklet.
ASSETS = {"app.js": "text/javascript", "api.js": "text/javascript", "colour.js": "text/javascript",
          "gl.js": "text/javascript", "live.js": "text/javascript", "mel.js": "text/javascript",
          "capture.js": "text/javascript", "timeline.js": "text/javascript", "beat.js": "text/javascript",
          "style.css": "text/css"}
#: Where index.html receives :func:`page_config` (as the text of a ``<script type="application/json">``).
_CONFIG_MARK = "/*neuromv-config*/"
_WEB = Path(__file__).resolve().parent.parent / "web"


def cli_command(song: str, output: str, settings: dict, image: str = "none", look: str | None = None) -> str:
    """The ``neuromv render`` command line that renders ``song`` with ``settings`` (only what differs from the
    defaults), from the settings table (:data:`neuromv.settings.SETTINGS`: each row's flag; width and height as
    ``--size``). ``image``: 'none' (abstract), 'auto' (the song's cover art, the CLI's default) or an image file.
    ``look``: a built-in look's name (:data:`neuromv.looks.LOOKS`): ``--look NAME`` and only the options that
    differ from the look (without it when the settings undo what no option can: a palette or a switch it sets)."""
    import shlex

    from ..looks import LOOK_SETTINGS, LOOKS, apply_look
    from ..settings import SETTINGS, RenderSettings, format_size

    s = RenderSettings.from_dict(settings)
    default = base = RenderSettings()
    args = ["neuromv", "render", song, "-o", output]
    if look is not None:
        if look not in LOOKS:
            raise ParameterError(f"unknown look {look[:40]!r}; choose one of {', '.join(LOOKS)}")
        base = apply_look(default, look)
        unsaid = lambda v: v is None or v is False  # noqa: E731 - no option says these
        if any(unsaid(getattr(s, k)) and not unsaid(getattr(base, k)) for k in LOOK_SETTINGS):
            base = default
        elif LOOKS[look]:  # 'default' sets nothing
            args += ["--look", look]
    for row in SETTINGS:
        v = getattr(s, row.name)
        if v == getattr(base, row.name) or row.flag is None:
            continue
        if row.kind is bool:
            if v:
                args.append(row.flag)
            continue
        args += [row.flag, str(v)]
    # --format alone gives its standard size (--size, when given too, must have the format's shape)
    implied = format_size(s.format) if s.format is not None else (default.width, default.height)
    if (s.width, s.height) != implied:
        args += ["--size", f"{s.width}x{s.height}"]
    if image != "auto":
        args += ["--image", image]
    return " ".join(shlex.quote(a) for a in args)

def page_config() -> dict:
    """The constants and choices the page's code (``web/*.js``) uses, read from the Python modules that define them,
    so that the page keeps no copies: the CPPN's gains (:data:`neuromv.settings.Z_GAIN`, ``PULSE_GAIN``), the
    image mode's :data:`neuromv.cppn.FLOOR` and :data:`neuromv.renderer.CENTRE_FRAMES`, the colour matrix's
    :data:`neuromv.renderer.LUMA`, the features' :data:`neuromv.features.ANALYSIS_SR` and ``TOP_DB``, a fitted
    picture's :data:`neuromv.motion.ONSET_BOOST` (and ``CUES_BOOST``, with the structure on), the beat kick's
    :data:`neuromv.structure.KICK` (the live beat tracker draws its kick with them), the built-in looks
    (:data:`neuromv.looks.LOOKS`) and the settings a look holds (``LOOK_SETTINGS``), the default settings (every
    row of the settings table, :data:`neuromv.settings.SETTINGS`) and the choice lists (fit modes, fit qualities,
    motion styles, separators with their stems, layouts, structure: the table's; the named palettes,
    :data:`neuromv.settings.PALETTES`; the quality presets' sizes; each format's size per quality,
    :data:`neuromv.settings.FORMATS`). A JSON object, embedded in the page (``/``)."""
    from .. import cppn, features, looks, motion, renderer, settings, structure

    rows = {row.name: row for row in settings.SETTINGS}
    return {
        "Z_GAIN": settings.Z_GAIN, "PULSE_GAIN": settings.PULSE_GAIN, "FLOOR": cppn.FLOOR,
        "CENTRE_FRAMES": renderer.CENTRE_FRAMES, "LUMA": list(renderer.LUMA),
        "ANALYSIS_SR": features.ANALYSIS_SR, "TOP_DB": features.TOP_DB, "ONSET_BOOST": motion.ONSET_BOOST,
        "CUES_BOOST": motion.CUES_BOOST,
        "KICK": dict(structure.KICK),
        "looks": {name: dict(values) for name, values in looks.LOOKS.items()},
        "LOOK_SETTINGS": list(looks.LOOK_SETTINGS),
        "defaults": {name: row.default for name, row in rows.items()},
        "choices": {"fit": list(rows["fit"].choices), "fit_quality": list(rows["fit_quality"].choices),
                    "motion": list(rows["motion"].choices), "layout": list(rows["layout"].choices),
                    "structure": list(rows["structure"].choices), "palette": list(settings.PALETTES),
                    "separator": {name: list(settings.SEPARATOR_STEMS[name]) for name in rows["separator"].choices},
                    "size": {name: [q["width"], q["height"]] for name, q in settings.QUALITY.items()},
                    "format": {name: {q: list(size) for q, size in sizes.items()}
                               for name, sizes in settings.FORMATS.items()}},
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
        return error_response(404, "not found")
    return FileResponse(_WEB / name, media_type=ASSETS[name])


async def _favicon(request):
    from starlette.responses import Response

    return Response(status_code=204)


async def _receive(request, kind: str, limit: int) -> Item:
    """Store an upload in the work folder under a name of our own, within the storage quota. The item comes
    back pinned; on any failure (too large, too slow, the client gone) nothing is kept."""
    from urllib.parse import unquote

    st = server_state(request)
    name = Path(unquote(request.headers.get("x-filename", kind))).name[:200] or kind
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > min(limit, st.storage.quota):
        # refused before a byte is read; larger than the whole storage: 413 too
        what = f"{name}: too large; the limit is {mb(min(limit, st.storage.quota))}"
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

    st = server_state(request)
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
    from ..errors import ImageError
    from ..image import load_image

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
            if trailing > config.IMAGE_TRAILER + 2 * f.tell():
                raise ImageError(f"{item.name}: {trailing / 2**20:.1f} MB of data after the end of the image; "
                                 f"refused")
        elif im.format == "WEBP":
            f.seek(4)
            declared = int.from_bytes(f.read(4), "little") + 8  # the RIFF chunk's size
            if size - declared > config.IMAGE_TRAILER + 2 * declared:
                raise ImageError(f"{item.name}: {(size - declared) / 2**20:.1f} MB of data after the end of the "
                                 f"image; refused")
    return {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])}


async def _upload_image(request):
    from starlette.responses import JSONResponse

    st = server_state(request)
    item = await _receive_checked(request, "image", st.max_image, _check_image)
    return JSONResponse({"id": item.id, "name": item.name, **item.info})


def _song_query(request) -> tuple[float, int]:
    from ..settings import RenderSettings

    q = request.query_params
    try:
        fps, n_mels = float(q.get("fps", 30)), int(q.get("n_mels", 32))
    except ValueError:
        raise ParameterError("fps and n_mels must be numbers") from None
    RenderSettings(fps=fps, n_mels=n_mels)  # the render's limits
    return fps, n_mels


async def _upload_song(request):
    from starlette.responses import JSONResponse

    st = server_state(request)
    fps, n_mels = _song_query(request)  # checked before the upload is read
    item = await _receive_checked(request, "song", st.max_upload,
                                  lambda item: analyse_song(item, fps, n_mels, st.storage))
    return JSONResponse({"id": item.id, "name": item.name, "features": f"/api/songs/{item.id}/features",
                         **{k: v for k, v in item.info.items() if k != "features"}})


async def _song_features(request):
    """The song's dB mel matrix as little-endian float32 bytes, (n_mels, n_frames) row-major (``X-Shape``)."""
    from starlette.responses import FileResponse

    item = server_state(request).storage.get(request.path_params["sid"], "song")
    info = item.info
    return FileResponse(info["features"], media_type="application/octet-stream",
                        headers={"X-Shape": f"{info['n_mels']},{info['n_frames']}", "X-Dtype": "float32-le",
                                 "Cache-Control": "no-store"})


async def _cppn(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    from ..settings import RenderSettings

    q = request.query_params
    defaults = RenderSettings()
    try:
        n_z, hidden, seed = int(q.get("n_z", 32)), int(q.get("hidden", 32)), int(q.get("seed", 0))
        tone, chroma = float(q.get("tone", defaults.tone)), float(q.get("chroma", defaults.chroma))
    except ValueError:
        raise ParameterError("n_z, hidden and seed must be integers, tone and chroma numbers") from None
    settings = RenderSettings(n_mels=n_z, hidden=hidden, seed=seed, tone=tone, chroma=chroma)  # a render's limits
    return JSONResponse(await run_in_threadpool(cppn_json, settings))


def _job_request(st: ServerState, body: dict, need_song: bool = True):
    """(song item or None, settings, image, the items it uses) of a prepare or render request: image is 'none',
    'auto' or an uploaded image's file, as :func:`neuromv.render` takes it."""
    from ..settings import RenderSettings

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

    st = server_state(request)
    song, settings, image, uses = _job_request(st, await json_body(request, ("song", "image", "settings")),
                                               need_song=False)
    if song is None and (settings.stem_names() or image == "auto"):
        raise ParameterError("stems and the song's cover art need a song: upload it first")
    st.queue.cancel_all("prepare")  # one picture at a time: a newer request replaces the ones under way
    job = st.queue.submit("prepare", prepare_panels, song, settings, image, st, uses=uses)
    return JSONResponse({"job": job.id, "position": st.queue.position(job)})


async def _start_render(request):
    from starlette.responses import JSONResponse

    st = server_state(request)
    song, settings, image, uses = _job_request(st, await json_body(request, ("song", "image", "settings")))
    job = st.queue.submit("render", render_video, song, settings, image, st, uses=uses)
    return JSONResponse({"job": job.id, "position": st.queue.position(job)})


def _job(request) -> Job:
    job = server_state(request).queue.get(request.path_params["jid"])
    if job is None:
        raise Refused(404, "no such job")
    return job


async def _job_status(request):
    from starlette.responses import JSONResponse

    job = _job(request)
    out = {"state": job.state, "stage": job.stage, "done": job.done, "total": job.total, "error": job.error,
           "position": server_state(request).queue.position(job)}
    if job.state == "done":
        if isinstance(job.result, Item):
            out["url"] = f"/api/files/{job.id}"
        else:
            out["result"] = job.result
    return JSONResponse(out)


async def _cancel_job(request):
    from starlette.responses import JSONResponse

    job = _job(request)
    server_state(request).queue.cancel(job)
    return JSONResponse({"state": job.state})


async def _download(request):
    from starlette.responses import FileResponse

    st = server_state(request)
    job = st.queue.get(request.path_params["jid"])  # files are found by job id only, never by path
    if job is None or job.state != "done" or not isinstance(job.result, Item):
        raise Refused(404, "no such video")
    item = st.storage.get(job.result.id, "video")
    return FileResponse(item.paths[0] / "video.mp4", media_type="video/mp4", filename=item.name)


async def _command(request):
    from starlette.responses import JSONResponse

    st = server_state(request)
    body = await json_body(request, ("song", "image", "settings", "output", "look"))
    look = body.get("look")
    if look is not None and not isinstance(look, str):
        raise ParameterError("look must be a string")
    song, image = "song.mp3", body.get("image") or "none"
    with st.storage.lock:
        if body.get("song") in st.storage.items:
            song = st.storage.items[body["song"]].name
        if image not in ("none", "auto"):
            image = st.storage.items[image].name if image in st.storage.items else "image.png"
    return JSONResponse({"command": cli_command(song, body.get("output") or "video.mp4",
                                                body.get("settings", {}), image, look)})


async def _look_file(request):
    """The look file (TOML, :func:`neuromv.looks.look_toml`) of the page's settings: their values of
    :data:`neuromv.looks.LOOK_SETTINGS` that differ from the defaults, named ``name``: ``{"toml", "filename"}``."""
    from starlette.responses import JSONResponse

    from ..looks import look_toml, look_values
    from ..settings import RenderSettings

    body = await json_body(request, ("settings", "name"))
    name = body.get("name") or "look"
    if not isinstance(name, str):
        raise ParameterError("name must be a string")
    text = look_toml(look_values(RenderSettings.from_dict(body.get("settings", {}))), name)
    return JSONResponse({"toml": text, "filename": f"{name}.toml"})


def create_app(*, workdir: str | os.PathLike | None = None, max_upload: int = config.MAX_UPLOAD,
               max_image: int = config.MAX_IMAGE_UPLOAD, max_storage: int = config.MAX_STORAGE, jobs: int = 1,
               hosts: Iterable[str] = config.LOCAL_HOSTS):
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
        Jobs (fits, separations, renders) that run at a time; up to
        :data:`~neuromv.serve.config.MAX_WAITING` more wait.
    hosts : iterable of str
        The host names it answers to (the Host header): see :func:`~neuromv.serve.http.allowed_hosts` ('ip': any
        IP address). Requests another site's page sent are refused whatever ``hosts``.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
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
        Route("/api/look", _look_file, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        state.queue.close()
        if own:
            shutil.rmtree(folder, ignore_errors=True)

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SameHostOnly, hosts=tuple(hosts))],
                    exception_handlers=exception_handlers())
    app.state.neuromv = state
    return app
