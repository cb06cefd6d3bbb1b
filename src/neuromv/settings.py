"""All the settings of one render, validated in one place (shared by the CLI, the Python API and any front end)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace

from .errors import ParameterError
from .limits import (MAX_FIT_STEPS, MAX_FPS, MAX_GAIN, MAX_HIDDEN, MAX_NAME_CHARS, MAX_PAN, MAX_SECONDS, MAX_SEED,
                     MAX_SIDE, MAX_SMOOTH, MAX_ZOOM, MIN_FPS, check_mels, number, show)
from .video import X264_PRESETS

__all__ = ["RenderSettings", "parse_size", "Z_GAIN", "PULSE_GAIN", "FIT_STEPS", "FIT_MODES", "PRECISIONS"]

#: z (unit RMS norm) times this, times the reactivity, is what the CPPN sees. With N(0, 1) weights, 0.3 keeps
#: the shapes recognisable from frame to frame while beats visibly move them (docs/method.md).
Z_GAIN = 0.3
#: With a reference image, z times this, times the reactivity, drives the pulse (neuromv.cppn). Chosen so that, on
#: real music, a fitted image moves about as much as the abstract CPPN at the same reactivity while single frames
#: still show the picture (docs/reference-images.md).
PULSE_GAIN = 2.5
#: Default Adam steps of a reference-image fit.
FIT_STEPS = 3000
#: How an image is fitted to the video's shape.
FIT_MODES = ("cover", "contain")
#: How stem panels are composed.
LAYOUTS = ("auto", "side-by-side", "grid", "blend")
#: Arithmetic of the compiled CPU kernel (neuromv.renderer.resolve_precision).
PRECISIONS = ("auto", "float32", "int16")

#: ``--quality`` presets: size, x264 preset and crf. Options given explicitly override them. (bfloat16 is not in
#: them: on CPU the float32 kernel is faster than torch's bfloat16, and bfloat16 frames show visible noise.)
QUALITY: dict[str, dict] = {
    "draft": dict(width=384, height=216, preset="ultrafast", crf=28),     # a quick look at a whole song
    "standard": dict(width=1280, height=720, preset="superfast", crf=18),  # the defaults
    "high": dict(width=1920, height=1080, preset="veryfast", crf=16),
}


def with_quality(settings: "RenderSettings", quality: str) -> "RenderSettings":
    """``settings`` with the size, x264 preset and crf of a :data:`QUALITY` preset."""
    if quality not in QUALITY:
        raise ParameterError(f"quality must be one of {', '.join(QUALITY)}, not {quality!r}")
    return replace(settings, **QUALITY[quality])
#: The stems each separation backend makes (the same table as neuromv.separate.BACKENDS, kept light for the CLI).
_SEPARATOR_STEMS = {"spleeter": ("vocals", "accompaniment"), "hpss": ("harmonic", "percussive"),
                    "demucs": ("drums", "bass", "other", "vocals")}

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``'1280x720'`` -> ``(1280, 720)``."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ParameterError(f"size must look like WIDTHxHEIGHT (e.g. 1280x720), not {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class RenderSettings:
    """Everything that decides how a song becomes a video.

    Attributes
    ----------
    fps : float
        Video frame rate; also the feature rate (hop = 1/fps s, window = 2/fps s).
    width, height : int
        Video size in pixels (H.264 needs even numbers: odd ones are rounded up by :meth:`even_size`).
    n_mels : int
        Mel bands = size of z.
    smooth : float
        Release time of the feature envelope in seconds (0: none). Onsets stay instant.
    reactivity : float
        How strongly the music moves the picture: the CPPN sees ``Z_GAIN * reactivity * z``, z having unit
        RMS norm. 0 is a still picture, 1 (default) pulses clearly without losing the shapes, 2 is wild.
    hidden : int
        Width of the CPPN's 5 hidden layers.
    seed : int
        Seed of the CPPN's weights: same seed and song, same video.
    zoom : float
        Coordinate scale: larger values show more of the pattern (smaller features).
    pan_x, pan_y : float
        Centre of the view in the CPPN's coordinates (the shorter side of the frame spans ``2 * zoom`` of them;
        y grows downwards): moves the camera over the pattern.
    hue : float
        Colour adjustments, applied to each pixel's final colour (:func:`neuromv.renderer.color_matrix`): hue
        rotation in degrees about the grey axis,
    saturation : float
        saturation (0: grey, 1: unchanged, 2: twice as vivid),
    brightness : float
        brightness added (-1 to 1; 0: unchanged)
    contrast : float
        and contrast around mid-grey (1: unchanged).
    crf : int
        x264 constant rate factor (0-51; lower is better quality and larger files); NVENC's constant quality.
    preset : str
        x264 speed preset.
    codec : str
        FFmpeg video encoder: 'libx264' (default), 'libx265', or a hardware one such as 'h264_nvenc' (NVIDIA GPUs).
    start, duration : float
        Excerpt of the song to render, in seconds (duration None: to the end).
    precision : {'auto', 'float32', 'int16'}
        Arithmetic of the compiled CPU kernel (abstract CPPNs on CPU): 'float32' is exact; 'int16' runs the hidden
        layers in 16-bit fixed point with exact integer sums, faster and within 2 levels of float32 on >= 99.9 % of
        channel values; 'auto' (default) takes int16 where the CPU has AVX-512 VNNI, else float32. Other render
        paths compute in float32 whatever this says (``neuromv.renderer.resolve_precision``).
    device : str
        'auto', 'cpu' or 'cuda'.
    fit : {'cover', 'contain'}
        Reference image: fill the frame and crop the overflow, or show all of it on the background.
    background : str
        Colour under transparent pixels and around a 'contain' image: black, white, '#rrggbb' or 'r,g,b'.
    fit_steps : int
        Adam steps of the reference-image fit: more is sharper and slower (not less lively: docs/reference-images.md).
    stems : str or None
        Render one visualization per stem: a comma-separated list of the separator's stems, or 'all'. None: the
        whole song, one picture.
    separator : str
        The separation backend for ``stems``: 'spleeter', 'hpss' or 'demucs'.
    layout : str
        How stem panels are composed: 'auto' (side-by-side for 2, grid for 3 or more), 'side-by-side', 'grid' or
        'blend' (every stem's CPPN layered in one full frame).
    labels : bool
        Write each stem's name on its panel.
    """

    fps: float = 30.0
    width: int = 1280
    height: int = 720
    n_mels: int = 32
    smooth: float = 0.2
    reactivity: float = 1.0
    hidden: int = 32
    seed: int = 0
    zoom: float = 1.0
    pan_x: float = 0.0
    pan_y: float = 0.0
    hue: float = 0.0
    saturation: float = 1.0
    brightness: float = 0.0
    contrast: float = 1.0
    crf: int = 18
    preset: str = "superfast"
    codec: str = "libx264"
    start: float = 0.0
    duration: float | None = None
    precision: str = "auto"
    device: str = "auto"
    fit: str = "cover"
    background: str = "black"
    fit_steps: int = FIT_STEPS
    stems: str | None = None
    separator: str = "spleeter"
    layout: str = "auto"
    labels: bool = False

    def __post_init__(self) -> None:
        # every range comes from neuromv.limits, where each is explained
        number("fps", self.fps, MIN_FPS, MAX_FPS)
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
                raise ParameterError(f"size must be from 1x1 to {MAX_SIDE}x{MAX_SIDE} pixels, not "
                                     f"{show(self.width, 20)}x{show(self.height, 20)}")
        from .features import ANALYSIS_SR  # light: librosa is imported only when features are computed

        check_mels(self.n_mels, self.fps, ANALYSIS_SR)
        number("smooth", self.smooth, 0, MAX_SMOOTH, unit=" seconds")
        number("reactivity", self.reactivity, 0, MAX_GAIN)
        number("hidden", self.hidden, 1, MAX_HIDDEN, integer=True)
        number("seed", self.seed, 0, MAX_SEED, integer=True)
        number("zoom", self.zoom, 0, MAX_ZOOM, lo_open=True)
        number("pan-x", self.pan_x, -MAX_PAN, MAX_PAN)
        number("pan-y", self.pan_y, -MAX_PAN, MAX_PAN)
        number("hue", self.hue, -360, 360, unit=" degrees")
        number("saturation", self.saturation, 0, MAX_GAIN)
        number("brightness", self.brightness, -1, 1)
        number("contrast", self.contrast, 0, MAX_GAIN)
        number("crf", self.crf, 0, 51, integer=True)
        if not isinstance(self.preset, str) or self.preset not in X264_PRESETS:
            raise ParameterError(f"preset must be one of {', '.join(X264_PRESETS)}; not {show(self.preset)}")
        if not (isinstance(self.codec, str) and len(self.codec) <= MAX_NAME_CHARS
                and re.fullmatch(r"[a-z0-9_-]+", self.codec)):
            raise ParameterError(f"codec must be an FFmpeg encoder name such as libx264 or h264_nvenc, "
                                 f"not {show(self.codec)}")
        number("start", self.start, 0, MAX_SECONDS, unit=" seconds")
        if self.duration is not None:
            number("duration", self.duration, 0, MAX_SECONDS, lo_open=True, unit=" seconds")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, not {show(self.precision)}")
        if not (isinstance(self.device, str) and len(self.device) <= MAX_NAME_CHARS
                and re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device)):
            raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', not {show(self.device)}")
        if not isinstance(self.fit, str) or self.fit not in FIT_MODES:
            raise ParameterError(f"fit must be 'cover' or 'contain', not {show(self.fit)}")
        from .image import parse_color  # light: Pillow is imported only when an image is loaded

        parse_color(self.background)
        number("fit steps", self.fit_steps, 1, MAX_FIT_STEPS, integer=True)
        if not isinstance(self.layout, str) or self.layout not in LAYOUTS:
            raise ParameterError(f"layout must be one of {', '.join(LAYOUTS)}; not {show(self.layout)}")
        if not isinstance(self.separator, str) or self.separator not in _SEPARATOR_STEMS:
            raise ParameterError(f"unknown separator {show(self.separator)}; choose one of "
                                 f"{', '.join(_SEPARATOR_STEMS)}")
        if not isinstance(self.labels, bool):
            raise ParameterError(f"labels must be true or false, not {show(self.labels)}")
        if self.stems is not None:
            self.stem_names()  # validates the names against the separator's stems

    def stem_names(self) -> tuple[str, ...]:
        """The stems to render, in the separator's order; () when ``stems`` is None."""
        if self.stems is None:
            return ()
        if self.separator not in _SEPARATOR_STEMS:
            raise ParameterError(f"unknown separator {self.separator!r}; choose one of {', '.join(_SEPARATOR_STEMS)}")
        known = _SEPARATOR_STEMS[self.separator]
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
        [shape=(3, 4)]), or None when there are none."""
        from .renderer import color_matrix

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
