"""The plan of a render: everything resolved before the frames are made.

:func:`make_plan` checks the arguments and loads what can fail fast (the output check, the device, a model, the
reference image(s), the separator's availability); :class:`Plan` then resolves, once the audio is known to be
good, the song's cover art, the CPPN of each panel (fitted to its image, cached) and the latents it sees
(:meth:`Plan.panels`). :func:`neuromv.pipeline.render` and the live-preview server (:mod:`neuromv.serve`) both
work from a plan.

The one place that reads an image argument is :func:`image_choice`: ``None``/``'auto'`` -> ``'auto'`` (the song's
cover art), ``False``/``'none'`` -> ``'none'`` (abstract), anything else is an image source.

Imports: settings, audio, image, cppn, reference, renderer, stems, separate, video (on use).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .audio import Audio, AudioFile
from .errors import ParameterError
from .progress import ProgressCallback, check_cancel
from .settings import RenderSettings, parse_palette

__all__ = ["Plan", "Panel", "make_plan", "image_choice", "resolve_image", "model_for", "cppn_for", "abstract_cppn",
           "fit_for", "is_picture", "kind_of", "latents_for", "reference_target", "build_renderer"]

log = logging.getLogger(__name__)


def image_choice(image) -> Any:
    """What an image argument asks for: ``'auto'`` (None or 'auto': the song's cover art), ``'none'`` (False or
    'none': abstract), else the argument itself (a path, array, :class:`~neuromv.image.ImageSource` or a dict
    of them per stem)."""
    if image is None:
        return "auto"
    if image is False:
        return "none"
    if isinstance(image, str) and image.strip().lower() in ("auto", "none"):
        return image.strip().lower()
    return image


def resolve_image(image, song, background: str = "black") -> tuple[np.ndarray | None, str | None]:
    """(pixels [shape=(h, w, 3), uint8], description) of the reference image asked for (:func:`image_choice`),
    transparency composited on ``background``; 'auto' looks for the cover art of ``song`` (a file; None or
    :class:`~neuromv.audio.Audio`: none). (None, None): abstract."""
    from .image import ImageSource, find_cover_art, load_image

    image = image_choice(image)
    if isinstance(image, str) and image == "none":
        return None, None
    if isinstance(image, str) and image == "auto":
        if song is None or isinstance(song, Audio):
            return None, None
        source = find_cover_art(song)
        if source is None:
            log.info("image: no cover art in or beside %s", song)
            return None, None
        return load_image(source, background=background), source.description
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ParameterError(f"image array must be uint8 of shape (height, width, 3), not {image.dtype} "
                                 f"{image.shape}")
        return image, "image array"
    if isinstance(image, ImageSource):
        return load_image(image, background=background), image.description
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, background=background), str(image)
    raise ParameterError(f"image must be a path, 'auto', 'none', an ImageSource or an array, not {image!r}")


def model_for(model, settings: RenderSettings):
    """(network, settings with a CPPN's n_mels and hidden, description) of a model file, a CPPN or a fitted
    picture."""
    from .cppn import CPPN

    if isinstance(model, CPPN) or (not isinstance(model, (str, os.PathLike)) and is_picture(model)):
        cppn, where = model, "model object"
    else:
        from .reference import load_model

        cppn, info = load_model(model)
        where = f"model {model}"
        aspect = info.get("aspect")
        if isinstance(aspect, (int, float)) and abs(aspect - settings.width / settings.height) > 0.01:
            log.warning("model %s was fitted for aspect ratio %.3g; this video's is %.3g (the picture is extended "
                        "or cropped)", model, aspect, settings.width / settings.height)
    if not is_picture(cppn) and (cppn.n_z, cppn.hidden) != (settings.n_mels, settings.hidden):
        log.debug("model: n_mels %d, hidden %d (from the model)", cppn.n_z, cppn.hidden)
        settings = replace(settings, n_mels=cppn.n_z, hidden=cppn.hidden)
    return cppn, settings, where


def reference_target(image: np.ndarray, settings: RenderSettings, width: int | None = None,
                     height: int | None = None) -> np.ndarray:
    """The reference image as the video shows it: fitted (cover/contain) to ``width x height`` (default: the
    settings' size). np.ndarray [shape=(height, width, 3), dtype=uint8]."""
    from .image import fit_image

    return fit_image(image, width or settings.width, height or settings.height, mode=settings.fit,
                     background=settings.background)


def fit_for(pixels: np.ndarray, settings: RenderSettings, *, cache: bool = True,
            progress: bool | ProgressCallback = False, cancel: threading.Event | None = None, method="picture"):
    """Fit (or reuse a cached fit of) ``pixels`` [shape=(h, w, 3), uint8] for a video of ``settings``.

    ``method``: ``'picture'`` (the default: a :class:`~neuromv.picture.PictureNet` at
    :func:`~neuromv.picture.fit_size`, ``settings.fit_quality``), or the format-1 image-mode CPPN (``'neuromv'``)
    and the plain CPPN trained with z at 0 (``'naive'``), kept for the benchmark's comparison."""
    info = {"aspect": settings.width / settings.height, "fit": settings.fit, "background": settings.background}
    if method == "picture":
        from .picture import fit_size
        from .reference import cached_picture_fit

        fw, fh = fit_size(settings.width, settings.height, pixels.shape, settings.fit_quality, mode=settings.fit)
        target = reference_target(pixels, settings, fw, fh)
        return cached_picture_fit(target, quality=settings.fit_quality, steps=settings.fit_steps, seed=settings.seed,
                                  cache=cache, progress=progress, cancel=cancel, info=info)
    from .reference import FitOptions, cached_fit, training_size

    tw, th = training_size(settings.width, settings.height)
    target = reference_target(pixels, settings, tw, th)
    return cached_fit(target, n_z=settings.n_mels, hidden=settings.hidden, seed=settings.seed,
                      options=FitOptions(steps=settings.fit_steps or FitOptions.steps, method=method), cache=cache,
                      progress=progress, cancel=cancel, info=info)


def abstract_cppn(settings: RenderSettings):
    """The abstract :class:`~neuromv.cppn.CPPN` of ``settings``: its n_mels, hidden width, seed, tone and chroma
    (the one place it is built: the render, the page's network and the tests)."""
    from .cppn import CPPN

    return CPPN(settings.n_mels, settings.hidden, seed=settings.seed, tone=settings.tone, chroma=settings.chroma)


def cppn_for(pixels: np.ndarray | None, settings: RenderSettings, **fit_options):
    """The abstract CPPN of ``settings`` when ``pixels`` is None (:func:`abstract_cppn`), else the picture fitted
    to ``pixels`` (:func:`fit_for`)."""
    if pixels is None:
        return abstract_cppn(settings)
    return fit_for(pixels, settings, **fit_options)


def kind_of(net) -> bool | str:
    """What :func:`latents_for` takes as ``image`` for ``net``: ``'picture'``, True (image-mode CPPN) or False."""
    return "picture" if is_picture(net) else net.image


def describe(net) -> str:
    """A few words on what ``net`` is, for the log."""
    return "fitted picture" if is_picture(net) else "fitted image (format 1)" if net.image else "abstract"


def is_picture(net) -> bool:
    """Whether ``net`` is a fitted picture (:class:`~neuromv.picture.PictureNet`) rather than a CPPN."""
    from .cppn import CPPN

    return not isinstance(net, CPPN)


def latents_for(audio: Audio | AudioFile, settings: RenderSettings, *, image: bool | str = False) -> np.ndarray:
    """What the network sees per frame, from the song's latents z (unit RMS norm):

    - ``image=False`` (abstract CPPN): ``Z_GAIN * reactivity * z``;
    - ``image='picture'`` (a fitted picture): ``reactivity * u``, ``u`` the drive vectors of its motion
      (:func:`neuromv.motion.drive`; boosted by :data:`~neuromv.motion.ONSET_BOOST` with the structure off, by
      :data:`~neuromv.motion.CUES_BOOST` with it on);
    - ``image=True`` (the format-1 image-mode CPPN): ``PULSE_GAIN * reactivity * z``.

    An :class:`~neuromv.audio.AudioFile` is analysed block by block.

    Returns
    -------
    np.ndarray [shape=(n_frames, n_mels), dtype=float32]
    """
    from .features import latents_from_blocks
    from .settings import PULSE_GAIN, Z_GAIN

    z = latents_from_blocks(audio.blocks(), audio.sr, fps=settings.fps, n_mels=settings.n_mels,
                            smooth=settings.smooth)
    if image == "picture":
        from .motion import CUES_BOOST, ONSET_BOOST, drive

        boost = ONSET_BOOST if settings.structure == "off" else CUES_BOOST
        return drive(z, boost) * np.float32(settings.reactivity)
    return z * np.float32((PULSE_GAIN if image else Z_GAIN) * settings.reactivity)


@dataclass
class Panel:
    """One picture of a render: the whole frame, or one stem's panel.

    Attributes
    ----------
    name : str or None
        The stem (None: the whole video).
    box : tuple[int, int, int, int]
        ``(x, y, w, h)`` in the frame, pixels.
    settings : RenderSettings
        The panel's settings (its size; a stem's seed is ``seed + i``).
    pixels : np.ndarray [shape=(h, w, 3), dtype=uint8] or None
        Its reference image (None: abstract, or a model).
    where : str or None
        Where that image came from.
    cppn : CPPN or None
        Its network (after :meth:`Plan.panels`).
    z : np.ndarray [shape=(n_frames, n_mels), dtype=float32] or None
        The latents it sees (after :meth:`Plan.panels`).
    renderer : Renderer or None
        Its renderer (after :meth:`Plan.panels`).
    controls : Controls or None
        What the music's structure adds to its frames (:func:`neuromv.structure.controls_for`; already applied to
        ``z``), None with ``structure='off'``.
    colors : np.ndarray [shape=(n_frames, 3, 4)] or None
        Each frame's colour map (:func:`neuromv.structure.frame_colors`), with the controls.
    """

    name: str | None
    box: tuple[int, int, int, int]
    settings: RenderSettings
    pixels: np.ndarray | None = None
    where: str | None = None
    cppn: Any = None
    z: np.ndarray | None = None
    renderer: Any = None
    controls: Any = None
    colors: np.ndarray | None = None

    def frames(self, *, yuv420: bool = False):
        """Every frame of the panel, in order (:meth:`neuromv.renderer.Renderer.frames` with its controls' zoom
        and colours)."""
        c = self.controls
        return self.renderer.frames(self.z, yuv420=yuv420, zoom=None if c is None else c.zoom, color=self.colors)

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` of the panel, RGB [shape=(h, w, 3), dtype=uint8]."""
        if self.controls is None:
            return self.renderer.render(self.z[k])
        return self.renderer.render(self.z[k], zoom=float(self.controls.zoom[k]), color=self.colors[k])


@dataclass
class Plan:
    """A render resolved before the slow work (:func:`make_plan`).

    Attributes
    ----------
    settings : RenderSettings
        The settings (n_mels and hidden from the model, when one was given).
    device : torch.device
        Where the frames are computed, resolved once.
    song : Path or None
        The song file (for its cover art); None for decoded audio.
    inputs : tuple of Path
        The files read (never overwritten).
    stems : tuple of str
        The stems rendered, one panel each (empty: one picture).
    image : object
        The image choice (:func:`image_choice`) for one picture, or, with stems, ``{stem: (pixels, where)}``,
        ``{'*': (pixels, where)}`` for one image for every stem, or ``{'auto': None}`` for the cover art.
    pixels, where : np.ndarray or None, str or None
        The reference image of one picture, and where it came from (a model: its description).
    model : CPPN or None
        The loaded model (replaces the image).
    cache : bool
        Reuse and store fits and stems in the content caches.
    cache_root : Path or None
        Where the stems' cache lives (default: :func:`neuromv.cache.cache_dir`).
    separator : Separator or None
        A loaded separator, reused across renders.
    cues : Cues or None
        The song's cues: given (``--cues``), or found by :meth:`song_cues` (analysed, cached).
    cues_where : str or None
        Where they came from (a file, the cache, the analysis).
    audio : Audio or None
        The decoded song given (whole, before its excerpt is taken): what is analysed when no file is.
    palette : Palette or None
        The ``palette`` setting's colours (:func:`neuromv.palette.palette_for`), found with the cover art by
        :meth:`find_cover`: ``'cover'`` takes the reference image's colours, or with image 'auto' the cover art's
        (the picture is then the abstract CPPN in the cover's colours).
    loop_lead : int
        With ``settings.loop``: frames of the excerpt before the loop's first, read so that its features have
        settled (:func:`neuromv.loop.lead_frames`), dropped when the loop is closed; then, those before the loop's
        first frame as chosen (:func:`neuromv.loop.close_panels`).
    loop_choices : int
        With ``settings.loop``: the frames after the lead at which the loop's first may fall
        (:attr:`neuromv.loop.LoopWindow.choices`).
    """

    settings: RenderSettings
    device: Any
    song: Path | None = None
    inputs: tuple = ()
    stems: tuple = ()
    image: Any = "none"
    pixels: np.ndarray | None = None
    where: str | None = None
    model: Any = None
    cache: bool = True
    cache_root: Path | None = None
    separator: Any = None
    cues: Any = None
    cues_where: str | None = None
    audio: Audio | None = None
    palette: Any = None
    loop_lead: int = 0
    loop_choices: int = 1
    _cover_done: bool = field(default=False, repr=False)

    @property
    def has_image(self) -> bool | str:
        """Whether the picture(s) are fitted to an image, as the memory estimate takes it: ``'picture'`` (a fitted
        picture), True (a format-1 image-mode CPPN) or False."""
        if self.model is not None:
            return kind_of(self.model)
        fitted = bool(self.image) if self.stems else self.pixels is not None
        return "picture" if fitted else False

    def find_cover(self) -> None:
        """Look up the song's cover art where the image is 'auto' (once the song is known to be good)."""
        if self._cover_done:
            return
        self._cover_done = True
        cover_colours = parse_palette(self.settings.palette) == "cover"
        cover, where = None, None
        auto = ("auto" in self.image) if self.stems else (isinstance(self.image, str) and self.image == "auto")
        if cover_colours and self.model is None and auto:
            # the cover gives the colours; the picture is the abstract CPPN
            if self.song is not None:
                cover, where = resolve_image("auto", self.song, self.settings.background)
            self.image = {k: v for k, v in self.image.items() if k != "auto"} if self.stems else "none"
            self._find_cover()
        else:
            self._find_cover()
            if cover_colours:
                cover, where = self.pixels, self.where
                if self.stems:
                    cover, where = self.image.get("*", next((v for v in self.image.values()
                                                             if isinstance(v, tuple)), (None, None)))
                if cover is None and self.song is not None:
                    cover, where = resolve_image("auto", self.song, self.settings.background)
        self._set_palette(cover, where)

    def _set_palette(self, cover: np.ndarray | None, where: str | None) -> None:
        """:attr:`palette` from the setting and the cover image (``'cover'`` only)."""
        from .palette import palette_for

        self.palette = palette_for(self.settings.palette, cover)
        if self.palette is not None:
            log.info("palette: %s%s", self.palette.name, f" (colours of {where})" if self.palette.name == "cover"
                     else "")

    def _find_cover(self) -> None:
        """:meth:`find_cover`'s search for the reference image."""
        if self.stems:
            if "auto" in self.image and self.song is not None:
                pixels, where = resolve_image("auto", self.song, self.settings.background)
                if pixels is not None:
                    log.info("image: %s (%dx%d), for every stem", where, pixels.shape[1], pixels.shape[0])
                    self.image = {**self.image, "*": (pixels, where)}
            return
        if self.model is not None:
            log.info("image: %s (%s)", self.where, describe(self.model))
            return
        if isinstance(self.image, str) and self.image == "auto" and self.song is not None:
            self.pixels, self.where = resolve_image("auto", self.song, self.settings.background)
        if self.pixels is None:
            log.info("image: none; rendering the abstract CPPN (seed %d)", self.settings.seed)
        else:
            log.info("image: %s (%dx%d)", self.where, self.pixels.shape[1], self.pixels.shape[0])

    def layout(self) -> list[Panel]:
        """The panels, each with its reference image (:meth:`find_cover` first, for the cover art)."""
        from .stems import stem_panels

        s = self.settings
        if not self.stems:
            return [Panel(None, (0, 0, s.width, s.height), s, self.pixels, self.where)]
        shared = self.image.get("*", (None, None))
        out = []
        for name, box, st in stem_panels(s):
            pixels, where = self.image[name] if name in self.image else shared
            out.append(Panel(name, box, st, pixels, where))
        return out

    def network(self, panel: Panel, *, progress: bool | ProgressCallback = False,
                cancel: threading.Event | None = None):
        """The CPPN of ``panel``: the model, the abstract CPPN, or one fitted to its image (cached)."""
        if self.model is not None:
            return self.model
        return cppn_for(panel.pixels, panel.settings, cache=self.cache, progress=progress, cancel=cancel)

    def separate(self, audio: Audio, *, progress: bool | ProgressCallback = False,
                 cancel: threading.Event | None = None) -> dict[str, Audio]:
        """The stems of ``audio`` (:func:`neuromv.stems.stem_audio`, cached under :attr:`cache_root`)."""
        from .stems import stem_audio

        return stem_audio(audio, self.settings, cache=self.cache, progress=progress, cancel=cancel,
                          separator=self.separator, cache_root=self.cache_root)

    def song_cues(self, audio: Audio | AudioFile, *, progress: bool | ProgressCallback = False,
                  cancel: threading.Event | None = None) -> tuple[Any, float]:
        """The song's cues and the song time of frame 0 (``settings.start``): the cues given, else the analysis
        (:func:`neuromv.analysis.cached_analysis`) of the whole song, the file or the decoded audio given (an
        excerpt's sections need the song around them), or of ``audio`` itself when neither is known."""
        whole = self.song is not None or self.audio is not None
        start = float(self.settings.start) if whole else 0.0
        if self.cues is None:
            from .analysis import cached_analysis

            if self.song is None:
                source = self.audio if whole else audio
            elif isinstance(audio, AudioFile) and audio.options["start"] == 0 and audio.options["duration"] is None:
                source = audio  # the whole song is being read already: no second checking decode
            else:
                source = AudioFile(self.song)
            self.cues, self.cues_where = cached_analysis(source, cache=self.cache, progress=progress, cancel=cancel)
            c = self.cues
            log.info("cues (%s): %.1f BPM, %d beats, %d bars, sections %s%s%s", self.cues_where, c.tempo,
                     len(c.beats), len(c.downbeats), " ".join(s.label for s in c.sections) or "none",
                     f", drops at {', '.join(f'{d:.1f}' for d in c.drops)} s" if len(c.drops) else "",
                     f", {len(c.silence)} silent span(s)" if c.silence else "")
        return self.cues, start

    def panels(self, audio: Audio | AudioFile, *, progress: bool | ProgressCallback = False,
               cancel: threading.Event | None = None) -> list[Panel]:
        """Every panel with its CPPN, latents, controls and renderer: the slow part (separation, fits, features,
        the song's structure)."""
        from .structure import frame_colors

        self.find_cover()
        stems = self.separate(audio, progress=progress, cancel=cancel) if self.stems else {}
        structure = self.settings.structure == "on"
        if structure:
            cues, start = self.song_cues(audio, progress=progress, cancel=cancel)
        panels = self.layout()
        for p in panels:
            check_cancel(cancel)
            if p.name is not None and p.name in self.image:
                log.info("image for %s: %s", p.name, p.where)
            p.cppn = self.network(p, progress=progress, cancel=cancel)
            source = stems[p.name] if p.name is not None else audio
            kind = kind_of(p.cppn)
            p.z = latents_for(source, p.settings, image=kind)
            if structure:
                p.controls = panel_controls(cues, p.z, p, p.cppn, source, start=start, palette=self.palette,
                                            progress=progress, cancel=cancel)
                p.z = p.controls.apply(p.z)
                p.colors = frame_colors(p.controls, p.settings)
        if self.settings.loop is not None:  # the last frame flows into the first (neuromv.loop), in every panel
            from .loop import close_panels, loop_frames

            n = loop_frames(self.settings.loop, self.settings.fps)
            self.loop_lead = close_panels(panels, n, self.loop_lead, self.loop_choices)
        for p in panels:
            if p.name is None:
                log.info("features: %d frames x %d mel bands at %g fps", p.z.shape[0], p.settings.n_mels,
                         p.settings.fps)
                check_cancel(cancel)
            p.renderer = build_renderer(p.settings, cppn=p.cppn, z=p.z, device=self.device, palette=self.palette)
            if p.name is not None:
                x, y, w, h = p.box
                log.info("stem %s: %dx%d panel at (%d, %d), seed %d, %s", p.name, w, h, x, y, p.settings.seed,
                         describe(p.cppn))
        return panels


def panel_controls(cues, z: np.ndarray, panel: Panel, net, source=None, *, start: float = 0.0, palette=None,
                   progress: bool | ProgressCallback = False, cancel: threading.Event | None = None):
    """The structure's per-frame controls of ``panel`` with its network ``net`` and latents ``z``
    [shape=(n_frames, n_mels)] (:func:`latents_for`): :func:`neuromv.structure.controls_for` of the network's kind,
    fitted to the picture by :func:`follow_controls`. The whole song plays the role 'all'; a stem plays its role of
    :data:`neuromv.structure.STEM_ROLES`, driven by the stem's own cues (the analysis of ``source``, its audio: its
    onsets and energy; the beats and sections stay the song's). The share of the onsets between the beats is
    balanced per panel (:func:`_balanced`). ``start``: the song time of frame 0; ``palette``: the render's
    (:attr:`Plan.palette`). The render (:meth:`Plan.panels`) and the server's page data use this one rule."""
    from .structure import STEM_ROLES, controls_for

    role = "all" if panel.name is None else STEM_ROLES.get(panel.name, "look")
    own = None
    if role != "all":
        from .analysis import analyze

        own = analyze(source, cancel=cancel)
    kind, settings = kind_of(net), panel.settings

    def fitted(between: float | None):
        controls = controls_for(cues, len(z), settings, kind=kind, role=role, stem_cues=own, start=start,
                                between=between)
        return follow_controls(controls, z, net, settings, palette=palette, progress=progress, cancel=cancel,
                               envelope=True)

    first, envelope = fitted(None)
    if first is None or envelope is None:
        return first
    from .structure import FLUX, PICTURE_FLUX, flux_frames
    from .sync import measure_sync

    fps = float(settings.fps)
    onset = flux_frames(own if own is not None else cues, start + np.arange(len(z)) / fps, fps)
    beats = np.asarray(cues.beats, float) - start
    beats = beats[(beats >= 0) & (beats <= len(z) / fps)]
    if len(beats) < 2:
        return first
    default = (PICTURE_FLUX if kind == "picture" else FLUX)["between"]
    return _balanced(lambda share: fitted(share) if share != default else (first, envelope),
                     lambda env: measure_sync(env, onset, beats, fps), default)


def _balanced(fit, read, default: float):
    """The controls of the best between-beat share (:data:`neuromv.structure.BALANCE`), read on the fit's small
    render: where F is below r (less its bias there) at ``default``, smaller shares are fitted too, down to where
    the two meet (halvings, then the share where the line between the last two crosses), and of the shares tried
    the one with the largest smaller value of the two is kept (ties: the larger share).

    ``fit(share)`` gives (controls, their change on the small render); ``read(change)`` its
    :class:`~neuromv.sync.SyncReport`."""
    from .structure import BALANCE

    tried = {}

    def gap(share: float) -> float:
        """F - r (less its bias) with this share; the controls, their score and the report kept in ``tried``."""
        controls, envelope = fit(share)
        report = read(envelope)
        r = report.r - BALANCE["r_bias"]
        tried[share] = (min(r, report.f_measure), controls, report)
        return report.f_measure - r

    high, gap_high = default, gap(default)
    low = BALANCE["low"] * default
    if gap_high < 0 and (gap_low := gap(low)) >= 0:  # the two meet between: halve where they cross, then meet
        for _ in range(int(BALANCE["steps"])):
            mid = 0.5 * (high + low)
            if (g := gap(mid)) < 0:
                high, gap_high = mid, g
            else:
                low, gap_low = mid, g
        meet = low + (high - low) * gap_low / (gap_low - gap_high)  # linear between the two
        if meet not in tried:
            gap(meet)
    best = max(tried, key=lambda b: (tried[b][0], b))
    log.debug("structure: between-beat shares tried (r, F on the fit's render): %s",
              ", ".join(f"{b:.3f} ({t[2].r:.3f}, {t[2].f_measure:.3f})" for b, t in sorted(tried.items())))
    if len(tried) > 1:
        log.info("structure: between-beat share %.3f (on the fit's render: r %.2f, F %.2f; at %.3f: r %.2f, "
                 "F %.2f)", best, tried[best][2].r, tried[best][2].f_measure, default, tried[default][2].r,
                 tried[default][2].f_measure)
    return tried[best][1]


def follow_controls(controls, z: np.ndarray, net, settings: RenderSettings, *, palette=None,
                    progress: bool | ProgressCallback = False, cancel: threading.Event | None = None,
                    envelope: bool = False):
    """``controls`` fitted to the picture (:func:`neuromv.follow.follow`): each frame's steps scaled by a gain so
    that the picture's change from frame to frame follows the motion they ask for
    (:attr:`~neuromv.structure.Controls.motion`), measured on the frames as the sync reads a render of
    :data:`neuromv.follow.FOLLOW` ``short`` pixels on the short side (a quarter of that, read whole), in float32 on
    the CPU (so every device and precision gets the same controls). The steps of the network's input are scaled
    by an offset (:func:`neuromv.follow.fitted_controls`: it leaks back, and holds where no motion is asked) added
    to ``z_add``; a fitted picture's zoom and light steps too (added to ``zoom`` and ``brightness``); the colour,
    and an abstract network's zoom and light, stay as the structure made them.

    Parameters
    ----------
    controls : Controls or None
    z : np.ndarray [shape=(n_frames, n_mels)]
        The latents (before the controls).
    net : CPPN or picture
    settings : RenderSettings
        The panel's (its shape, colours, palette, zoom and pan).
    envelope : bool
        Also return the fitted controls' change on that small render (one more render of it).

    Returns
    -------
    Controls or None
        None stays None; controls that ask for no motion come back as they are.
    np.ndarray [shape=(n_frames,)] or None
        With ``envelope``: the fitted controls' change into each frame (:class:`neuromv.sync.MotionEnvelope`,
        0-255); None where nothing was fitted.
    """
    import torch

    from .follow import FOLLOW, fitted_controls, follow
    from .progress import Progress
    from .structure import frame_colors
    from .sync import MotionEnvelope

    if controls is None or controls.motion is None or not np.any(controls.motion > 0):
        return (controls, None) if envelope else controls
    # the frames the sync reads of a render FOLLOW['short'] pixels on the short side (every 4th pixel each way),
    # rendered as such: a quarter of the size each way, read whole
    short = max(2, round(FOLLOW["short"] / 4))
    w, h = settings.width, settings.height
    w, h = (max(2, round(w * short / h)), short) if w >= h else (short, max(2, round(h * short / w)))
    small_settings = replace(settings, width=w + w % 2, height=h + h % 2, precision="float32")
    u = controls.apply(z)
    small = build_renderer(small_settings, cppn=net, z=u, device=torch.device("cpu"), palette=palette)
    hold = controls.motion <= 0  # where nothing is asked (silence), the offset holds: the picture rests

    def fitted(gain: np.ndarray):
        """The controls with every frame's steps (input, zoom, light) scaled by its gain."""
        return fitted_controls(controls, u, gain, hold=hold, kick=None if is_picture(net) else 1.0)

    def change_of(c) -> np.ndarray:
        """The change into each frame of controls ``c`` on the small render."""
        envelope = MotionEnvelope(step=1)
        for frame in small.frames(c.apply(z), zoom=c.zoom, color=frame_colors(c, settings)):
            envelope.add(frame)
            if len(envelope) % 256 == 0:
                bar.update(256)
                check_cancel(cancel)
        bar.update(len(envelope) % 256)
        check_cancel(cancel)
        return envelope.envelope

    with Progress("follow", (FOLLOW["rounds"] + int(envelope)) * len(u), progress) as bar:
        result = fitted(follow(controls.motion, lambda gain: change_of(fitted(gain)), fps=settings.fps))
        return (result, change_of(result)) if envelope else result


def make_plan(song, settings: RenderSettings, *, image=None, model=None, cache: bool = True,
              cache_root: str | os.PathLike | None = None, separator=None, output: str | os.PathLike | None = None,
              overwrite: bool = False, cues=None) -> Plan:
    """Check a render's arguments and resolve what fails fast, before any slow work.

    Parameters
    ----------
    song : path or Audio or None
        The song (a file: its cover art is the 'auto' image).
    settings : RenderSettings
        Its settings (already complete: size even, options applied).
    image, model, cache : see :func:`neuromv.pipeline.render`
    cache_root : path, optional
        Where the stems' cache lives (default: :func:`neuromv.cache.cache_dir`).
    separator : Separator, optional
        A loaded separator (its availability is then not checked).
    output : path, optional
        The video to be written: checked (and the codec at this size) before anything is loaded.
    overwrite : bool
        Whether ``output`` may be replaced.
    cues : path or Cues, optional
        The song's cues (``neuromv analyze``'s file, read and checked here); default: analysed when needed.

    Raises
    ------
    ParameterError, ImageError, ModelError, OutputError, SeparationError, CuesError
    """
    from .renderer import resolve_device

    stems = settings.stem_names()
    choice = image_choice(image)
    image_file = isinstance(choice, (str, os.PathLike)) and choice not in ("auto", "none")
    if isinstance(choice, dict) and not stems:
        raise ParameterError("images per stem (stem=PATH) need stems to render (--stems)")
    if model is not None and stems:
        raise ParameterError("--model is for one picture; with --stems, give images per stem instead")
    if model is not None and not (isinstance(choice, str) and not image_file):
        raise ParameterError("give a reference image or a model, not both")
    song_file = None if song is None or isinstance(song, Audio) else song
    cues_file = cues if isinstance(cues, (str, os.PathLike)) else None
    inputs = tuple(p for p in (song_file, model if isinstance(model, (str, os.PathLike)) else None,
                               choice if image_file else None, cues_file) if p is not None)
    if output is not None:
        from .video import check_codec, check_output_path

        check_output_path(output, inputs=inputs, overwrite=overwrite, animated=True)  # fail before any slow work
        from .animated import is_animated

        if not is_animated(output):
            check_codec(settings.codec, settings.width, settings.height)
    plan = Plan(settings, resolve_device(settings.device), song_file, inputs, stems, choice, cache=cache,
                cache_root=None if cache_root is None else Path(cache_root), separator=separator,
                audio=song if isinstance(song, Audio) else None)
    if cues_file is not None:
        from .cues import load_cues

        plan.cues, plan.cues_where = load_cues(cues_file), str(cues_file)  # a bad file fails before slow work
    elif cues is not None:
        plan.cues, plan.cues_where = cues, "given"
    if model is not None:
        plan.model, plan.settings, plan.where = model_for(model, settings)  # a bad model fails before slow work
    elif stems:
        from .separate import check_available

        if separator is None:
            check_available(settings.separator)  # a backend that cannot run here fails before any slow work
        plan.image = _stem_images(choice, stems, settings.background)  # so do bad stem names, images
    elif not (isinstance(choice, str) and choice == "auto"):
        plan.pixels, plan.where = resolve_image(choice, None, settings.background)  # a bad image, too
    return plan


def _stem_images(image, names, background="black") -> dict:
    """Load the images of a render with stems: {stem: (pixels, description)}, or {'*': ...} for one image for
    every stem, or {'auto': None} for the song's cover art (looked up later). Raises on unknown stems or bad
    images."""
    if isinstance(image, dict):
        unknown = sorted(set(image) - set(names))
        if unknown:
            raise ParameterError(f"--image for stem(s) not rendered: {', '.join(unknown)} (stems: {', '.join(names)})")
        out = {}
        for stem, src in image.items():
            pixels, where = resolve_image(src, None, background)
            if pixels is not None:
                out[stem] = (pixels, where)
        return out
    if isinstance(image, str) and image == "auto":
        return {"auto": None}
    pixels, where = resolve_image(image, None, background)
    return {"*": (pixels, where)} if pixels is not None else {}


def build_renderer(settings: RenderSettings, width: int | None = None, height: int | None = None, *, cppn=None,
                   z: np.ndarray | None = None, device=None, palette=None, threads: int | None = None):
    """A :class:`~neuromv.renderer.Renderer` of ``cppn`` (a CPPN or a fitted picture; default: the abstract CPPN of
    ``settings``) at the given (or the settings') size. ``z`` [shape=(n_frames, n_mels)]: the frames to render,
    which centre a format-1 image-mode CPPN's pulse. A picture moves with :class:`neuromv.motion.Motion` of the
    settings' n_mels, seed and motion. ``device``: a resolved torch device (:attr:`neuromv.plan.Plan.device`;
    default: ``settings.device``). ``palette``: a :class:`~neuromv.palette.Palette` (default: the settings' own,
    which must not be 'cover': :attr:`Plan.palette` resolves that one). ``threads``: CPU threads (default: every
    core this process may use)."""
    from .palette import palette_for
    from .renderer import Renderer, color_matrix

    if cppn is None:
        cppn = abstract_cppn(settings)
    color = color_matrix(settings.hue, settings.saturation, settings.brightness, settings.contrast)
    extra = {}
    if is_picture(cppn):
        from .motion import Motion

        extra["motion"] = Motion.of(settings.n_mels, settings.seed, settings.motion)
    else:
        extra["centre"] = z if cppn.image else None
    return Renderer(cppn, width or settings.width, height or settings.height,
                    device=settings.device if device is None else device, scale=settings.zoom,
                    pan=(settings.pan_x, settings.pan_y), color=color, precision=settings.precision, threads=threads,
                    palette=palette if palette is not None or settings.palette is None
                    else palette_for(settings.palette), **extra)
