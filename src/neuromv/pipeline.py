"""The pipeline: song -> features -> CPPN frames -> video file. The public entry point is :func:`render`."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ._files import atomic_file, atomic_files, check_output
from .audio import Audio, AudioFile, AudioReader, WavWriter, check_audible
from .errors import AudioError, ParameterError
from .progress import Progress, ProgressCallback, check_cancel
from .settings import RenderSettings

__all__ = ["render", "RenderResult", "ProgressCallback", "latents_for", "build_renderer", "fit_for",
           "reference_target", "separate_song", "stem_panels"]

log = logging.getLogger(__name__)



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
    """

    path: Path
    frames: int
    duration: float
    seconds: float
    settings: RenderSettings
    image: str | None = None


def latents_for(audio: Audio | AudioFile, settings: RenderSettings, *, image: bool = False) -> np.ndarray:
    """What the CPPN sees per frame: ``Z_GAIN * reactivity * z`` (abstract) or ``PULSE_GAIN * reactivity * z``
    (image mode). An :class:`~neuromv.audio.AudioFile` is analysed block by block.

    Returns
    -------
    np.ndarray [shape=(n_frames, n_mels), dtype=float32]
    """
    from .features import latents_from_blocks
    from .settings import PULSE_GAIN, Z_GAIN

    z = latents_from_blocks(audio.blocks(), audio.sr, fps=settings.fps, n_mels=settings.n_mels,
                            smooth=settings.smooth)
    return z * np.float32((PULSE_GAIN if image else Z_GAIN) * settings.reactivity)


def build_renderer(settings: RenderSettings, width: int | None = None, height: int | None = None, *, cppn=None,
                   z: np.ndarray | None = None):
    """A :class:`~neuromv.renderer.Renderer` of ``cppn`` (default: the abstract CPPN of ``settings``) at the given
    (or the settings') size. ``z`` [shape=(n_frames, n_mels)]: the frames to render, which centre an image-mode
    CPPN's pulse."""
    from .cppn import CPPN
    from .renderer import Renderer, color_matrix

    if cppn is None:
        cppn = CPPN(settings.n_mels, settings.hidden, seed=settings.seed)
    color = color_matrix(settings.hue, settings.saturation, settings.brightness, settings.contrast)
    return Renderer(cppn, width or settings.width, height or settings.height, device=settings.device,
                    scale=settings.zoom, pan=(settings.pan_x, settings.pan_y), color=color,
                    centre=z if cppn.image else None, precision=settings.precision)


def reference_target(image: np.ndarray, settings: RenderSettings, width: int | None = None,
                     height: int | None = None) -> np.ndarray:
    """The reference image as the video shows it: fitted (cover/contain) to ``width x height`` (default: the
    settings' size). np.ndarray [shape=(height, width, 3), dtype=uint8]."""
    from .image import fit_image

    return fit_image(image, width or settings.width, height or settings.height, mode=settings.fit,
                     background=settings.background)


def _resolve_image(image, song, background="black") -> tuple[np.ndarray | None, str | None]:
    """(pixels, description) of the reference image asked for, transparency composited on ``background``;
    (None, None): abstract."""
    from .image import ImageSource, find_cover_art, load_image

    if image is False or (isinstance(image, str) and image.strip().lower() == "none"):
        return None, None
    if image is None or (isinstance(image, str) and image.strip().lower() == "auto"):
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


def _model_for(model, settings: RenderSettings):
    """(CPPN, settings with the model's n_mels and hidden, description) of a model file or CPPN object."""
    from .cppn import CPPN

    if isinstance(model, CPPN):
        cppn, where = model, "model object"
    else:
        from .reference import load_model

        cppn, info = load_model(model)
        where = f"model {model}"
        aspect = info.get("aspect")
        if isinstance(aspect, (int, float)) and abs(aspect - settings.width / settings.height) > 0.01:
            log.warning("model %s was fitted for aspect ratio %.3g; this video's is %.3g (the picture is extended "
                        "or cropped)", model, aspect, settings.width / settings.height)
    if (cppn.n_z, cppn.hidden) != (settings.n_mels, settings.hidden):
        log.debug("model: n_mels %d, hidden %d (from the model)", cppn.n_z, cppn.hidden)
        settings = replace(settings, n_mels=cppn.n_z, hidden=cppn.hidden)
    return cppn, settings, where


def _cppn_for(pixels: np.ndarray | None, settings: RenderSettings, **fit_options):
    """The abstract CPPN of ``settings`` when ``pixels`` is None, else one fitted to ``pixels`` (:func:`fit_for`)."""
    if pixels is None:
        from .cppn import CPPN

        return CPPN(settings.n_mels, settings.hidden, seed=settings.seed)
    return fit_for(pixels, settings, **fit_options)


def fit_for(pixels: np.ndarray, settings: RenderSettings, *, cache: bool = True,
            progress: bool | ProgressCallback = False, cancel: threading.Event | None = None, method="neuromv"):
    """Fit (or reuse a cached fit of) ``pixels`` [shape=(h, w, 3), uint8] for a video of ``settings``."""
    from .reference import FitOptions, cached_fit, training_size

    tw, th = training_size(settings.width, settings.height)
    target = reference_target(pixels, settings, tw, th)
    return cached_fit(target, n_z=settings.n_mels, hidden=settings.hidden, seed=settings.seed,
                      options=FitOptions(steps=settings.fit_steps, method=method), cache=cache,
                      progress=progress, cancel=cancel,
                      info={"aspect": settings.width / settings.height, "fit": settings.fit,
                            "background": settings.background})


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
    image=None,
    model: str | os.PathLike | None = None,
    cache: bool = True,
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
    image : path, np.ndarray, ImageSource, 'auto', 'none' or False, optional
        Reference image. None or 'auto' (default): the song's cover art (embedded, or ``cover.*``/``folder.*``
        beside it) if it has one. 'none' or False: abstract. The CPPN is fitted to it (cached).
    model : path, optional
        A model saved by ``neuromv fit`` / :func:`neuromv.reference.save_model`; replaces ``image``.
    cache : bool
        Reuse (and store) reference-image fits in the user's cache folder.
    **options
        Any :class:`RenderSettings` field, overriding ``settings`` (e.g. ``fps=24, width=640, height=360``).
        ``separator`` may also be a loaded :class:`~neuromv.separate.Separator`, reused across renders.
        ``quality='draft'|'standard'|'high'`` sets size, x264 preset and crf (:data:`neuromv.settings.QUALITY`)
        before the other options apply.

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
    """
    from .limits import check_memory
    from .renderer import resolve_device
    from .separate import Separator
    from .video import check_codec, check_output_path

    t0 = time.perf_counter()
    loaded = options.get("separator")
    if isinstance(loaded, Separator):  # a separator already loaded, reused across songs
        options["separator"] = loaded.name
    else:
        loaded = None
    base = settings or RenderSettings()
    if "quality" in options:  # the preset first; the other options override it
        from .settings import with_quality

        base = with_quality(base, options.pop("quality"))
    if "size" in options:
        size = options.pop("size")
        options["width"], options["height"] = _size_tuple(size)
    try:
        settings = replace(base, **options)
    except TypeError as e:  # unknown keyword
        raise ParameterError(str(e).replace("__init__() ", "")) from e
    width, height = settings.even_size()
    if (width, height) != settings.size:
        log.warning("size %dx%d rounded up to %dx%d (H.264 needs even sizes)", *settings.size, width, height)
        settings = replace(settings, width=width, height=height)

    if settings.duration is not None and settings.duration * settings.fps < 1:
        raise ParameterError(f"duration {settings.duration:g} s is shorter than one frame ({1 / settings.fps:.3g} s "
                             f"at {settings.fps:g} fps)")
    is_path = not isinstance(song, Audio)
    image_file = isinstance(image, (str, os.PathLike)) and str(image).strip().lower() not in ("auto", "none")
    if isinstance(image, dict) and not settings.stem_names():
        raise ParameterError("images per stem (stem=PATH) need stems to render (--stems)")
    if model is not None and settings.stem_names():
        raise ParameterError("--model is for one picture; with --stems, give images per stem instead")
    if model is not None and not (image is None or image is False or isinstance(image, str) and not image_file):
        raise ParameterError("give a reference image or a model, not both")
    inputs = tuple(p for p in (song if is_path else None, model if isinstance(model, (str, os.PathLike)) else None,
                               image if image_file else None) if p is not None)
    check_output_path(output, inputs=inputs, overwrite=overwrite)  # fail before any slow work
    check_codec(settings.codec, width, height)
    resolve_device(settings.device)
    auto = image is None or (isinstance(image, str) and image.strip().lower() == "auto")
    pixels = where = None
    if model is not None:
        cppn, settings, where = _model_for(model, settings)  # a bad model fails before any slow work
    elif settings.stem_names():
        from .separate import check_available

        if loaded is None:
            check_available(settings.separator)  # a backend that cannot run here fails before any slow work
        images = _stem_images(image, settings.stem_names(), settings.background)  # so do bad stem names, images
    elif not auto:
        pixels, where = _resolve_image(image, None, settings.background)  # a bad image, too

    if is_path:  # read block by block (twice more: features, then the mux), never held whole
        audio = AudioFile(song, start=settings.start, duration=settings.duration)
        name = str(song)
        if settings.stem_names():
            audio = audio.load()  # separation works on the whole song (docs/separation.md)
    else:
        audio = _excerpt(song, settings.start, settings.duration)
        name = "audio"
        check_audible(audio, name=name)
    check_cancel(cancel)
    log.info("audio: %s, %.2f s, %d Hz, %d channel(s)", name, audio.duration, audio.sr, audio.channels)

    if settings.stem_names():
        check_memory(settings, duration=audio.duration, image=bool(images))  # logs the cost; refuses what cannot fit
        frames_iter, n_frames = _stem_video(audio, song if is_path else None, settings, images, cache, progress,
                                            cancel, loaded)
        return _encode(frames_iter, n_frames, audio, output, settings, overwrite, inputs, progress, cancel, t0,
                       "stems: " + ", ".join(settings.stem_names()))
    if model is not None:
        log.info("image: %s (%s)", where, "fitted image" if cppn.image else "abstract")
    else:
        if auto and is_path:
            pixels, where = _resolve_image(None, song, settings.background)  # cover art, once the song is good
        if pixels is None:
            log.info("image: none; rendering the abstract CPPN (seed %d)", settings.seed)
        else:
            log.info("image: %s (%dx%d)", where, pixels.shape[1], pixels.shape[0])
    # logs what the size costs, and refuses a render that cannot fit in memory before the fit and the features
    check_memory(settings, duration=audio.duration, image=cppn.image if model is not None else pixels is not None)
    if model is None:
        cppn = _cppn_for(pixels, settings, cache=cache, progress=progress, cancel=cancel)

    z = latents_for(audio, settings, image=cppn.image)
    n_frames = z.shape[0]
    log.info("features: %d frames x %d mel bands at %g fps", n_frames, settings.n_mels, settings.fps)

    check_cancel(cancel)
    renderer = build_renderer(settings, cppn=cppn, z=z)
    log.info("rendering %dx%d on %s (%s)", width, height, renderer.device, renderer.method)
    # I420 frames go to the encoder without a colour conversion; on a GPU, frames come in double-buffered batches
    return _encode(renderer.frames(z, yuv420=renderer.yuv420), n_frames, audio, output, settings, overwrite, inputs,
                   progress, cancel, t0, where)


def _encode(frames, n_frames, audio, output, settings, overwrite, inputs, progress, cancel, t0, where):
    """Stream ``frames`` (an iterator of uint8 RGB (h, w, 3) or I420 (h * 3 // 2, w)) into the video file with the
    song's audio."""
    from .video import VideoWriter

    width, height = settings.width, settings.height
    with VideoWriter(output, width, height, settings.fps, audio=audio, crf=settings.crf, preset=settings.preset,
                     codec=settings.codec, overwrite=overwrite, inputs=inputs) as writer:
        with Progress("render", n_frames, progress) as bar:
            for _ in range(n_frames):
                check_cancel(cancel)
                writer.write(next(frames))
                bar.update()
    seconds = time.perf_counter() - t0
    # debug: the command line says "wrote" itself, once it treats the run as done (a late signal is then ignored)
    log.debug("wrote %s: %d frames (%.2f s) in %.1f s, %.1f frames/s", writer.path, n_frames, audio.duration,
              seconds, n_frames / seconds)
    return RenderResult(writer.path, n_frames, audio.duration, seconds, settings, where)


def panel_boxes(n: int, width: int, height: int, layout: str = "auto") -> list[tuple[int, int, int, int]]:
    """Where each of ``n`` stem panels goes: ``(x, y, w, h)`` per panel.

    'side-by-side': n columns; 'grid': ceil(sqrt(n)) columns; 'blend': every panel is the whole frame; 'auto':
    side-by-side for up to 2 stems, else grid.
    """
    if layout == "auto":
        layout = "side-by-side" if n <= 2 else "grid"
    if layout == "blend":
        return [(0, 0, width, height)] * n
    cols = n if layout == "side-by-side" else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    xs = [round(i * width / cols) for i in range(cols + 1)]
    ys = [round(j * height / rows) for j in range(rows + 1)]
    return [(xs[i % cols], ys[i // cols], xs[i % cols + 1] - xs[i % cols], ys[i // cols + 1] - ys[i // cols])
            for i in range(n)]


def stem_panels(settings: RenderSettings) -> list[tuple[str, tuple[int, int, int, int], RenderSettings]]:
    """Each stem's panel of a render with stems: ``(stem, (x, y, w, h), settings)``, the panel's settings being
    its size and the seed ``settings.seed + i`` of the i-th stem (the live preview lays them out the same way)."""
    names = settings.stem_names()
    boxes = panel_boxes(len(names), settings.width, settings.height, settings.layout)
    return [(name, box, replace(settings, seed=settings.seed + i, width=box[2], height=box[3], stems=None))
            for i, (name, box) in enumerate(zip(names, boxes))]


def stem_audio(audio: Audio, settings: RenderSettings, *, cache: bool = True, progress=False, cancel=None,
               separator=None, cache_root: Path | None = None):
    """The stems ``settings.stem_names()`` of ``audio``, separated by ``settings.separator`` (cached by content).

    ``separator``, a loaded :class:`~neuromv.separate.Separator`, is used instead of loading one; one with a model
    object of its own (not a built-in model) is not cached. ``cache_root``: the folder that holds the cache's
    ``stems/`` (default: :func:`neuromv.reference.cache_dir`; the server keeps its own inside its work folder).

    Returns
    -------
    dict of str to Audio
    """
    import hashlib

    from .reference import cache_dir
    from .separate import Separator

    names = settings.stem_names()
    cache = cache and (separator is None or separator.builtin)
    h = hashlib.sha256(f"{settings.separator}:{audio.sr}:{audio.samples.shape}:v2".encode())
    h.update(np.ascontiguousarray(audio.samples).tobytes())
    folder = Path(cache_root or cache_dir()) / "stems" / h.hexdigest()[:32]
    files = {n: folder / f"{n}.npy" for n in names}
    if cache and all(f.is_file() for f in files.values()):
        try:
            out = {n: Audio(np.load(f, allow_pickle=False), audio.sr) for n, f in files.items()}
            log.info("stems: reusing the cached separation %s", folder)
            return out
        except (OSError, ValueError) as e:
            log.warning("stem cache: %s; separating again", e)
    t = time.perf_counter()
    sep = separator or Separator(settings.separator, device=settings.device)
    stems = sep.separate(audio, progress=progress, cancel=cancel)
    log.info("stems: separated with %s in %.1f s", settings.separator, time.perf_counter() - t)
    if cache:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n, a in stems.items():
                with atomic_file(folder / f"{n}.npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, a.samples)
        except OSError as e:
            log.warning("stem cache: could not store the stems in %s (%s)", folder, e)
    return {n: stems[n] for n in names}


def _label_mask(text: str, width: int, height: int) -> np.ndarray:
    """A bool mask [shape=(height, width)] with ``text`` in the top-left corner (PIL's default font)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("L", (width, height), 0)
    size = max(10, min(width, height) // 14)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    ImageDraw.Draw(im).text((size // 2, size // 3), text, fill=255, font=font, stroke_width=max(1, size // 12),
                            stroke_fill=128)
    return np.asarray(im)


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
            pixels, where = _resolve_image(src, None, background)
            if pixels is not None:
                out[stem] = (pixels, where)
        return out
    if image is None or (isinstance(image, str) and image.strip().lower() == "auto"):
        return {"auto": None}
    pixels, where = _resolve_image(image, None, background)
    return {"*": (pixels, where)} if pixels is not None else {}


def _stem_video(audio, song, settings, images, cache, progress, cancel, separator=None):
    """(iterator of composed frames, n_frames) for a render with stems."""
    names = settings.stem_names()
    stems = stem_audio(audio, settings, cache=cache, progress=progress, cancel=cancel, separator=separator)
    per_stem = {k: v for k, v in images.items() if k in names}
    shared = images.get("*", (None, None))[0]
    if "auto" in images and song is not None:
        shared, where = _resolve_image(None, song, settings.background)
        if shared is not None:
            log.info("image: %s (%dx%d), for every stem", where, shared.shape[1], shared.shape[0])
    blend = settings.layout == "blend"
    parts = []
    for name, (x, y, w, h), st in stem_panels(settings):
        check_cancel(cancel)
        pixels = None
        if name in per_stem:
            pixels, where = per_stem[name]
            log.info("image for %s: %s", name, where)
        elif shared is not None:
            pixels = shared
        cppn = _cppn_for(pixels, st, cache=cache, progress=progress, cancel=cancel)
        z = latents_for(stems[name], st, image=cppn.image)
        renderer = build_renderer(st, cppn=cppn, z=z)
        label = None
        if settings.labels:
            mask = _label_mask(name, w, h)
            label = (mask > 0, np.where(mask[mask > 0] > 192, 255, 0).astype(np.uint8)[:, None])  # white, outlined
        parts.append((name, (x, y, w, h), z, renderer, label))
        log.info("stem %s: %dx%d panel at (%d, %d), seed %d, %s", name, w, h, x, y, st.seed,
                 "fitted image" if cppn.image else "abstract")
    n_frames = parts[0][2].shape[0]

    def frames():
        for k in range(n_frames):
            if blend:
                acc = np.zeros((settings.height, settings.width, 3), np.float32)
            else:
                canvas = np.zeros((settings.height, settings.width, 3), np.uint8)
            for name, (x, y, w, h), z, renderer, label in parts:
                f = renderer.render(z[k])
                if label is not None:
                    f[label[0]] = label[1]
                if blend:
                    acc += f
                else:
                    canvas[y:y + h, x:x + w] = f
            yield (acc / len(parts) + 0.5).astype(np.uint8) if blend else canvas

    return frames(), n_frames


def _size_tuple(size) -> tuple[int, int]:
    from .settings import parse_size

    if isinstance(size, str):
        return parse_size(size)
    try:
        w, h = size
    except (TypeError, ValueError) as e:
        raise ParameterError(f"size must be (width, height) or 'WxH', not {size!r}") from e
    return w, h



def separate_song(song: str | os.PathLike | Audio, out_dir: str | os.PathLike, separator="spleeter", *,
                  overwrite: bool = False, device: str = "auto", progress: bool | ProgressCallback = False,
                  cancel: threading.Event | None = None) -> dict[str, Path]:
    """Split a song into stems and write ``out_dir/<stem>.wav`` (16-bit PCM, the song's rate and channels).

    Parameters
    ----------
    separator : str or neuromv.separate.Separator
        A backend name ('spleeter', 'hpss', 'demucs') or a Separator already loaded (reused across songs).

    Returns
    -------
    dict of str to Path
        The stem files, in the separator's order.

    Raises
    ------
    ParameterError, AudioError, OutputError, SeparationError, Interrupted
        Checked before any slow work: an unknown backend, an output folder that is a file or whose parent is
        missing or unwritable, stem files that exist without ``overwrite`` (checked again, atomically, when they
        are put in place), a stem file that is the song itself. ``cancel`` is checked as the separator's model
        runs (every layer), so a cancelled separation stops within a fraction of a second and leaves no file.
    """
    from .errors import OutputError
    from .separate import Separator, stems_of

    name = separator.name if isinstance(separator, Separator) else separator
    stems = stems_of(name)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file; give a folder for the stems")
    paths = {stem: out_dir / f"{stem}.wav" for stem in stems}
    if out_dir.is_dir():
        for p in paths.values():
            check_output(p, inputs=() if isinstance(song, Audio) else (song,), overwrite=overwrite, kind="stem",
                         suffixes=(".wav",))
    else:  # made below: its parent must exist and be writable
        check_output(out_dir, kind="stem folder")
    check_cancel(cancel)
    sep = separator if isinstance(separator, Separator) else Separator(name, device=device)
    check_cancel(cancel)
    if isinstance(song, Audio):
        check_audible(song)
    else:
        AudioFile(song)  # a decoding pass: silence, corruption and truncation fail before the slow work
    check_cancel(cancel)
    with contextlib.ExitStack() as stack:
        if isinstance(song, Audio):
            label, sr, channels, n = "audio", song.sr, song.channels, song.n_samples
            blocks = song.blocks()
        else:  # decoded block by block: memory does not grow with the song
            reader = stack.enter_context(AudioReader(song))
            label, sr, channels, blocks = str(song), reader.sr, reader.channels, reader
            n = None if reader.duration is None else int(reader.duration * sr)
        log.info("audio: %s, %s, %d Hz, %d channel(s)", label, "?" if n is None else f"{n / sr:.2f} s", sr, channels)
        made_dir = not out_dir.exists()
        out_dir.mkdir(exist_ok=True)
        stack.callback(lambda: made_dir and not any(out_dir.iterdir()) and out_dir.rmdir())  # only when it stays empty
        # every writer is closed (flushed) before any file is moved into place: the stems appear together
        tmps = stack.enter_context(atomic_files([paths[stem] for stem in stems], overwrite=overwrite))
        writers = [stack.enter_context(WavWriter(tmp, sr, channels)) for tmp in tmps]
        t0 = time.perf_counter()
        seconds = 0.0
        parts = stack.enter_context(contextlib.closing(
            sep.stream(blocks, sr, channels, n_samples=n, progress=progress, cancel=cancel)))
        for y in parts:
            for w, stem_block in zip(writers, y):
                w.write(stem_block)
            seconds += y.shape[2] / sr
        elapsed = time.perf_counter() - t0
        log.info("separated %.1f s with %s in %.1f s (%.1fx real time)", seconds, name, elapsed,
                 seconds / max(elapsed, 1e-9))
    for p in paths.values():
        log.debug("wrote %s", p)  # the command line says it at info level, once it treats the run as done
    return paths
