"""All the settings of one render, in one table, validated in one place (shared by the CLI, the Python API and any
front end).

The table is :class:`RenderSettings` itself: each field is declared with :func:`setting`, which records its default,
its range or choices (constants of :mod:`neuromv.limits` and of this module), its help text, its command-line flag
and the group it is shown in. :data:`SETTINGS` lists the rows (:class:`Setting`); from them come the validation
(:meth:`RenderSettings.__post_init__`), the options of ``neuromv render`` and ``neuromv demo``
(:func:`neuromv.cli.add_setting_options`), the command line the live preview shows
(:func:`neuromv.serve.cli_command`) and the page's defaults (:func:`neuromv.serve.page_config`); tests check the
README's option table against them. Adding a knob: one :func:`setting` field here, one control on the page
(docs/architecture.md).

This is the ground floor: it imports only :mod:`neuromv.errors` and :mod:`neuromv.limits` (no numpy, torch or
librosa), so the CLI starts quickly and every layer above may import it.
"""

from __future__ import annotations

import numbers
import re
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .errors import ParameterError
from .limits import (ANALYSIS_SR, MAX_FIT_STEPS, MAX_FPS, MAX_GAIN, MAX_HIDDEN, MAX_NAME_CHARS, MAX_PAN,
                     MAX_SECONDS, MAX_SEED, MAX_SIDE, MAX_SMOOTH, MAX_ZOOM, MIN_FPS, check_mels, number, show)
from .limits import MAX_LOOP_SECONDS, MIN_LOOP_SECONDS

__all__ = ["RenderSettings", "Setting", "SETTINGS", "GROUPS", "setting", "parse_size", "parse_color", "with_quality",
           "Z_GAIN", "PULSE_GAIN", "FIT_STEPS", "FIT_QUALITIES", "MOTIONS", "STRUCTURES", "FIT_MODES", "LAYOUTS",
           "PRECISIONS", "X264_PRESETS", "QUALITY", "SEPARATOR_STEMS", "PALETTES", "MAX_PALETTE_COLORS",
           "parse_palette", "TONE", "CHROMA", "FORMATS", "DEFAULT_FORMAT", "format_size", "has_shape", "check_shape",
           "AUDIO_CHOICES"]

#: z (unit RMS norm) times this, times the reactivity, is what the CPPN sees. With N(0, 1) weights, 0.3 keeps
#: the shapes recognisable from frame to frame while beats visibly move them (docs/method.md).
Z_GAIN = 0.3
#: With a reference image, z times this, times the reactivity, drives the pulse (neuromv.cppn). Chosen so that, on
#: real music, a fitted image moves about as much as the abstract CPPN at the same reactivity while single frames
#: still show the picture (docs/reference-images.md).
PULSE_GAIN = 2.5
#: Default Adam steps of the legacy (format 1) image-mode CPPN fit (neuromv.reference.FitOptions).
FIT_STEPS = 3000
#: ``--fit-quality``: the picture fit's presets, fastest first (neuromv.picture.PICTURE_QUALITIES holds them).
FIT_QUALITIES = ("draft", "standard", "high")
#: ``--motion``: how the music moves a fitted picture (neuromv.motion): tone, flow and breath; only the tone
#: (colours move, shapes stay); only flow and breath (shapes move, colours stay).
MOTIONS = ("all", "colour", "shape")
#: ``--structure``: whether the song's cues (beats, sections, drops: neuromv.structure) drive the picture; 'off'
#: is the mel envelope alone.
STRUCTURES = ("on", "off")
#: ``--audio``: the song as the video's sound track, or a silent video (``--no-audio``).
AUDIO_CHOICES = ("on", "off")
#: How an image is fitted to the video's shape.
FIT_MODES = ("cover", "contain")
#: How stem panels are composed.
LAYOUTS = ("auto", "side-by-side", "grid", "blend")
#: Arithmetic of the compiled CPU kernel (neuromv.renderer.resolve_precision).
PRECISIONS = ("auto", "float32", "int16")
#: The encoder's speed presets, fastest first (:class:`neuromv.video.VideoWriter` takes the same list): x264's own,
#: and NeuroMV's 'cppn' (x264 superfast tuned for CPPN frames: :data:`neuromv.video.PRESET_CPPN`).
X264_PRESETS = ("ultrafast", "cppn", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow")
#: The stems each separation backend makes, in its order (:data:`neuromv.separate.BACKENDS` is this table).
SEPARATOR_STEMS: dict[str, tuple[str, ...]] = {
    "spleeter": ("vocals", "accompaniment"), "hpss": ("harmonic", "percussive"),
    "demucs": ("drums", "bass", "other", "vocals")}

#: The abstract CPPN's colours (:class:`neuromv.cppn.CPPN`'s ``tone`` and ``chroma``): the output layer's
#: pre-activations are scaled by TONE, and their differences between channels by CHROMA. With N(0, 1) weights the raw
#: sigmoid (1, 1) saturates to flat primaries (24-55 % of channel values clipped, colourfulness 160-220); these keep
#: the whole gamut without clipping and the colours rich, not garish (docs/look.md).
TONE = 0.4
CHROMA = 0.45
#: ``--palette NAME``: the curated palettes (:mod:`neuromv.palette` builds their colour tables). Each is
#: ``("stops", (colours...))``, interpolated in OKLab from dark to light, or ``("cosine", (a, b, c, d))``, Inigo
#: Quilez's ``a + b cos(2 pi (c t + d))`` per channel.
PALETTES: dict[str, tuple[str, tuple]] = {
    "ember": ("stops", ("#1a1230", "#5a1e6e", "#e0465a", "#f5aa50", "#f5e6c3")),
    "ocean": ("stops", ("#0a1630", "#0b3c6e", "#1e8ca0", "#78d2c8", "#e6f5eb")),
    "neon": ("stops", ("#120a28", "#461488", "#d21e9b", "#28c8e6", "#e1f2f8")),
    "forest": ("stops", ("#0c1812", "#1e412a", "#5a7d32", "#c8b450", "#f0e6be")),
    "vapor": ("stops", ("#1e143c", "#6e3ca0", "#f078b4", "#78dcdc", "#f5e1f0")),
    "noir": ("stops", ("#0a0a0e", "#1c2333", "#4b5a78", "#a5afc3", "#ebebf0")),
    "dusk": ("cosine", ((0.5, 0.42, 0.45), (0.42, 0.36, 0.4), (1.0, 1.0, 0.8), (0.0, 0.08, 0.32))),
    "spectrum": ("cosine", ((0.52, 0.52, 0.52), (0.3, 0.3, 0.3), (1.0, 1.0, 1.0), (0.0, 0.33, 0.67))),
}
#: A custom palette (``--palette '#hex,#hex,...'``) has from 2 to this many colours.
MAX_PALETTE_COLORS = 16

#: ``--format``: the frame's shape and its size at each ``--quality`` (width, height): the shorter side is the
#: quality's (216, 720 or 1080 pixels), so 9:16 high is the 1080x1920 of Reels, Shorts, TikTok and Spotify Canvas,
#: 1:1 high and 4:5 high the 1080x1080 and 1080x1350 of square and portrait posts. Every size is even (H.264).
FORMATS: dict[str, dict[str, tuple[int, int]]] = {
    "16:9": {"draft": (384, 216), "standard": (1280, 720), "high": (1920, 1080)},
    "9:16": {"draft": (216, 384), "standard": (720, 1280), "high": (1080, 1920)},
    "1:1": {"draft": (216, 216), "standard": (720, 720), "high": (1080, 1080)},
    "4:5": {"draft": (216, 270), "standard": (720, 900), "high": (1080, 1350)},
}
#: The shape of the default size (``format`` None keeps the size's own shape).
DEFAULT_FORMAT = "16:9"
#: How far (relative) a size's aspect may be from its format's: sizes rounded to even pixels still match.
_SHAPE_TOLERANCE = 0.01

#: ``--quality`` presets: size (:data:`FORMATS`, in the default format; :func:`with_quality` takes the settings'
#: format), x264 preset and crf. Options given explicitly override them. (bfloat16 is not in them: on CPU the
#: float32 kernel is faster than torch's bfloat16, and bfloat16 frames show visible noise.)
QUALITY: dict[str, dict] = {
    "draft": dict(preset="ultrafast", crf=28),     # a quick look at a whole song
    "standard": dict(preset="cppn", crf=18),       # the defaults
    "high": dict(preset="veryfast", crf=16),
}
for _name, _q in QUALITY.items():
    _q["width"], _q["height"] = FORMATS[DEFAULT_FORMAT][_name]
del _name, _q


def format_size(format: str, quality: str = "standard") -> tuple[int, int]:
    """The size (width, height) of ``format`` (a key of :data:`FORMATS`) at ``quality``.

    Raises
    ------
    ParameterError
        An unknown format or quality (one line naming the choices).
    """
    if format not in FORMATS:
        raise ParameterError(f"format must be one of {', '.join(FORMATS)}, not {show(format)}")
    if quality not in QUALITY:
        raise ParameterError(f"quality must be one of {', '.join(QUALITY)}, not {show(quality)}")
    return FORMATS[format][quality]


def has_shape(width: int, height: int, format: str) -> bool:
    """Whether a ``width x height`` frame has the shape of ``format`` (``'9:16'``), within 1 % (so a size rounded
    to even pixels, 854x480 for 16:9 say, still has it)."""
    a, b = (int(v) for v in format.split(":"))
    return abs((width * b) / (height * a) - 1) <= _SHAPE_TOLERANCE


def check_shape(width: int, height: int, format: str, what: str = "size") -> None:
    """Raise :class:`ParameterError` (one line) when ``width x height`` does not have the shape of ``format``."""
    if not has_shape(width, height, format):
        w, h = FORMATS[format]["standard"]
        raise ParameterError(f"{what} {width}x{height} is not {format}: give a size of that shape ({w}x{h} at "
                             f"standard quality), or only the size, or only the format")


def _quality_of(width: int, height: int) -> str | None:
    """The quality whose size, in any format, is ``width x height``; None: a size of no preset."""
    for sizes in FORMATS.values():
        for quality, size in sizes.items():
            if size == (width, height):
                return quality
    return None


#: The groups settings are shown in (``--help``, the README's table): key -> title.
GROUPS: dict[str, str] = {
    "picture": "picture and motion",
    "colour": "colour",
    "image": "reference image",
    "structure": "music structure (beats, bars, sections, drops)",
    "stems": "stems (one visualization per instrument)",
    "encoding": "encoding and run",
}


def with_quality(settings: "RenderSettings", quality: str) -> "RenderSettings":
    """``settings`` with the size (in the settings' format: :data:`FORMATS`), x264 preset and crf of a
    :data:`QUALITY` preset."""
    if quality not in QUALITY:
        raise ParameterError(f"quality must be one of {', '.join(QUALITY)}, not {quality!r}")
    width, height = format_size(settings.format or DEFAULT_FORMAT, quality)
    return replace(settings, **{**QUALITY[quality], "width": width, "height": height})


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``'1280x720'`` -> ``(1280, 720)``."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ParameterError(f"size must look like WIDTHxHEIGHT (e.g. 1280x720), not {text!r}")
    return int(m.group(1)), int(m.group(2))


_NAMED_COLORS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128), "grey": (128, 128, 128)}


def parse_color(text: str | tuple) -> tuple[int, int, int]:
    """``'black'``, ``'#102030'``, ``'16,32,48'`` or a tuple -> (r, g, b) in 0-255.

    Raises
    ------
    ParameterError
        Not a colour (``"background must be a colour like ..."``).
    """
    bad = ParameterError(f"background must be a colour like black, white, '#1a2b3c' or '26,43,60', not {show(text)}")
    if isinstance(text, tuple):
        rgb = text
    elif not isinstance(text, str) or len(text) > 64:
        raise bad
    else:
        t = str(text).strip().lower()
        if t in _NAMED_COLORS:
            return _NAMED_COLORS[t]
        try:
            if t.startswith("#") and len(t) == 7:
                rgb = tuple(int(t[i:i + 2], 16) for i in (1, 3, 5))
            else:
                rgb = tuple(int(v) for v in t.split(","))
        except ValueError:
            rgb = ()
    # numbers.Integral: int and numpy's integers (registered there), without importing numpy
    if len(rgb) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= 255
                                for v in rgb):
        raise bad
    return tuple(int(v) for v in rgb)


_HEX_RE = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def parse_palette(text) -> str | tuple[tuple[int, int, int], ...] | None:
    """``--palette``'s value -> None (the network's own colours), a name of :data:`PALETTES`, ``'cover'``, or the
    colours of a custom list (``'#ff8800,#123,...'``: 2 to :data:`MAX_PALETTE_COLORS` hex colours) as (r, g, b)
    tuples in 0-255.

    Raises
    ------
    ParameterError
        None of those (one line naming the palettes).
    """
    if text is None:
        return None
    names = ", ".join(PALETTES)
    if not isinstance(text, str) or len(text) > 8 * MAX_PALETTE_COLORS + 16:
        raise ParameterError(f"palette must be a name ({names}), 'cover' or a list of hex colours like "
                             f"'#102040,#f0a030', not {show(text)}")
    t = text.strip().lower()
    if t in PALETTES or t == "cover":
        return t
    if "," not in t and not t.startswith("#"):
        raise ParameterError(f"unknown palette {show(text)}; choose one of {names}, 'cover' or a list of hex colours "
                             f"like '#102040,#f0a030'")
    parts = [p.strip() for p in t.split(",")]
    colours = []
    for p in parts:
        m = _HEX_RE.fullmatch(p)
        if not m:
            raise ParameterError(f"palette colour {show(p)} is not a hex colour like #f0a030 or #fa3")
        h = m.group(1)
        h = "".join(c * 2 for c in h) if len(h) == 3 else h
        colours.append(tuple(int(h[i:i + 2], 16) for i in (0, 2, 4)))
    if not 2 <= len(colours) <= MAX_PALETTE_COLORS:
        raise ParameterError(f"a palette has 2 to {MAX_PALETTE_COLORS} colours, not {len(colours)}")
    return tuple(colours)


def _check_palette(s: "RenderSettings", value) -> None:
    parse_palette(value)


# -- the table ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One row of the settings table: a field of :class:`RenderSettings` and everything said about it.

    Attributes
    ----------
    name : str
        The field's name (``pan_x``).
    default
        Its default value.
    group : str
        A key of :data:`GROUPS`: where ``--help`` and the README show it.
    help : str
        The ``--help`` text, without the default (the CLI appends ``(default: ...)``).
    doc : str
        The longer description of :class:`RenderSettings`'s docstring (default: ``help``).
    kind : type
        ``float``, ``int``, ``str`` or ``bool``: what the command line converts the text to (bool: a switch).
    flag : str or None
        The command-line option (``--pan-x``); None: set otherwise (width and height: ``--size``).
    metavar : str or None
        The option's placeholder in ``--help`` (None: argparse's, from the flag or the choices).
    choices : tuple or None
        The values allowed, when a list.
    cli_choices : bool
        Give ``choices`` to argparse too (False: the value is checked with the settings' own message).
    lo, hi : float or None
        The range of a number (from :mod:`neuromv.limits`); ``integer``, ``lo_open`` and ``unit`` as in
        :func:`neuromv.limits.number`; ``optional``: None is allowed too.
    label : str
        The setting's name in error messages (default: ``name``).
    message : str or None
        The error message for a value not in ``choices``, with ``{value}``, ``{choices}`` (``a, b, c``) or
        ``{either}`` (``'a', 'b' or 'c'``) in it.
    check : callable or None
        ``check(settings, value)`` raising :class:`ParameterError`: a check no range or list can say.
    default_text : str or None
        What ``--help`` and the README say the default is, when not the value itself; ``""``: ``--help`` says
        nothing (the help text does).
    quality : bool
        ``--quality`` sets it too: on the command line its default is the preset's.
    """

    name: str
    default: Any
    group: str
    help: str
    doc: str = ""
    kind: type = str
    flag: str | None = None
    metavar: str | None = None
    choices: tuple | None = None
    cli_choices: bool = True
    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    unit: str = ""
    optional: bool = False
    label: str = ""
    message: str | None = None
    check: Callable[[Any, Any], None] | None = None
    default_text: str | None = None
    quality: bool = False

    def validate(self, settings: "RenderSettings") -> None:
        """Check this setting's value in ``settings``.

        Raises
        ------
        ParameterError
            One line naming the setting, what it allows and the value.
        """
        value = getattr(settings, self.name)
        if self.optional and value is None:
            return
        if self.lo is not None:
            number(self.label, value, self.lo, self.hi, integer=self.integer, lo_open=self.lo_open, unit=self.unit)
        if self.choices is not None and (not isinstance(value, str) or value not in self.choices):
            message = self.message or "{label} must be one of {choices}, not {value}"
            either = " or ".join([", ".join(repr(c) for c in self.choices[:-1]), repr(self.choices[-1])])
            raise ParameterError(message.format(label=self.label, choices=", ".join(self.choices), either=either,
                                                value=show(value)))
        if self.kind is bool and not isinstance(value, bool):
            raise ParameterError(f"{self.label} must be true or false, not {show(value)}")
        if self.check is not None:
            self.check(settings, value)


_ROW = "neuromv.setting"


def setting(default, group: str, help: str, **row):
    """A field of :class:`RenderSettings` with its row of the table (the keyword arguments of :class:`Setting`;
    ``flag`` defaults to ``--name-with-dashes``, ``kind`` to the default's type, ``label`` to the name;
    ``flag=None`` for a field with no option of its own)."""
    if group not in GROUPS:
        raise ValueError(f"unknown settings group {group!r}")
    return field(default=default, metadata={_ROW: dict(default=default, group=group, help=help, **row)})


def _check_size(s: "RenderSettings", _value) -> None:
    for v in (s.width, s.height):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
            raise ParameterError(f"size must be from 1x1 to {MAX_SIDE}x{MAX_SIDE} pixels, not "
                                 f"{show(s.width, 20)}x{show(s.height, 20)}")


def _check_mels(s: "RenderSettings", value) -> None:
    check_mels(value, s.fps, ANALYSIS_SR)


def _check_name(what: str, pattern: str):
    """A check that the value is a short name matching ``pattern``; ``what``: the message after 'must be'."""
    def check(s: "RenderSettings", value) -> None:
        if not (isinstance(value, str) and len(value) <= MAX_NAME_CHARS and re.fullmatch(pattern, value)):
            raise ParameterError(f"{what}, not {show(value)}")
    return check


def _check_background(s: "RenderSettings", value) -> None:
    parse_color(value)


@dataclass(frozen=True)
class RenderSettings:
    """Everything that decides how a song becomes a video.

    Each field is a row of the settings table (:data:`SETTINGS`); the Attributes below are written from it.
    """

    # -- picture and motion
    fps: float = setting(
        30.0, "picture", "frames per second", lo=MIN_FPS, hi=MAX_FPS,
        doc="Video frame rate; also the feature rate (hop = 1/fps s, window = 2/fps s).")
    width: int = setting(
        1280, "picture", "video width in pixels", flag=None, check=_check_size, quality=True,
        doc="Video width in pixels (H.264 needs even numbers: odd ones are rounded up by :meth:`even_size`); "
            "``--size WxH`` on the command line.")
    height: int = setting(
        720, "picture", "video height in pixels", flag=None, check=_check_size, quality=True,
        doc="Video height in pixels (rounded up to even like the width).")
    format: str | None = setting(
        None, "picture", "the frame's shape: 16:9, 9:16 (vertical: Reels, Shorts, TikTok, Spotify Canvas), 1:1 or "
                         "4:5, at the --quality's size; a --size given with it must have its shape",
        kind=str, metavar="SHAPE", choices=tuple(FORMATS), cli_choices=False, optional=True,
        message="format must be one of {choices}, not {value}", default_text="the size's (16:9)",
        doc="The frame's shape, a key of :data:`FORMATS` ('16:9', '9:16', '1:1', '4:5'); None (default): the "
            "size's own shape. A size of the :data:`FORMATS` table (a preset's, the default 1280x720 included) "
            "becomes the format's size at the same quality, so ``RenderSettings(format='9:16')`` is 720x1280; any "
            "other size must have the format's shape (within 1 %), else :class:`ParameterError`. The CPPN's "
            "coordinates follow the frame's shape (the shorter side spans ``2 * zoom``): nothing is stretched.")
    n_mels: int = setting(
        32, "picture", "mel bands = size of the latent z", check=_check_mels,
        doc="Mel bands = size of z (at most :func:`neuromv.limits.max_mels` at the frame rate).")
    smooth: float = setting(
        0.2, "picture", "release time of the feature envelope; 0 = none", metavar="SECONDS", lo=0, hi=MAX_SMOOTH,
        unit=" seconds", doc="Release time of the feature envelope in seconds (0: none). Onsets stay instant.")
    reactivity: float = setting(
        1.0, "picture", "how strongly the music moves the picture; 0 = still", lo=0, hi=MAX_GAIN,
        doc="How strongly the music moves the picture: the CPPN sees ``Z_GAIN * reactivity * z``, z having unit "
            "RMS norm. 0 is a still picture, 1 (default) pulses clearly without losing the shapes, 2 is wild. With "
            "``structure`` on it also scales the hits (kicks, steps, bursts) of :mod:`neuromv.structure`.")
    hidden: int = setting(
        32, "picture", "width of the CPPN's 5 hidden layers", lo=1, hi=MAX_HIDDEN, integer=True,
        doc="Width of the CPPN's 5 hidden layers.")
    seed: int = setting(
        0, "picture", "seed of the CPPN's weights: another seed, another look", lo=0, hi=MAX_SEED, integer=True,
        doc="Seed of the CPPN's weights: same seed and song, same video.")
    zoom: float = setting(
        1.0, "picture", "coordinate scale: larger shows smaller, busier patterns", lo=0, hi=MAX_ZOOM, lo_open=True,
        doc="Coordinate scale: larger values show more of the pattern (smaller features).")
    pan_x: float = setting(
        0.0, "picture", "move the view right (positive) or left over the pattern, in the CPPN's coordinates; the "
                        "frame's shorter side spans 2 x zoom of them", metavar="X", lo=-MAX_PAN, hi=MAX_PAN,
        label="pan-x",
        doc="Centre of the view in the CPPN's coordinates, horizontally (the shorter side of the frame spans "
            "``2 * zoom`` of them): moves the camera over the pattern.")
    pan_y: float = setting(
        0.0, "picture", "move the view down (positive) or up", metavar="Y", lo=-MAX_PAN, hi=MAX_PAN, label="pan-y",
        doc="Centre of the view, vertically (y grows downwards).")
    # -- colour: applied to each pixel's final colour (neuromv.renderer.color_matrix)
    hue: float = setting(
        0.0, "colour", "rotate every colour's hue, -360 to 360", metavar="DEGREES", lo=-360, hi=360, unit=" degrees",
        doc="Hue rotation in degrees about the grey axis (the colour adjustments are applied to each pixel's final "
            "colour: :func:`neuromv.renderer.color_matrix`).")
    saturation: float = setting(
        1.0, "colour", "0 grey, 1 unchanged, 2 twice as vivid", lo=0, hi=MAX_GAIN,
        doc="Saturation (0: grey, 1: unchanged, 2: twice as vivid).")
    brightness: float = setting(
        0.0, "colour", "added to every colour, -1 to 1", lo=-1, hi=1,
        doc="Brightness added (-1 to 1; 0: unchanged).")
    contrast: float = setting(
        1.0, "colour", "contrast around mid-grey: below 1 flatter, above 1 harder", lo=0, hi=MAX_GAIN,
        doc="Contrast around mid-grey (1: unchanged).")
    tone: float = setting(
        TONE, "colour", "how hard the abstract network's colours are pushed: 1 = the raw sigmoid (flat, clipped "
                        "primaries), lower = softer", lo=0, hi=MAX_GAIN, lo_open=True,
        doc="The abstract CPPN's output gain (:class:`neuromv.cppn.CPPN`'s ``tone``): its colour pre-activations "
            "are scaled by it before the sigmoid. 1 is the raw network of N(0, 1) weights, whose colours clip to "
            "flat primaries; the default keeps the whole gamut without clipping. A fitted picture ignores it.")
    chroma: float = setting(
        CHROMA, "colour", "how independent the abstract network's three colour channels are: 1 = raw (every "
                          "hue), 0 = greys", lo=0, hi=MAX_GAIN,
        doc="The abstract CPPN's colour spread (:class:`neuromv.cppn.CPPN`'s ``chroma``): the differences between "
            "its three channels' pre-activations are scaled by it (0: one shared channel, greys; 1: the raw "
            "network). A fitted picture ignores it.")
    palette: str | None = setting(
        None, "colour", "colour the picture with a palette: a name (ember, ocean, neon, forest, vapor, noir, "
                        "dusk, spectrum), cover (the cover art's colours) or a list '#hex,#hex,...'",
        kind=str, metavar="NAME|cover|#HEX,...", check=_check_palette, optional=True,
        default_text="the network's own colours",
        doc="A gradient map (:mod:`neuromv.palette`): each pixel's lightness picks its colour along the palette, "
            "interpolated in OKLab. A name of :data:`PALETTES`, 'cover' (the 8 dominant colours of the song's cover "
            "art or ``image``) or 2 to :data:`MAX_PALETTE_COLORS` hex colours; None: the network's own colours. "
            "Hue, brightness and contrast act before it (they move the pattern along the palette).")
    # -- encoding and run
    crf: int = setting(
        18, "encoding", "x264 quality, 0-51, lower is better", lo=0, hi=51, integer=True, quality=True,
        doc="x264 constant rate factor (0-51; lower is better quality and larger files); NVENC's constant quality.")
    preset: str = setting(
        "cppn", "encoding", "x264 speed preset: ultrafast, cppn (superfast tuned for these frames), superfast ... "
                            "veryslow", choices=X264_PRESETS,
        cli_choices=False, message="preset must be one of {choices}; not {value}", quality=True,
        doc="x264 speed preset, one of :data:`X264_PRESETS`: x264's own, or 'cppn' (default), x264 superfast "
            "tuned for CPPN frames (:data:`neuromv.video.PRESET_CPPN`): about a third less encoding time than "
            "superfast, with slightly smaller files of the same quality (docs/performance.md).")
    codec: str = setting(
        "libx264", "encoding", "video encoder: libx264 (default), libx265, or a GPU one such as h264_nvenc (NVIDIA)",
        default_text="", check=_check_name("codec must be an FFmpeg encoder name such as libx264 or h264_nvenc",
                                           r"[a-z0-9_-]+"),
        doc="FFmpeg video encoder: 'libx264' (default), 'libx265', or a hardware one such as 'h264_nvenc' (NVIDIA "
            "GPUs).")
    gop: float = setting(
        10.0, "encoding", "seconds of video per group of pictures: each opens with a key frame and is encoded by a "
                          "fresh encoder (a render on --ray is cut between them and equals a one-machine render bit "
                          "for bit)", metavar="SECONDS", lo=0, hi=MAX_SECONDS, lo_open=True, unit=" seconds",
        doc="Seconds of video per group of pictures (:class:`neuromv.video.VideoWriter`'s ``gop``; libx264 and "
            "libx265): each is encoded by a fresh encoder and opens with an IDR frame, so its bytes depend on its "
            "own frames only; a segmented render on Ray (:mod:`neuromv.segments`) cuts the song between them.")
    start: float = setting(
        0.0, "encoding", "start of the excerpt to render", metavar="SECONDS", lo=0, hi=MAX_SECONDS, unit=" seconds",
        doc="Start of the excerpt of the song to render, in seconds.")
    duration: float | None = setting(
        None, "encoding", "length of the excerpt", kind=float, metavar="SECONDS", lo=0, hi=MAX_SECONDS,
        lo_open=True, unit=" seconds", optional=True, default_text="to the end",
        doc="Length of the excerpt in seconds (None: to the end).")
    loop: float | None = setting(
        None, "encoding", "render a seamless loop this long from the song's chorus (or its most energetic stretch); "
                          "a --start other than 0 chooses the stretch", kind=float, metavar="SECONDS",
        lo=MIN_LOOP_SECONDS, hi=MAX_LOOP_SECONDS, unit=" seconds", optional=True, default_text="off",
        doc="Length in seconds of a seamless loop to render instead of the song (None: no loop): the stretch is the "
            "song's chorus (its most repeated section, the most energetic time it plays, from a downbeat), else its "
            "most energetic window, unless ``start`` is not 0; the last frame flows into the first "
            "(:mod:`neuromv.loop`, docs/loops.md).")
    audio: str = setting(
        "on", "encoding", "the song as the video's sound track; off (or --no-audio): a silent video",
        choices=AUDIO_CHOICES, message="audio must be {either}, not {value}",
        doc="Whether the video carries the song's audio: 'on' (default) or 'off' (a silent video, as streaming "
            "services' canvas clips are; ``--no-audio``). Animated WebP and GIF never have audio.")
    precision: str = setting(
        "auto", "encoding", "arithmetic of the CPU kernel: float32 exact, int16 faster and within 2 levels; auto = "
                            "int16 where the CPU has AVX-512 VNNI", choices=PRECISIONS,
        doc="Arithmetic of the compiled CPU kernel (abstract CPPNs on CPU), one of :data:`PRECISIONS`: 'float32' is "
            "exact; 'int16' runs the hidden layers in 16-bit fixed point with exact integer sums, faster and within "
            "2 levels of float32 on >= 99.9 % of channel values; 'auto' (default) takes int16 where the CPU has "
            "AVX-512 VNNI, else float32. Other render paths compute in float32 whatever this says "
            "(``neuromv.renderer.resolve_precision``).")
    device: str = setting(
        "auto", "encoding", "auto, cpu or cuda",
        check=_check_name("device must be 'auto', 'cpu' or 'cuda'", r"auto|cpu|cuda(:\d+)?"),
        doc="'auto', 'cpu' or 'cuda' (or 'cuda:N').")
    # -- reference image
    fit: str = setting(
        "cover", "image", "fill the frame and crop (cover) or show the whole image (contain)", choices=FIT_MODES,
        message="fit must be {either}, not {value}",
        doc="Reference image: fill the frame and crop the overflow ('cover'), or show all of it on the background "
            "('contain').")
    background: str = setting(
        "black", "image", "colour under transparency and around a 'contain' image: black, white, #rrggbb, r,g,b",
        metavar="COLOUR", check=_check_background,
        doc="Colour under transparent pixels and around a 'contain' image: black, white, '#rrggbb' or 'r,g,b' "
            "(:func:`parse_color`).")
    fit_quality: str = setting(
        "standard", "image", "the image fit: draft (seconds), standard or high (sharper, slower)",
        choices=FIT_QUALITIES, message="fit quality must be {either}, not {value}", label="fit quality",
        doc="How closely and at what resolution the picture network is fitted to the image "
            "(:data:`neuromv.picture.PICTURE_QUALITIES`): 'draft', 'standard' (about a minute at most on 2 "
            "cores) or 'high'.")
    fit_steps: int | None = setting(
        None, "image", "override the fit quality's number of training steps", kind=int, metavar="N", lo=1,
        hi=MAX_FIT_STEPS, integer=True, optional=True, label="fit steps", default_text="the quality's",
        doc="Adam steps of the image fit; None: the fit quality's.")
    motion: str = setting(
        "all", "image", "how the music moves a fitted picture: all (tone, flow and breath), colour or shape",
        choices=MOTIONS, message="motion must be {either}, not {value}",
        doc="How the music moves a fitted picture (:mod:`neuromv.motion`): 'all' (a tone swing along the "
            "picture's regions, a flow along its structure and a breath on the bass), 'colour' (the tone only) or "
            "'shape' (flow and breath only).")
    # -- music structure (neuromv.structure)
    structure: str = setting(
        "on", "structure", "let the song's beats, bars, sections and drops drive the picture; off: the mel "
                           "envelope alone", choices=STRUCTURES, message="structure must be {either}, not {value}",
        doc="Whether the song's cues (:mod:`neuromv.structure`: a kick on every beat, a look per section, a burst "
            "on a drop, rest in silence) drive the picture: 'on' (default) or 'off' (the mel envelope alone, as "
            "before cues existed).")
    beat: float = setting(
        1.0, "structure", "strength of the kick on every beat (zoom and brightness pulse); 0: none", lo=0, hi=10,
        doc="Strength of the beat kick, a zoom and brightness pulse with a fast attack and a release over the beat "
            "(downbeats stronger, drops a burst); 0: none, 2: twice as strong.")
    variety: float = setting(
        1.0, "structure", "how different each section looks (pattern, palette, zoom); 0: one look", lo=0, hi=10,
        doc="How far each section's look (latent offset, hue and zoom) is from the first section's; a returning "
            "section returns to its look. 0: the whole song looks the same.")
    transition: float = setting(
        1.0, "structure", "length of the change of look into a new section, in bars; 0: a cut", metavar="BARS",
        lo=0, hi=16, unit=" bars",
        doc="How long the change of look into a new section takes, in bars (it ends on the section's first "
            "downbeat); 0 cuts.")
    # -- stems
    stems: str | None = setting(
        None, "stems", "render one panel per stem, e.g. vocals,accompaniment or all", metavar="LIST|all",
        default_text="the whole song",
        doc="Render one visualization per stem: a comma-separated list of the separator's stems, or 'all'. None: "
            "the whole song, one picture (checked by :meth:`stem_names`, after the separator).")
    separator: str = setting(
        "spleeter", "stems", "how to split the song: spleeter (vocals/accompaniment, default), hpss "
                             "(harmonic/percussive), demucs (drums/bass/other/vocals; optional extra)",
        choices=tuple(SEPARATOR_STEMS), default_text="", message="unknown separator {value}; choose one of {choices}",
        doc="The separation backend for ``stems``: 'spleeter', 'hpss' or 'demucs' (:data:`SEPARATOR_STEMS`).")
    layout: str = setting(
        "auto", "stems", "panels side by side, in a grid, or every stem layered in one frame (blend); auto: "
                         "side-by-side for 2, grid for more", choices=LAYOUTS,
        message="layout must be one of {choices}; not {value}",
        doc="How stem panels are composed: 'auto' (side-by-side for 2, grid for 3 or more), 'side-by-side', 'grid' "
            "or 'blend' (every stem's CPPN layered in one full frame).")
    labels: bool = setting(
        False, "stems", "write each stem's name on its panel", default_text="",
        doc="Write each stem's name on its panel.")

    def __post_init__(self) -> None:
        # every row's check, in the table's order; every range comes from neuromv.limits, where each is explained
        for row in SETTINGS:
            row.validate(self)
        if self.format is not None and not has_shape(self.width, self.height, self.format):
            quality = _quality_of(self.width, self.height)
            if quality is None:  # a size of the user's own: it must have the format's shape
                check_shape(self.width, self.height, self.format)
            # a preset's size turns into the format's at the same quality (frozen: set as __init__ would)
            width, height = FORMATS[self.format][quality]
            object.__setattr__(self, "width", width)
            object.__setattr__(self, "height", height)
        if self.duration is not None and self.duration * self.fps < 1:
            raise ParameterError(f"duration {self.duration:g} s is shorter than one frame ({1 / self.fps:.3g} s "
                                 f"at {self.fps:g} fps)")
        if self.stems is not None:
            self.stem_names()  # validates the names against the separator's stems (the separator is checked)

    def stem_names(self) -> tuple[str, ...]:
        """The stems to render, in the separator's order; () when ``stems`` is None."""
        if self.stems is None:
            return ()
        if self.separator not in SEPARATOR_STEMS:
            raise ParameterError(f"unknown separator {self.separator!r}; choose one of {', '.join(SEPARATOR_STEMS)}")
        known = SEPARATOR_STEMS[self.separator]
        if not isinstance(self.stems, str) or not self.stems.strip():
            raise ParameterError(f"stems must be a comma-separated list or 'all', not {show(self.stems)}")
        if self.stems.strip().lower() == "all":
            return known
        asked = [s.strip().lower() for s in self.stems.split(",") if s.strip()]
        unknown = [s for s in asked if s not in known]
        if unknown:
            raise ParameterError(f"unknown stem(s) {show(', '.join(unknown), 80)} for separator {self.separator!r}; "
                                 f"it makes: {', '.join(known)}")
        if len(set(asked)) != len(asked):
            raise ParameterError(f"stems named twice: {show(self.stems)}")
        return tuple(s for s in known if s in asked)

    def color(self):
        """The colour adjustments as an affine matrix for :class:`~neuromv.renderer.Renderer` (np.ndarray
        [shape=(3, 4)]), or None when there are none: :func:`neuromv.renderer.color_matrix` of hue, saturation,
        brightness and contrast. A convenience of the API: it imports the renderer (torch) when called; nothing in
        NeuroMV calls it (the renderer's builders call ``color_matrix`` themselves)."""
        from .renderer.color import color_matrix  # above this floor: only when called

        return color_matrix(self.hue, self.saturation, self.brightness, self.contrast)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def even_size(self) -> tuple[int, int]:
        """The size rounded up to even numbers, as H.264 with yuv420p needs."""
        return self.width + self.width % 2, self.height + self.height % 2

    def to_dict(self) -> dict:
        """A JSON-ready dict of every setting."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RenderSettings:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ParameterError(f"settings must be a JSON object of names and values, not {show(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(show(k) if not isinstance(k, str) else k for k in data if k not in known)
        if unknown:
            raise ParameterError(f"unknown setting(s): {show(', '.join(unknown), 200)}")
        return cls(**data)


def _row(f) -> Setting:
    row = dict(f.metadata[_ROW])
    default = row["default"]
    row.setdefault("kind", bool if isinstance(default, bool) else type(default) if default is not None else str)
    row.setdefault("flag", "--" + f.name.replace("_", "-"))
    row.setdefault("label", f.name)
    row.setdefault("doc", row["help"])
    return Setting(name=f.name, **row)


#: The settings table: one :class:`Setting` per field of :class:`RenderSettings`, in its order.
SETTINGS: tuple[Setting, ...] = tuple(_row(f) for f in fields(RenderSettings))


def _attributes() -> str:
    """The Attributes section of :class:`RenderSettings`'s docstring, from the table."""
    lines = ["Attributes", "----------"]
    for row in SETTINGS:
        kind = row.kind.__name__ + (" or None" if row.optional or row.default is None else "")
        choices = f" : {{{', '.join(repr(c) for c in row.choices)}}}" if row.choices and len(row.choices) < 5 else \
            f" : {kind}"
        lines.append(f"{row.name}{choices}")
        lines += textwrap.wrap(row.doc, 112, initial_indent="    ", subsequent_indent="    ")
    return textwrap.indent("\n".join(lines), "    ") + "\n    "


RenderSettings.__doc__ = RenderSettings.__doc__.rstrip() + "\n\n" + _attributes()
