"""The server's jobs: the :class:`Job` table (:class:`JobQueue`, at most ``workers`` at a time, a short queue),
the :class:`ServerState` every route reads, and the work the jobs and uploads do: :func:`analyse_song` (a song's
features), :func:`prepare_panels` (what the page needs to play a picture), :func:`render_video` (the final video,
with the offline pipeline), and a CPPN's weights as the page takes them (:func:`net_json`)."""

from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Interrupted, NeuroMVError, ParameterError
from . import config
from .http import Refused
from .storage import Item, Storage, du

log = logging.getLogger(__name__)


def _b64(a: np.ndarray) -> str:
    """float32 array -> base64 of its little-endian bytes (the page reads it as a Float32Array)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def net_json(net, settings=None) -> dict:
    """A network's weights as the page's shaders take them (``kind``: 'abstract', 'image' or 'picture').

    A CPPN: per layer ``w`` [shape=(out, in)] and ``b`` [shape=(out,)], base64 float32; an image-mode (format-1)
    CPPN also has ``pulse`` [shape=(n_z, 3, hidden)]. Layer 0's inputs are (x, y, r, z...) for an abstract CPPN,
    (x, y, r) for an image one.

    A fitted picture (:class:`neuromv.picture.PictureNet`, :func:`_picture_json`) needs ``settings`` (its motion
    is that of ``settings.n_mels``, ``seed`` and ``motion``)."""
    from ..plan import is_picture

    if is_picture(net):
        if settings is None:
            raise ParameterError("a fitted picture's page data needs the settings of its motion")
        return _picture_json(net, settings)
    layers = [{"out": int(l.weight.shape[0]), "in": int(l.weight.shape[1]),
               "w": _b64(l.weight.detach().numpy()), "b": _b64(l.bias.detach().numpy())} for l in net.layers]
    out = {"kind": "image" if net.image else "abstract", "n_z": net.n_z, "hidden": net.hidden, "seed": net.seed,
           "image": net.image, "layers": layers}
    if net.image:
        out["pulse"] = _b64(net.pulse.detach().numpy())
    return out


def _picture_json(net, settings) -> dict:
    """:func:`net_json` of a :class:`~neuromv.picture.PictureNet`: everything the page's picture pass and motion
    shader need (web/gl.js), base64 float32 arrays:

    - ``grids``: per level, coarsest first, ``{rows, cols, data}`` with data [shape=(features, rows, cols)];
    - ``layers``: the MLP, per layer ``{out, in, w [shape=(out, in)], b}`` (inputs: every level's features,
      then x and y; ReLU between layers, a sigmoid at the end);
    - ``aspect`` (width / height of the frame the grids cover), ``levels``, ``features``;
    - ``motion``: per style of :data:`neuromv.settings.MOTIONS`, :meth:`neuromv.motion.Motion.matrix`
      [shape=(7, n_z)] of the settings' n_mels and seed (the page switches styles without a round trip), and
      ``style``, the settings' own;
    - ``maps``: :func:`neuromv.motion.structure_maps` [shape=(7, maps_height, maps_width)] of the picture at
      :func:`~neuromv.motion.structure_size`.

    Size: 4 bytes per grid value (``features`` x cells, over all levels: about 2.7 M values for a 1280x720 fit at
    'standard', 11 MB, 14 MB in base64) plus the maps (7 x 64 x 114 at 16:9: 0.2 MB).
    """
    from ..motion import MOTIONS, Motion, picture_maps, structure_size

    grids = []
    for g in net.grids:
        _, _, rows, cols = g.shape
        grids.append({"rows": int(rows), "cols": int(cols), "data": _b64(g.detach().numpy()[0])})
    layers = [{"out": int(l.weight.shape[0]), "in": int(l.weight.shape[1]),
               "w": _b64(l.weight.detach().numpy()), "b": _b64(l.bias.detach().numpy())} for l in net.mlp]
    sw, sh = structure_size(net.aspect)
    maps = picture_maps(net)
    motion = {style: _b64(Motion.of(settings.n_mels, settings.seed, style).matrix()) for style in MOTIONS}
    return {"kind": "picture", "image": True, "n_z": int(settings.n_mels), "seed": int(settings.seed),
            "aspect": float(net.aspect), "levels": int(net.levels), "features": int(net.features),
            "grids": grids, "layers": layers, "motion": motion, "style": settings.motion,
            "maps": _b64(maps), "maps_width": int(sw), "maps_height": int(sh)}


def cppn_json(settings) -> dict:
    """:func:`net_json` of the abstract CPPN of ``settings`` (:func:`neuromv.plan.abstract_cppn`: n_mels, hidden,
    seed, tone, chroma)."""
    from ..plan import abstract_cppn

    return net_json(abstract_cppn(settings))


def palette_json(palette, net, settings) -> dict | None:
    """A panel's palette as the page's shaders apply it (web/gl.js), or None (the network's own colours):
    ``name``, ``row`` (4 floats: position = row[:3] . c + row[3]) and ``table`` (base64 float32
    [shape=(PALETTE_SIZE, 3)], colours in [0, 1]) of :func:`neuromv.renderer.palette_map` of ``palette`` (a
    :class:`~neuromv.palette.Palette`, :attr:`neuromv.plan.Plan.palette`) for ``net`` with the view and colour
    map of ``settings``, the levels the render measures (as :func:`neuromv.plan.build_renderer` passes them)."""
    if palette is None:
        return None
    from ..plan import is_picture
    from ..renderer import color_matrix, palette_map

    extra = {}
    if is_picture(net):
        from ..motion import Motion

        extra["motion"] = Motion.of(settings.n_mels, settings.seed, settings.motion)
    pm = palette_map(palette, net, settings.width, settings.height, scale=settings.zoom,
                     pan=(settings.pan_x, settings.pan_y),
                     color=color_matrix(settings.hue, settings.saturation, settings.brightness, settings.contrast),
                     **extra)
    return {"name": palette.name, "row": [float(v) for v in pm.row], "table": _b64(pm.table)}


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
            if len(self.waiting) >= config.MAX_WAITING:
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
        drop = finished[:-config.MAX_FINISHED] + prepares[:-config.MAX_FINISHED_PREPARE]
        for job in drop:
            if self.jobs.pop(job.id, None) is not None and isinstance(job.result, Item):
                self.storage.remove(job.result)


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


def analyse_song(item: Item, fps: float, n_mels: int, storage: Storage) -> dict:
    """Decode and check an uploaded song, and store its dB mel matrix (what the page needs to compute z) as
    little-endian float32 beside it, and its cues (:func:`neuromv.analysis.analyze`: beats, bars, sections, drops;
    :meth:`neuromv.cues.Cues.to_json` in ``info['cues']``, which the upload's answer carries to the page's timeline,
    and beside the song as JSON). A matrix over :data:`MAX_FEATURES` values is refused before it is computed."""
    import json

    from ..analysis import analyze
    from ..audio import AudioFile
    from ..features import n_video_frames, song_db
    from ..image import find_cover_art

    path = item.paths[0]
    song = AudioFile(path)
    n_frames = n_video_frames(song.n_samples, song.sr, fps)
    if n_frames * n_mels > config.MAX_FEATURES:
        raise Refused(413, f"{item.name}: {n_frames} frames x {n_mels} bands is more features than the server sends "
                           f"({config.MAX_FEATURES:,}); choose a lower fps or fewer bands, or a shorter excerpt")
    db = song_db(song.blocks(), song.sr, fps=fps, n_mels=n_mels)
    features = path.with_name(path.stem + ".f32")
    item.paths.append(features)
    storage.reserve(item, db.nbytes)
    features.write_bytes(np.ascontiguousarray(db, dtype="<f4").tobytes())
    cues = analyze(song).to_json()
    text = json.dumps(cues)
    cues_path = path.with_name(path.stem + ".cues.json")
    item.paths.append(cues_path)
    storage.reserve(item, len(text))
    cues_path.write_text(text, encoding="utf-8")
    return {"duration": song.duration, "fps": fps, "n_mels": n_mels, "n_frames": int(db.shape[1]),
            "cover": find_cover_art(path) is not None, "features": features, "cues": cues}


def controls_json(controls) -> dict | None:
    """A panel's :class:`neuromv.structure.Controls` as the page takes them (None: structure off): ``n_frames``,
    ``n_z`` and, base64 float32 like the features, ``z_scale``, ``zoom``, ``hue`` (degrees), ``saturation``,
    ``brightness`` [shape=(n_frames,)] and ``z_add`` [shape=(n_frames, n_z)] (web/timeline.js controlsAt)."""
    if controls is None:
        return None
    n, n_z = controls.z_add.shape
    return {"n_frames": int(n), "n_z": int(n_z), **{k: _b64(a) for k, a in controls.arrays().items()}}


def _check_controls_size(song: Item, settings) -> None:
    """:class:`Refused` 413 when the panels' controls (n_frames x (n_z + 5) values each) would be more than the
    features the server sends (:data:`MAX_FEATURES` per panel), before they are computed."""
    from ..structure import Controls

    per_frame = settings.n_mels + len(Controls.FIELDS) - 1  # z_add holds n_z values a frame, the others one
    if song.info["n_frames"] * per_frame > config.MAX_FEATURES:
        raise Refused(413, f"{song.name}: {song.info['n_frames']} frames x {per_frame} controls is more "
                           f"than the server sends ({config.MAX_FEATURES:,}); choose a lower fps or fewer bands, or "
                           f"turn the structure off")


def prepare_panels(job: Job, song: Item | None, settings, image: str | Path, st: ServerState) -> dict:
    """What the page needs to play ``settings`` with ``image`` ('none', 'auto' or a file): per panel (one, or one
    per stem) its place in the frame (fractions), the CPPN's weights (fitted to the image, if any), the dB mel
    matrix of its audio (None: the song's own, which the page has) and, with a song and ``settings.structure`` on,
    its per-frame controls (:func:`controls_json` of :func:`neuromv.structure.controls_for` with the song's cues:
    each stem its own) and its palette (:func:`palette_json`; None without one). The panels are the render's own
    (:func:`neuromv.plan.make_plan`)."""
    from ..audio import AudioFile
    from ..features import song_db
    from ..plan import kind_of, latents_for, make_plan, panel_controls

    plan = make_plan(None if song is None else song.paths[0], settings, image=image,
                     cache_root=None if song is None else _stem_root(song, st))
    plan.find_cover()
    stems = {}
    if plan.stems:
        audio = AudioFile(song.paths[0], start=settings.start, duration=settings.duration).load()
        if song.info["n_frames"] * song.info["n_mels"] * len(plan.stems) > 4 * config.MAX_FEATURES:
            raise Refused(413, f"{song.name}: too many features for stems at this fps and number of bands")
        stems = _stems(job, song, audio, plan, st)
    panels = plan.layout()
    cues = None
    if song is not None and settings.structure != "off":
        from ..cues import Cues

        _check_controls_size(song, settings)
        cues = Cues.from_json(song.info["cues"], song.name)
    out = []
    for p in panels:
        net = plan.network(p, progress=job.progress, cancel=job.cancel)
        db = None
        if p.name is not None:
            a = stems[p.name]
            db = _b64(song_db(a.blocks(), a.sr, fps=settings.fps, n_mels=settings.n_mels))
        page = net_json(net, p.settings)
        controls = None
        if cues is not None:
            source = stems[p.name] if p.name is not None else None
            # the latents of the frames the page plays (the whole song's), for the controls' fit to the picture
            z = latents_for(source if source is not None else AudioFile(song.paths[0]), p.settings,
                            image=kind_of(net))[:song.info["n_frames"]]
            controls = controls_json(panel_controls(cues, z, p, net, source, palette=plan.palette,
                                                    progress=job.progress, cancel=job.cancel))
        x, y, w, h = p.box
        out.append({"name": p.name, "box": [x / settings.width, y / settings.height, w / settings.width,
                                            h / settings.height], "net": page, "db": db, "controls": controls,
                    "palette": palette_json(plan.palette, net, p.settings)})
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


def render_video(job: Job, song: Item, settings, image: str | Path, st: ServerState) -> Item:
    """Render ``song`` into a new video item; stems come from (or go to) the song's folder in the work folder
    (:func:`_stem_root`), as the preview's do."""
    from ..audio import AudioFile
    from ..pipeline import render

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

