"""The pipeline: song -> features -> CPPN frames -> video file. The public entry point is :func:`render`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .audio import Audio, check_audible, load_audio
from .errors import AudioError, Interrupted, ParameterError
from .settings import RenderSettings

__all__ = ["render", "RenderResult", "ProgressCallback", "latents_for", "build_renderer"]

log = logging.getLogger(__name__)

#: Called as ``callback(stage, done, total)``; ``stage`` is e.g. ``'render'``; ``total`` may be None.
ProgressCallback = Callable[[str, int, "int | None"], None]


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
        The settings used (size rounded to even).
    """

    path: Path
    frames: int
    duration: float
    seconds: float
    settings: RenderSettings


class _Progress:
    """One stage's progress: a tqdm bar for people and/or a callback for programs."""

    def __init__(self, stage: str, total: int | None, progress: bool | ProgressCallback, unit: str = "frame"):
        self.stage, self.total, self.done = stage, total, 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=stage, unit=unit, dynamic_ncols=True, leave=False)
        if self._callback:
            self._callback(stage, 0, total)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._callback:
            self._callback(self.stage, self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def latents_for(audio: Audio, settings: RenderSettings) -> np.ndarray:
    """What the CPPN sees per frame, ``Z_GAIN * reactivity * z``: np.ndarray [shape=(n_frames, n_mels), dtype=float32]."""
    from .features import song_latents
    from .settings import Z_GAIN

    z = song_latents(audio.mono(), audio.sr, fps=settings.fps, n_mels=settings.n_mels, smooth=settings.smooth)
    return z * np.float32(Z_GAIN * settings.reactivity)


def build_renderer(settings: RenderSettings, width: int | None = None, height: int | None = None):
    """The CPPN of ``settings`` and its :class:`~neuromv.renderer.Renderer` at the given (or the settings') size."""
    from .cppn import CPPN
    from .renderer import Renderer

    cppn = CPPN(settings.n_mels, settings.hidden, seed=settings.seed)
    return Renderer(cppn, width or settings.width, height or settings.height, device=settings.device,
                    scale=settings.zoom)


def _excerpt(audio: Audio, start: float, duration: float | None) -> Audio:
    a = int(round(start * audio.sr))
    b = audio.n_samples if duration is None else min(audio.n_samples, a + int(round(duration * audio.sr)))
    if a >= audio.n_samples:
        raise AudioError(f"audio: no audio after start={start:g} s (it lasts {audio.duration:.2f} s)")
    return Audio(np.ascontiguousarray(audio.samples[:, a:b]), audio.sr)


def render(
    song: str | os.PathLike | Audio,
    output: str | os.PathLike,
    settings: RenderSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool | ProgressCallback = False,
    cancel: threading.Event | None = None,
    **options,
) -> RenderResult:
    """Render a song into an audio-reactive CPPN music video.

    Parameters
    ----------
    song : str, os.PathLike or Audio
        An audio file (wav, mp3, flac, ogg, opus, m4a, ...) or decoded :class:`~neuromv.audio.Audio`.
    output : str or os.PathLike
        The video file to write (.mp4, .m4v, .mov or .mkv). It appears only when complete.
    settings : RenderSettings, optional
        Base settings; defaults if omitted.
    overwrite : bool
        Replace ``output`` if it exists (never an input).
    progress : bool or callable
        True: a progress bar (tqdm) per stage. A callable is called as ``callback(stage, done, total)``.
    cancel : threading.Event, optional
        Checked between stages and between frames: once set, the render stops, deletes its partial output and
        raises :class:`~neuromv.errors.Interrupted`.
    **options
        Any :class:`RenderSettings` field, overriding ``settings`` (e.g. ``fps=24, width=640, height=360``).

    Returns
    -------
    RenderResult

    Raises
    ------
    ParameterError, AudioError, OutputError, Interrupted
        Impossible options, unusable audio, an output that cannot be written, or cancelled. No file is left
        behind.

    Examples
    --------
    >>> import neuromv
    >>> neuromv.render("song.mp3", "video.mp4", width=640, height=360, seed=7)  # doctest: +SKIP
    """
    from .renderer import resolve_device
    from .video import VideoWriter, check_output_path

    t0 = time.perf_counter()
    if "size" in options:
        size = options.pop("size")
        options["width"], options["height"] = _size_tuple(size)
    try:
        settings = replace(settings or RenderSettings(), **options)
    except TypeError as e:  # unknown keyword
        raise ParameterError(str(e).replace("__init__() ", "")) from e
    width, height = settings.even_size()
    if (width, height) != settings.size:
        log.warning("size %dx%d rounded up to %dx%d (H.264 needs even sizes)", *settings.size, width, height)
        settings = replace(settings, width=width, height=height)

    is_path = not isinstance(song, Audio)
    inputs = (song,) if is_path else ()
    check_output_path(output, inputs=inputs, overwrite=overwrite)  # fail before any slow work
    resolve_device(settings.device)

    if is_path:
        audio = load_audio(song, start=settings.start, duration=settings.duration)
        name = str(song)
    else:
        audio = _excerpt(song, settings.start, settings.duration)
        name = "audio"
    _check_cancel(cancel)
    check_audible(audio, name=name)
    log.info("audio: %s, %.2f s, %d Hz, %d channel(s)", name, audio.duration, audio.sr, audio.channels)

    z = latents_for(audio, settings)
    n_frames = z.shape[0]
    log.info("features: %d frames x %d mel bands at %g fps", n_frames, settings.n_mels, settings.fps)

    _check_cancel(cancel)
    renderer = build_renderer(settings)
    log.info("rendering %dx%d on %s (%s)", width, height, renderer.device, renderer.method)
    with VideoWriter(output, width, height, settings.fps, audio=audio, crf=settings.crf, preset=settings.preset,
                     overwrite=overwrite, inputs=inputs) as writer:
        with _Progress("render", n_frames, progress) as bar:
            for i in range(n_frames):
                _check_cancel(cancel)
                writer.write(renderer.render(z[i]))
                bar.update()
    seconds = time.perf_counter() - t0
    log.info("wrote %s: %d frames (%.2f s) in %.1f s, %.1f frames/s", writer.path, n_frames, audio.duration,
             seconds, n_frames / seconds)
    return RenderResult(writer.path, n_frames, audio.duration, seconds, settings)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Interrupted("interrupted; no output written")


def _size_tuple(size) -> tuple[int, int]:
    from .settings import parse_size

    if isinstance(size, str):
        return parse_size(size)
    try:
        w, h = size
    except (TypeError, ValueError) as e:
        raise ParameterError(f"size must be (width, height) or 'WxH', not {size!r}") from e
    return w, h

