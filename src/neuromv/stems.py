"""Rendering with stems: where each stem's panel goes (:func:`panel_boxes`, :func:`stem_panels`), the stems
themselves (:func:`stem_audio`, cached by content in a :class:`~neuromv.cache.ContentCache`), composing the panels
into frames (:func:`stem_frames`), and writing a song's stems to files (:func:`separate_song`).

Imports: settings, audio, cache, _files, progress, errors; separate (on use). The plan
(:mod:`neuromv.plan`) builds the panels' CPPNs and latents; :mod:`neuromv.pipeline` encodes the frames.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._files import atomic_files, check_output
from .audio import Audio, AudioFile, AudioReader, WavWriter, check_audible
from .cache import ContentCache
from .progress import ProgressCallback, check_cancel
from .settings import RenderSettings

if TYPE_CHECKING:
    from .plan import Panel

__all__ = ["panel_boxes", "panel_grid", "EMPTY_CELL_COST", "stem_panels", "stem_audio", "stem_frames", "separate_song"]

log = logging.getLogger(__name__)


#: What an empty cell of a stems grid costs in :func:`panel_boxes`, against the distance of the panels' aspect from
#: square (``|log(w / h)|``): one hole is worth panels 1.65x off square, so 4 stems in 16:9 stay a 2x2 grid
#: (panels 1.78:1) rather than 3x2 with two holes (1.19:1).
EMPTY_CELL_COST = 0.5


def panel_grid(n: int, width: int, height: int, layout: str = "auto") -> tuple[int, int]:
    """The (columns, rows) of ``n`` stem panels in a ``width x height`` frame, chosen by the frame's shape so that
    the panels are as close to square as can be: the smallest ``|log(panel width / panel height)| +``
    :data:`EMPTY_CELL_COST` ``* empty cells``.

    'side-by-side': one line of panels, across a wide frame, stacked down a tall one (two panels side by side in
    a 9:16 frame would be slivers); 'grid': any columns and rows, both at least 2 for 3 or more panels (a line is
    'side-by-side'); 'auto': side-by-side for up to 2 stems, else grid. A tie goes to side-by-side's columns (a
    square frame keeps its panels side by side) and to the grid with fewer columns.
    """
    if layout == "auto":
        layout = "side-by-side" if n <= 2 else "grid"
    if layout == "side-by-side":
        candidates = [(n, 1), (1, n)]
    else:
        candidates = [(cols, math.ceil(n / cols)) for cols in range(1, n + 1)]
        candidates = [(c, r) for c, r in candidates if c >= 2 and r >= 2] or candidates

    def cost(grid: tuple[int, int]) -> float:
        cols, rows = grid
        return abs(math.log((width / cols) / (height / rows))) + EMPTY_CELL_COST * (cols * rows - n)

    return min(candidates, key=cost)


def panel_boxes(n: int, width: int, height: int, layout: str = "auto") -> list[tuple[int, int, int, int]]:
    """Where each of ``n`` stem panels goes: ``(x, y, w, h)`` per panel, in pixels, filling the rows of
    :func:`panel_grid` left to right, top to bottom.

    'side-by-side': a line of panels (columns in a wide frame, rows in a tall one); 'grid': the columns and rows
    that keep the panels closest to square; 'blend': every panel is the whole frame; 'auto': side-by-side for up
    to 2 stems, else grid. Each panel's CPPN coordinates follow its own shape
    (:func:`neuromv.cppn.coordinate_grid`): nothing is stretched.
    """
    if layout == "blend":
        return [(0, 0, width, height)] * n
    cols, rows = panel_grid(n, width, height, layout)
    xs = [round(i * width / cols) for i in range(cols + 1)]
    ys = [round(j * height / rows) for j in range(rows + 1)]
    return [(xs[i % cols], ys[i // cols], xs[i % cols + 1] - xs[i % cols], ys[i // cols + 1] - ys[i // cols])
            for i in range(n)]


def stem_panels(settings: RenderSettings) -> list[tuple[str, tuple[int, int, int, int], RenderSettings]]:
    """Each stem's panel of a render with stems: ``(stem, (x, y, w, h), settings)``, the panel's settings being
    its size and the seed ``settings.seed + i`` of the i-th stem (the live preview lays them out the same way)."""
    names = settings.stem_names()
    boxes = panel_boxes(len(names), settings.width, settings.height, settings.layout)
    # a panel has its box's shape, not the video's format
    return [(name, box, replace(settings, seed=settings.seed + i, width=box[2], height=box[3], stems=None,
                                format=None))
            for i, (name, box) in enumerate(zip(names, boxes))]


def stem_audio(audio: Audio, settings: RenderSettings, *, cache: bool = True, progress=False, cancel=None,
               separator=None, cache_root: str | os.PathLike | None = None) -> dict[str, Audio]:
    """The stems ``settings.stem_names()`` of ``audio``, separated by ``settings.separator`` (cached by content).

    ``separator``, a loaded :class:`~neuromv.separate.Separator`, is used instead of loading one; one with a model
    object of its own (not a built-in model) is not cached. ``cache_root``: the folder that holds the
    :class:`~neuromv.cache.ContentCache` ``stems/`` (default: :func:`neuromv.cache.cache_dir`; the server keeps its
    own inside its work folder).

    Returns
    -------
    dict of str to Audio
    """
    from .separate import Separator

    names = settings.stem_names()
    cache = cache and (separator is None or separator.builtin)
    stems_cache = ContentCache("stems", cache_root)
    key = stems_cache.key(f"{settings.separator}:{audio.sr}:{audio.samples.shape}:v2", audio.samples)
    files = {n: stems_cache.path(key, f"{n}.npy") for n in names}
    if cache and all(f.is_file() for f in files.values()):
        try:
            out = {n: Audio(np.load(f, allow_pickle=False), audio.sr) for n, f in files.items()}
            log.info("stems: reusing the cached separation %s", stems_cache.path(key))
            return out
        except (OSError, ValueError) as e:
            log.warning("stem cache: %s; separating again", e)
    t = time.perf_counter()
    sep = separator or Separator(settings.separator, device=settings.device)
    stems = sep.separate(audio, progress=progress, cancel=cancel)
    log.info("stems: separated with %s in %.1f s", settings.separator, time.perf_counter() - t)
    if cache:
        for n, a in stems.items():
            if not stems_cache.store(stems_cache.path(key, f"{n}.npy"), lambda tmp, a=a: _save_npy(tmp, a.samples)):
                break
    return {n: stems[n] for n in names}


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


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



def stem_frames(panels: Sequence[Panel], settings: RenderSettings) -> Iterator[np.ndarray]:
    """The composed frames of a render with stems: each panel's renderer output in its box (or, with the 'blend'
    layout, the mean of the panels), with its stem's name on it when ``settings.labels``.

    Yields
    ------
    np.ndarray [shape=(settings.height, settings.width, 3), dtype=uint8]
    """
    blend = settings.layout == "blend"
    parts = []
    for p in panels:
        x, y, w, h = p.box
        label = None
        if settings.labels:
            mask = _label_mask(p.name, w, h)
            label = (mask > 0, np.where(mask[mask > 0] > 192, 255, 0).astype(np.uint8)[:, None])  # white, outlined
        parts.append((p.box, p, label))
    n_frames = panels[0].z.shape[0]
    for k in range(n_frames):
        if blend:
            acc = np.zeros((settings.height, settings.width, 3), np.float32)
        else:
            canvas = np.zeros((settings.height, settings.width, 3), np.uint8)
        for (x, y, w, h), panel, label in parts:
            f = panel.frame(k)
            if label is not None:
                f[label[0]] = label[1]
            if blend:
                acc += f
            else:
                canvas[y:y + h, x:x + w] = f
        yield (acc / len(parts) + 0.5).astype(np.uint8) if blend else canvas


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
