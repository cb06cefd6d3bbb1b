"""The pipeline: song -> features -> CPPN frames -> video file. The public entry point is :func:`render`.

:func:`render` reads as check (the settings) -> plan (:func:`neuromv.plan.make_plan`: image, model, device,
CPPNs, latents) -> frames (one renderer, or the stems' panels composed by :func:`neuromv.stems.stem_frames`) ->
encode (:func:`_encode`). What moved to :mod:`neuromv.plan` and :mod:`neuromv.stems` is re-exported here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .animated import check_animated, is_animated
from .audio import Audio, AudioFile, check_audible
from .errors import AudioError, Interrupted, NeuroMVError, ParameterError
from .plan import Plan, build_renderer, cppn_for, fit_for, latents_for, make_plan, reference_target, resolve_image
from .progress import Progress, ProgressCallback, check_cancel
from .settings import RenderSettings
from .stems import panel_boxes, separate_song, stem_audio, stem_frames, stem_panels

__all__ = ["render", "RenderResult", "ProgressCallback", "latents_for", "build_renderer", "fit_for",
           "reference_target", "separate_song", "stem_panels", "stem_audio", "panel_boxes", "cppn_for",
           "resolve_image"]

log = logging.getLogger(__name__)

#: Longest render (seconds) whose log gets the sync line: the song's onset strength needs it whole, at 22050 Hz
#: mono (80 MB for 15 minutes).
SYNC_LOG_SECONDS = 900

@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` made.

    Attributes
    ----------
    path : Path
        The video file.
    frames : int
        Number of video frames, ``ceil(duration * fps)``.
    duration : float
        Length of the audio in seconds.
    seconds : float
        Wall time of the whole render.
    settings : RenderSettings
        The settings used (size rounded to even; n_mels and hidden from the model, when one was given).
    image : str or None
        Where the reference image came from (a file, embedded cover art, a model file); None: abstract.
    sync : SyncReport or None
        How closely the frames follow the song (:func:`neuromv.sync.measure_sync`, logged as the render's sync
        line); None for renders over :data:`SYNC_LOG_SECONDS` and segmented renders.
    parts : dict or None
        A segmented render's measured parts (:func:`neuromv.segments.render_segments`); None otherwise.
    """

    path: Path
    frames: int
    duration: float
    seconds: float
    settings: RenderSettings
    image: str | None = None
    sync: Any = None
    parts: dict | None = None


def render(
    song: str | os.PathLike | Audio,
    output: str | os.PathLike,
    settings: RenderSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool | ProgressCallback = False,
    cancel: threading.Event | None = None,
    image=None,
    model: str | os.PathLike | None = None,
    cache: bool = True,
    cache_root: str | os.PathLike | None = None,
    cues=None,
    ray: str | None = None,
    segments: int | str | None = None,
    **options,
) -> RenderResult:
    """Render a song into an audio-reactive CPPN music video.

    Parameters
    ----------
    song : str, os.PathLike or Audio
        An audio file (wav, mp3, flac, ogg, opus, m4a, ...) or decoded :class:`~neuromv.audio.Audio`. A file is
        read block by block (:class:`~neuromv.audio.AudioFile`), so memory does not grow with its length (except
        with ``stems``, which separate the whole song in memory).
    output : str or os.PathLike
        The video file to write (.mp4, .m4v, .mov or .mkv; .webp or .gif: an animated WebP or GIF,
        :mod:`neuromv.animated`). It appears only when complete.
    settings : RenderSettings, optional
        Base settings; defaults if omitted.
    overwrite : bool
        Replace ``output`` if it exists (never an input).
    progress : bool or callable
        True: a progress bar (tqdm) per stage. A callable is called as ``callback(stage, done, total)``.
    cancel : threading.Event, optional
        Checked between stages and between frames: once set, the render stops, deletes its partial output and
        raises :class:`~neuromv.errors.Interrupted`.
    image : path, np.ndarray, ImageSource, 'auto', 'none' or False, optional
        Reference image. None or 'auto' (default): the song's cover art (embedded, or ``cover.*``/``folder.*``
        beside it) if it has one. 'none' or False: abstract. The CPPN is fitted to it (cached).
    model : path, optional
        A model saved by ``neuromv fit`` / :func:`neuromv.reference.save_model`; replaces ``image``.
    cache : bool
        Reuse (and store) reference-image fits and separated stems in the user's cache folder.
    cache_root : path, optional
        The folder for the stems' cache instead of :func:`neuromv.cache.cache_dir` (the server's work folder).
    cues : path or Cues, optional
        The song's structure (``neuromv analyze``'s JSON, :mod:`neuromv.cues`), which drives the picture with the
        ``structure`` setting 'on' (default). None: the song is analysed (:mod:`neuromv.analysis`; cached like a
        fit when ``cache``).
    ray : str, optional
        Render on a Ray cluster in segments (:mod:`neuromv.segments`, docs/cluster.md): ``'local'`` (a Ray
        instance started for this render) or a cluster's address ``HOST:PORT``. Needs the ``cluster`` extra. One
        picture, to a video file (not with stems, a loop or an animation).
    segments : int or 'auto', optional
        With ``ray``: how many segments (default 'auto': one per CPU of the cluster), each of whole groups of
        pictures (the ``gop`` setting), at most one per GOP. Without ``ray``: refused.
    **options
        Any :class:`RenderSettings` field, overriding ``settings`` (e.g. ``fps=24, width=640, height=360``).
        ``separator`` may also be a loaded :class:`~neuromv.separate.Separator`, reused across renders.
        ``quality='draft'|'standard'|'high'`` sets size, x264 preset and crf (:data:`neuromv.settings.QUALITY`)
        before the other options apply. ``look=`` a built-in look's name, a look file (.toml) or a dict of
        :func:`neuromv.looks.load_look`'s sets its settings (:mod:`neuromv.looks`) over ``settings``, before the
        other options apply.

    Returns
    -------
    RenderResult

    Raises
    ------
    ParameterError, AudioError, ImageError, ModelError, OutputError, Interrupted
        Impossible options, unusable audio, image or model, an output that cannot be written, or cancelled. No
        file is left behind.

    Examples
    --------
    >>> import neuromv
    >>> neuromv.render("song.mp3", "video.mp4", width=640, height=360, seed=7)  # doctest: +SKIP
    >>> neuromv.render("song.mp3", "video.mp4", look="ember", seed=3)  # the look, then seed 3  # doctest: +SKIP
    """
    from .limits import check_memory
    from .renderer.threads import blas_one_thread

    t0 = time.perf_counter()
    with blas_one_thread():  # numpy's idle BLAS workers would spin on the cores the render uses
        settings, separator = _settings(settings, options)
        if ray is not None or segments is not None:  # checked before any slow work, the cluster's address included
            from .segments import check_segmented_render

            segments = check_segmented_render(ray, segments, settings, output)
        plan = make_plan(song, settings, image=image, model=model, cache=cache, cache_root=cache_root,
                         separator=separator, output=output, overwrite=overwrite, cues=cues)
        window = _plan_loop(plan, progress, cancel) if plan.settings.loop is not None else None
        audio = _open_audio(song, plan, cancel)
        animated = is_animated(output)
        if animated:  # refused before the slow work: too long, or too many frames to hold
            check_animated(output, window.frames if window else int(np.ceil(audio.duration * plan.settings.fps)),
                           plan.settings.fps, plan.settings.width, plan.settings.height)
        plan.find_cover()  # the cover art, once the song is good
        # logs what the size costs, and refuses a render that cannot fit in memory before the fits and the features
        check_memory(plan.settings, duration=audio.duration, image=plan.has_image)
        panels = plan.panels(audio, progress=progress, cancel=cancel)
        if ray is not None:  # frame ranges rendered and encoded on the cluster's workers, joined here
            from .segments import render_segments

            return render_segments(panels[0], audio, output, plan, ray=ray, segments=segments, overwrite=overwrite,
                                   progress=progress, cancel=cancel, t0=t0)
        if plan.stems:
            frames, where = stem_frames(panels, plan.settings), "stems: " + ", ".join(plan.stems)
        else:
            r = panels[0].renderer
            log.info("rendering %dx%d on %s (%s%s)", r.width, r.height, r.device, r.method,
                     f", {r.isa}, {r.precision}" if r.isa else "")
            # I420 frames go to the encoder without a colour conversion; on a GPU, frames come in double-buffered
            # batches
            frames, where = panels[0].frames(yuv420=r.yuv420 and not animated), plan.where
        n_frames = panels[0].z.shape[0]
        if window is not None:  # the song under the loop's frames: without the lead-in and the frame that closed it
            fps = plan.settings.fps
            audio = _trim(audio, plan.loop_lead / fps, n_frames / fps)
            start = plan.settings.start + plan.loop_lead / fps  # the excerpt's, and the frames before the loop's first
            plan.settings = replace(plan.settings, start=round(start, 6), duration=n_frames / fps)
        return _encode(frames, n_frames, audio, output, plan, overwrite=overwrite, progress=progress,
                       cancel=cancel, t0=t0, where=where)


def _plan_loop(plan: Plan, progress, cancel):
    """Choose a loop's stretch of the song (:func:`neuromv.loop.choose_window`, from the song's cues: analysed, or
    given) and set the plan's start and duration to it (its N frames and the one after them, which closes the
    path); log the choice. A ``start`` other than 0 is the user's choice and is kept."""
    from .loop import choose_window, lead_frames

    s = plan.settings
    if s.duration is not None:
        raise ParameterError("give --loop or --duration, not both (a loop lasts --loop seconds)")
    source = plan.audio if plan.song is None else AudioFile(plan.song)
    cues, _ = plan.song_cues(source, progress=progress, cancel=cancel)
    window = choose_window(cues, s.loop, s.fps, start=s.start if s.start > 0 else None)
    log.info("loop: %d frames (%.2f s) from %.2f s, %s", window.frames, window.frames / s.fps, window.start,
             window.reason)
    plan.loop_lead = lead = lead_frames(window.start, s.fps, s.smooth)
    plan.loop_choices = window.choices
    plan.settings = replace(s, start=window.start - lead / s.fps, duration=window.seconds(s.fps) + lead / s.fps)
    return window


def _trim(audio: Audio | AudioFile, offset: float, seconds: float) -> Audio | AudioFile:
    """``seconds`` of an excerpt from ``offset`` seconds into it (an AudioFile is opened again, still read block by
    block)."""
    if isinstance(audio, AudioFile):
        o = audio.options
        return AudioFile(audio.path, sr=o["sr"], mono=o["mono"], start=o["start"] + offset, duration=seconds)
    return _excerpt(audio, offset, seconds)


def _settings(base: RenderSettings | None, options: dict):
    """(settings, loaded separator or None) of :func:`render`'s ``settings`` and ``**options``: the quality preset
    first, then the options; the size rounded up to even."""
    from .separate import Separator

    separator = options.get("separator")
    if isinstance(separator, Separator):  # a separator already loaded, reused across songs
        options["separator"] = separator.name
    else:
        separator = None
    base = base or RenderSettings()
    if options.get("look") is not None:  # the look's values first; the other options override them
        from .looks import apply_look

        base = apply_look(base, options.pop("look"))
    options.pop("look", None)
    if "quality" in options:  # the preset first; the other options override it
        from .settings import with_quality

        base = with_quality(base, options.pop("quality"))
    if "size" in options:
        options["width"], options["height"] = _size_tuple(options.pop("size"))
    try:
        settings = replace(base, **options)
    except TypeError as e:  # unknown keyword
        raise ParameterError(str(e).replace("__init__() ", "")) from e
    width, height = settings.even_size()
    if (width, height) != settings.size:
        log.warning("size %dx%d rounded up to %dx%d (H.264 needs even sizes)", *settings.size, width, height)
        settings = replace(settings, width=width, height=height)
    return settings, separator


def _open_audio(song, plan: Plan, cancel: threading.Event | None) -> Audio | AudioFile:
    """The song's excerpt, checked: a file is read block by block (twice: features, then the mux), never held
    whole, except with stems (separation works on the whole song, docs/separation.md)."""
    s = plan.settings
    if isinstance(song, Audio):
        audio = _excerpt(song, s.start, s.duration)
        name = "audio"
        check_audible(audio, name=name)
    else:
        audio = AudioFile(song, start=s.start, duration=s.duration)
        name = str(song)
        if plan.stems:
            audio = audio.load()
    check_cancel(cancel)
    log.info("audio: %s, %.2f s, %d Hz, %d channel(s)", name, audio.duration, audio.sr, audio.channels)
    return audio


def _encode(frames: Iterator[np.ndarray], n_frames: int, audio, output, plan: Plan, *, overwrite: bool,
            progress, cancel, t0: float, where: str | None) -> RenderResult:
    """Stream ``frames`` (an iterator of uint8 RGB (h, w, 3) or I420 (h * 3 // 2, w)) into the video file with the
    song's audio."""
    from .animated import AnimatedWriter
    from .sync import MotionEnvelope
    from .video import VideoWriter

    s = plan.settings
    envelope = MotionEnvelope()  # the video's motion, for the sync line (well under 1 ms a frame)
    if is_animated(output):  # animated WebP or GIF: no sound track
        writer = AnimatedWriter(output, s.width, s.height, s.fps, overwrite=overwrite, inputs=plan.inputs)
    else:
        writer = VideoWriter(output, s.width, s.height, s.fps, audio=audio if s.audio == "on" else None, crf=s.crf,
                             preset=s.preset, codec=s.codec, overwrite=overwrite, inputs=plan.inputs, gop=s.gop)
    if s.audio == "off":
        log.info("audio: off (a silent video)")
    with writer:
        with Progress("render", n_frames, progress) as bar:
            for _ in range(n_frames):
                check_cancel(cancel)
                frame = next(frames)
                envelope.add(frame)
                writer.write(frame)
                bar.update()
        check_cancel(cancel)
        writer.end()  # the encoder's flush and the audio's rest meanwhile
        try:
            report = _log_sync(envelope, audio, plan)
        except Interrupted:
            raise
        except NeuroMVError as e:  # a measurement never costs the video
            log.warning("sync: not measured (%s)", e)
            report = None
    seconds = time.perf_counter() - t0
    # debug: the command line says "wrote" itself, once it treats the run as done (a late signal is then ignored)
    log.debug("wrote %s: %d frames (%.2f s) in %.1f s, %.1f frames/s", writer.path, n_frames, audio.duration,
              seconds, n_frames / seconds)
    return RenderResult(writer.path, n_frames, audio.duration, seconds, s, where, report)


def _log_sync(envelope, audio: Audio | AudioFile, plan: Plan):
    """Log how closely the frames follow the song (:func:`neuromv.sync.measure_sync`: what ``neuromv sync`` says
    of the finished video, measured on the frames before encoding). The song's onset strength needs its samples at
    the analysis rate (4 bytes a sample): songs over :data:`SYNC_LOG_SECONDS` skip the line."""
    from .features import ANALYSIS_SR
    from .metrics import onset_strength
    from .sync import measure_sync, song_beats

    if audio.duration > SYNC_LOG_SECONDS:
        log.info("sync: not measured during renders of over %d minutes (run 'neuromv sync' on the video)",
                 SYNC_LOG_SECONDS // 60)
        return None
    s = plan.settings
    if isinstance(audio, AudioFile):
        o = audio.options
        mono = AudioFile(audio.path, sr=ANALYSIS_SR, mono=True, start=o["start"], duration=o["duration"]).load()
    else:
        mono = audio
    onset = onset_strength(mono.mono(), mono.sr, len(envelope.envelope), fps=s.fps)
    if plan.cues is not None:  # the beats the kicks were placed on, in the excerpt's time
        start = float(s.start) if (plan.song is not None or plan.audio is not None) else 0.0
        beats = np.asarray(plan.cues.beats) - start
        beats = beats[(beats >= 0) & (beats <= audio.duration)]
    else:
        beats = song_beats(mono)
    report = measure_sync(envelope.envelope, onset, beats, s.fps)
    log.info("%s", report)
    return report


def _excerpt(audio: Audio, start: float, duration: float | None) -> Audio:
    a = int(round(start * audio.sr))
    b = audio.n_samples if duration is None else min(audio.n_samples, a + int(round(duration * audio.sr)))
    if a >= audio.n_samples:
        raise AudioError(f"audio: no audio after start={start:g} s (it lasts {audio.duration:.2f} s)")
    return Audio(np.ascontiguousarray(audio.samples[:, a:b]), audio.sr)


def _size_tuple(size) -> tuple[int, int]:
    from .settings import parse_size

    if isinstance(size, str):
        return parse_size(size)
    try:
        w, h = size
    except (TypeError, ValueError) as e:
        raise ParameterError(f"size must be (width, height) or 'WxH', not {size!r}") from e
    return w, h
