"""Reference images: load any common image safely, fit it to the video's shape, find a song's cover art.

This is the one module that reads image files and cover-art tags (Pillow and mutagen).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageError, NeuroMVError, ParameterError, summary
from .limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from .settings import parse_color  # noqa: F401 - defined with the background setting; also neuromv.image.parse_color

__all__ = ["ImageSource", "load_image", "fit_image", "find_cover_art", "parse_color", "MAX_PIXELS", "MAX_IMAGE_BYTES",
           "MIN_SIDE"]

log = logging.getLogger(__name__)

#: Images declaring more pixels than this are refused before decoding (decompression bombs): see neuromv.limits.
MAX_PIXELS = MAX_IMAGE_PIXELS
#: Images with a side shorter than this carry no picture to learn.
MIN_SIDE = 8

_SIDECAR_STEMS = ("cover", "folder", "front", "album")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


@dataclass(frozen=True)
class ImageSource:
    """Where a reference image comes from: a file, or bytes embedded in a song's tags.

    Attributes
    ----------
    data : bytes or Path
        The encoded image (bytes) or its file.
    description : str
        For the log, e.g. ``"embedded cover art (ID3 APIC) in song.mp3"``.
    """

    data: bytes | Path
    description: str

    def read_bytes(self) -> bytes:
        """The encoded image; a file is read only if it is a regular file of at most MAX_IMAGE_BYTES."""
        return _read(self)[1]


def load_image(source: str | os.PathLike | bytes | ImageSource, *,
               background: tuple[int, int, int] | str = (0, 0, 0)) -> np.ndarray:
    """Decode an image (PNG, JPEG, WebP, GIF (first frame), BMP, TIFF, ...) in any mode to RGB.

    Transparency is composited on ``background``; grayscale, palette, CMYK and 16-bit images are converted; the
    EXIF orientation of photos is applied.

    Parameters
    ----------
    source : path, bytes or ImageSource
    background : (r, g, b) or str
        Colour under transparent pixels.

    Returns
    -------
    np.ndarray [shape=(height, width, 3), dtype=uint8]

    Raises
    ------
    ImageError
        Missing, a directory, empty, not an image, corrupt or truncated, smaller than MIN_SIDE on a side, or
        declaring more than MAX_PIXELS pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    bg = parse_color(background)
    name, data = _read(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{name}: declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), over the limit of "
                                 f"{MAX_PIXELS / 1e6:.0f} MP")
            if min(w, h) < MIN_SIDE:
                raise ImageError(f"{name}: is only {w}x{h} pixels; a reference image needs at least "
                                 f"{MIN_SIDE}x{MIN_SIDE}")
            im.seek(0)  # first frame of an animation
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im, bg)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: too many pixels, refused as a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not a readable image") from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({summary(e)})") from e


def _read(source) -> tuple[str, bytes]:
    if isinstance(source, ImageSource):
        if isinstance(source.data, bytes):
            if len(source.data) > MAX_IMAGE_BYTES:
                raise ImageError(f"{source.description}: {len(source.data) / 2**20:.1f} MB of data, over the limit "
                                 f"of {MAX_IMAGE_BYTES / 2**20:.0f} MB for an image")
            return source.description, source.data
        source = source.data
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("image: no data (0 bytes)")
        if len(source) > MAX_IMAGE_BYTES:
            raise ImageError(f"image: {len(source) / 2**20:.1f} MB of data, over the limit of "
                             f"{MAX_IMAGE_BYTES / 2**20:.0f} MB for an image")
        return "image", bytes(source)
    from ._files import open_input_file

    path = Path(source)
    with open_input_file(path, "image", MAX_IMAGE_BYTES) as f:  # a regular file, size checked before reading
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:  # it grew since it was checked
        raise ImageError(f"{path}: over the limit of {MAX_IMAGE_BYTES / 2**20:.0f} MB for an image")
    if not data:
        raise ImageError(f"{path}: file is empty (0 bytes)")
    return str(path), data


def _to_rgb(im, bg: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image

    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    if im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = a / 255.0 if a.max() > 1.0 else a
        g = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        base = Image.new("RGBA", im.size, bg + (255,))
        im = Image.alpha_composite(base, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def fit_image(image: np.ndarray, width: int, height: int, *, mode: str = "cover",
              background: tuple[int, int, int] | str = (0, 0, 0)) -> np.ndarray:
    """Resize an image to ``width x height`` keeping its aspect ratio.

    Parameters
    ----------
    image : np.ndarray [shape=(h, w, 3), dtype=uint8]
    width, height : int
    mode : {'cover', 'contain'}
        ``cover`` fills the frame and crops the overflow (centred); ``contain`` shows the whole image and pads
        with ``background``.

    Returns
    -------
    np.ndarray [shape=(height, width, 3), dtype=uint8]
    """
    from PIL import Image

    if mode not in ("cover", "contain"):
        raise ParameterError(f"fit must be 'cover' or 'contain', not {mode!r}")
    if width < 1 or height < 1:
        raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
    h, w = image.shape[:2]
    scale = max(width / w, height / h) if mode == "cover" else min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray(image).resize((nw, nh), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), parse_color(background))
    canvas.paste(resized, ((width - nw) // 2, (height - nh) // 2))
    return np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8))


def find_cover_art(song: str | os.PathLike) -> ImageSource | None:
    """A song's cover: embedded art (ID3 APIC, FLAC and Vorbis/Opus pictures, MP4 ``covr``), else a
    ``cover.*`` / ``folder.*`` / ``front.*`` / ``album.*`` image in the song's folder, else None.

    Embedded art of type "front cover" is preferred to other embedded pictures.
    """
    song = Path(song)
    if _readable(song, "audio"):  # mutagen opens the song: never a FIFO or a device
        embedded = _embedded_art(song)
        if embedded is not None:
            return embedded
    try:
        siblings = {p.name.lower(): p for p in song.parent.iterdir()}
    except OSError:
        return None
    for stem in _SIDECAR_STEMS:
        for suffix in _IMAGE_SUFFIXES:
            p = siblings.get(stem + suffix)
            if p is not None and _readable(p, "image"):  # a FIFO or a folder named cover.jpg is passed over
                return ImageSource(p, f"{p.name} next to the song")
    return None


def _readable(path: Path, kind: str) -> bool:
    """Whether ``path`` is a regular, non-empty file (:func:`neuromv._files.check_input_file`); never blocks."""
    from ._files import check_input_file

    try:
        check_input_file(path, kind)
    except NeuroMVError as e:
        log.debug("cover art: %s", e)
        return False
    return True


def _embedded_art(song: Path) -> ImageSource | None:
    import mutagen
    from mutagen.flac import Picture

    try:
        f = mutagen.File(song)
    except Exception as e:  # mutagen raises many kinds on odd files; no art is the answer
        log.debug("no tags read from %s: %s", song, e)
        return None
    if f is None:
        return None
    pictures: list[tuple[int, bytes, str]] = []  # (picture type, data, where)
    tags = getattr(f, "tags", None)
    for pic in getattr(f, "pictures", []) or []:  # FLAC
        pictures.append((pic.type, pic.data, "FLAC picture"))
    if tags is not None:
        if hasattr(tags, "getall"):  # ID3
            for apic in tags.getall("APIC"):
                pictures.append((int(apic.type), apic.data, "ID3 APIC"))
        if hasattr(tags, "get"):
            for cover in tags.get("covr", []) or []:  # MP4
                pictures.append((3, bytes(cover), "MP4 covr"))
            for b64 in tags.get("metadata_block_picture", []) or []:  # Vorbis comments (ogg, opus)
                try:
                    pic = Picture(base64.b64decode(b64))
                    pictures.append((pic.type, pic.data, "Vorbis picture"))
                except Exception:  # a broken picture block is skipped
                    continue
    if not pictures:
        return None
    pictures.sort(key=lambda p: p[0] != 3)  # front cover (type 3) first
    kind, data, where = pictures[0]
    return ImageSource(data, f"embedded cover art ({where}) in {song.name}")
