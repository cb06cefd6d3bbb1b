"""Every limit of NeuroMV, in one place, each derived from what the computation needs.

Settings (:class:`neuromv.settings.RenderSettings`), model files (:mod:`neuromv.reference`), images
(:mod:`neuromv.image`) and the feature analysis (:mod:`neuromv.features`) check their inputs against these
constants and functions, so the CLI, the Python API and the server refuse the same things with the same one-line
messages. Each constant says why it has its value; docs/security.md lists them all and how to change them (edit
the constant: nothing else repeats a value).

This module is light (no numpy, torch or librosa at import), so the CLI stays quick to start.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING

from .errors import ParameterError

if TYPE_CHECKING:
    from .settings import RenderSettings

__all__ = ["ANALYSIS_SR", "MIN_FPS", "MAX_FPS", "MAX_SIDE", "MAX_MELS", "MAX_HIDDEN", "MAX_LAYERS", "MAX_SECONDS",
           "MAX_FIT_STEPS", "MAX_SEED", "MAX_ZOOM", "MAX_FRAME_ZOOM", "MAX_PAN", "MAX_GAIN", "MAX_SMOOTH",
           "MAX_NAME_CHARS", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_MODEL_HEADER_BYTES", "max_model_bytes",
           "MAX_LEVELS", "MAX_FEATURES", "MAX_GRID_VALUES", "MAX_PICTURE_HIDDEN", "MAX_PICTURE_LAYERS", "MAX_ASPECT",
           "number", "show", "max_mels", "check_mels", "model_parameters", "estimate_memory", "memory_available",
           "check_memory", "format_bytes", "format_count", "MIN_LOOP_SECONDS", "MAX_LOOP_SECONDS",
           "MAX_ANIMATED_SECONDS", "MAX_ANIMATED_BYTES", "MAX_BATCH_SONGS", "MAX_MANIFEST_BYTES", "MAX_TRANSFER_BYTES"]

log = logging.getLogger(__name__)

# -- settings --------------------------------------------------------------------------------------------------
#: Lowest frame rate. Features use a window of 2 / fps s (an FFT of 2 * sr / fps samples) and a mel filter bank of
#: n_mels x (sr / fps + 1) weights: both grow as 1 / fps. At 1 fps the window is 2 s (44100 samples at the
#: analysis rate) and the filter bank at most 256 x 22051 floats (23 MB); at 0.001 fps they would be 5.6 GB.
#: A frame per second is also the slowest rate at which a picture still follows music.
MIN_FPS = 1.0
#: Highest frame rate: the hop is then 92 samples at the analysis rate (22050 Hz), already shorter than any
#: musical event; above, features would only cost more frames. Players rarely show more.
MAX_FPS = 240.0
#: Largest width or height in pixels: 8K, the largest frame NVENC and most players take. Whether a size fits in
#: memory is checked separately, before rendering (:func:`check_memory`).
MAX_SIDE = 8192
#: Sample rate at which features are computed (Hz; :mod:`neuromv.features` uses it, the n_mels limit depends on it).
#: At 30 fps the hop is exactly 735 samples.
ANALYSIS_SR = 22050
#: Most mel bands (the size of z, the CPPN's input). Also bounded by the FFT at the frame rate: :func:`max_mels`.
MAX_MELS = 256
#: Widest CPPN hidden layer. The renderer holds pixels x hidden floats of the first layer (tiled and GPU paths):
#: 1024 at 1280x720 is 3.8 GB. Wider networks only add detail nobody sees at these sizes.
MAX_HIDDEN = 1024
#: Most hidden layers in a model file (models made by NeuroMV have 5); each adds hidden^2 multiply-adds per pixel.
MAX_LAYERS = 16
#: Longest start or duration, in seconds (a day). Beyond it sample counts overflow floats' exact integers and a
#: render's frame count (fps x seconds) runs to millions.
MAX_SECONDS = 86400.0
#: Most Adam steps of a reference-image fit: a picture fit of this many steps at 1280x720 takes about 4 hours on 2
#: cores (500 times the standard quality), a format-1 CPPN fit about 10 minutes.
MAX_FIT_STEPS = 100_000
#: Largest seed: torch.Generator takes a 64-bit signed seed.
MAX_SEED = 2**63 - 1
#: Largest zoom: at 1000 the coordinates reach +-1000 x the aspect, where tanh of the first layer is saturated
#: everywhere: the picture is flat. Pan has the same reach.
MAX_ZOOM = 1000.0
MAX_PAN = 1000.0
#: Largest per-frame zoom factor of the renderer (``Renderer.frames(..., zoom=...)``), and its inverse the smallest: a
#: frame's zoom is a gesture around the chosen view (a beat's pulse, a section's framing), not a new view. At 64x in,
#: one pixel of the view fills 64 x 64 pixels of the frame (a fitted picture is a blur of its pixels); at 64x out, a
#: picture is its border repeated, and a CPPN's coordinates reach 64 x MAX_ZOOM, still far from float32's limits.
MAX_FRAME_ZOOM = 64.0
#: Largest reactivity, saturation or contrast: past these the picture is pure noise or pure black and white.
MAX_GAIN = 100.0
#: Longest smoothing release, in seconds: longer is a still picture.
MAX_SMOOTH = 10.0
#: Longest codec name and the like, in characters (FFmpeg's names are short; a long one is an error message's
#: problem, not a name).
MAX_NAME_CHARS = 64
#: Shortest and longest loop (``--loop``), seconds. Half a second is a beat at 120 BPM, the shortest stretch that is
#: still music; streaming services' canvas clips are 3-8 s, and a minute is already more than any loop is watched
#: (a loop's frames are closed over its whole length: :mod:`neuromv.loop`).
MIN_LOOP_SECONDS = 0.5
MAX_LOOP_SECONDS = 60.0
#: Longest animated WebP or GIF (:mod:`neuromv.animated`), seconds: these formats are for loops and short clips; a
#: minute of GIF at 540x960 is already hundreds of MB (a video file is the format for more).
MAX_ANIMATED_SECONDS = 60.0
#: Most bytes of RGB frames an animated output holds before it is encoded (GIF, and WebP where PyAV's FFmpeg has no
#: WebP encoder: their palette, or Pillow's writer, need every frame). 1 GiB holds a 6-s loop at 720x1280 and 30 fps
#: (500 MB); the same at 1080x1920 (1.1 GB) is refused: a GIF that size runs to hundreds of MB.
MAX_ANIMATED_BYTES = 2**30

# -- files ------------------------------------------------------------------------------------------------------
#: Largest image file read (the reference image, a cover). A 50 MP JPEG is about 25 MB, a PNG at most 150 MB raw
#: but rarely over 64 MB; a fit trains at 128 x 128 pixels anyway.
MAX_IMAGE_BYTES = 64 * 2**20
#: Images declaring more pixels than this are refused before decoding (decompression bombs): 50 MP, a large phone
#: photo; decoded RGB it is 150 MB.
MAX_IMAGE_PIXELS = 50_000_000
#: Largest JSON header of a model file. A NeuroMV model's header (tensor table and metadata) is about 2 KB.
MAX_MODEL_HEADER_BYTES = 1 << 20
#: Picture networks (neuromv.picture, model format 2): most grid levels, features per grid cell, grid values (cells x
#: features over all levels: 64 MB of float32, as much as the largest CPPN file; the 'high' quality at 1920x1080
#: holds about 6.8 M, a 3840x2160 fit with 8 levels would hold 22 M), widest and most hidden layers of the MLP, and
#: the most extreme aspect ratio (width / height, or its inverse) a picture covers. A model file's header is checked
#: against them before any allocation.
MAX_LEVELS = 32
MAX_FEATURES = 8
MAX_GRID_VALUES = 16_000_000
MAX_PICTURE_HIDDEN = 256
MAX_PICTURE_LAYERS = 4
MAX_ASPECT = 64.0


# -- batches (neuromv.batch) --------------------------------------------------------------------------------------
#: Most songs in one batch (``neuromv batch``): the song list, its names and settings are held in memory (about 2 KB
#: a song, 200 MB at this count) and a folder or a glob is walked only this far. A larger catalogue is several
#: batches (each its own OUTDIR, or the same one: complete videos are skipped).
MAX_BATCH_SONGS = 100_000
#: Largest batch manifest (CSV or JSONL) read: 100 000 rows of about 160 bytes.
MAX_MANIFEST_BYTES = 16 * 2**20
#: Largest song, and largest video, moved through Ray's object store by ``neuromv batch --ray`` (each way: the
#: driver sends the song's bytes, the worker returns the video's). A worker holds one song's input and output at a
#: time, the driver at most ``--workers`` songs' in flight. 1 GiB is an hour and a half of CD-quality WAV (635 MB an
#: hour) and, as video, about 40 minutes at 3.5 Mbit/s (1080p, crf 18); longer sets: a local batch, or
#: ``render --ray --segments``.
MAX_TRANSFER_BYTES = 2**30


def model_parameters(n_z: int, hidden: int, n_hidden: int, image: bool) -> dict[str, tuple[int, ...]]:
    """The tensors of a CPPN with this architecture: name -> shape (:class:`neuromv.cppn.CPPN`'s state dict),
    computed without building it, so a model file's header can be checked before anything is allocated."""
    from .cppn import N_COORDS

    sizes = [N_COORDS + (0 if image else n_z)] + [hidden] * n_hidden + [3]
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"layers.{i}.weight"] = (b, a)
        shapes[f"layers.{i}.bias"] = (b,)
    if image:
        shapes["pulse"] = (n_z, 3, hidden)
    return shapes


def max_model_bytes() -> int:
    """The largest model file read: the largest allowed CPPN (n_z :data:`MAX_MELS`, hidden :data:`MAX_HIDDEN`,
    :data:`MAX_LAYERS` layers) in float32, with the largest header: about 65 MB."""
    n = max(sum(math.prod(s) for s in model_parameters(MAX_MELS, MAX_HIDDEN, MAX_LAYERS, image).values())
            for image in (False, True))
    return 8 + MAX_MODEL_HEADER_BYTES + 4 * n  # float32 tensors


# -- checking values -----------------------------------------------------------------------------------------------
def show(value, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters, for an error message (a value may be huge)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails is still a value to name
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number(name: str, value, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False,
           unit: str = "") -> None:
    """Check that ``value`` is a finite number (an ``int``, not a bool, when ``integer``) in ``[lo, hi]``
    (``(lo, hi]`` when ``lo_open``).

    Raises
    ------
    ParameterError
        ``"{name} must be a number from {lo} to {hi}{unit}, not {value}"``: the setting, the range, the value.
    """
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok:
        try:
            v = float(value)
        except OverflowError:  # an int beyond float's range
            ok = False
        else:
            ok = math.isfinite(v) and (lo < value if lo_open else lo <= value) and value <= hi  # ints exactly
    if not ok:
        kind = "an integer" if integer else "a number"
        rng = f"above {_num(lo)} and at most {_num(hi)}" if lo_open else f"from {_num(lo)} to {_num(hi)}"
        raise ParameterError(f"{name} must be {kind} {rng}{unit}, not {show(value)}")


def _num(x: float) -> str:
    """A bound as people write it: 1000000, 0.5, 2.5e+20."""
    if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15):
        return str(int(x))
    return f"{x:g}"


def max_mels(fps: float, sr: int) -> int:
    """The most mel bands whose filters all hold at least one FFT bin, at this frame rate and sample rate
    (at most :data:`MAX_MELS`).

    The FFT is ``2 * round(sr / fps)`` samples, so its bins are ``delta = sr / n_fft`` Hz apart. librosa's mel
    scale (Slaney) is linear below 1 kHz, ``200 / 3`` Hz per mel, and its ``n_mels + 2`` edges are evenly spaced in
    mel from 0 to ``mel(sr / 2)``, so its narrowest filters, at the bottom, are ``2 * mel(sr / 2) / (n_mels + 1)``
    mels wide. A filter wider than ``delta`` holds a bin; a narrower one may hold none and give a band that is
    always silent. At 30 fps that allows all 256 bands; at 60 fps 221, at 240 fps 54.
    """
    hop = max(1, round(sr / float(fps)))
    delta = sr / (2 * hop)
    mel_top = 15.0 + math.log((sr / 2) / 1000.0) / (math.log(6.4) / 27.0)  # Slaney mel of sr / 2 (> 1 kHz)
    width_hz = 2.0 * mel_top * (200.0 / 3.0)  # (n_mels + 1) x the narrowest filter's width in Hz
    n = math.ceil(width_hz / delta - 1.0) - 1  # the largest n with width_hz / (n + 1) > delta
    return max(1, min(MAX_MELS, n))


def check_mels(n_mels, fps: float, sr: int) -> None:
    """``n_mels`` in 1 to :func:`max_mels` ``(fps, sr)``; fps must already be checked.

    Raises
    ------
    ParameterError
    """
    number("n_mels", n_mels, 1, MAX_MELS, integer=True)
    top = max_mels(fps, sr)
    if n_mels > top:
        raise ParameterError(f"n_mels must be at most {top} at {float(fps):g} fps (the FFT of a frame has too few "
                             f"bins for more mel bands), not {n_mels}")


# -- memory --------------------------------------------------------------------------------------------------------
#: Frames waiting for or inside the encoder: :class:`neuromv.video.VideoWriter`'s queue (8), the one being
#: converted, the one being rendered.
_QUEUED_FRAMES = 10
#: The encoder's resident memory per pixel of the frame with I420 frames queued (the queue and libx264's own
#: frames: lookahead, references, B-frames, one per frame thread), measured with 3 x264 threads (2 cores) at
#: 2560x1440 for ultrafast, superfast, veryfast and medium; the others interpolated from their lookahead and
#: reference counts ('cppn' as superfast, its base).
_ENCODER_BYTES_PER_PIXEL = {"ultrafast": 40, "cppn": 72, "superfast": 72, "veryfast": 95, "faster": 110,
                            "fast": 120, "medium": 134, "slow": 160, "slower": 190, "veryslow": 240}
#: Each x264 frame thread beyond the 3 of the measurement holds about one more frame and its reconstruction.
_ENCODER_BYTES_PER_THREAD = 4.5


def estimate_memory(settings: RenderSettings, *, duration: float | None = None, image: bool | str = False,
                    method: str | None = None) -> int:
    """The memory a render needs beyond what the process already holds, in bytes: the renderer's set-up peak
    or its steady state (renderer buffers, frames queued for the encoder, the encoder's own frames) with a quarter
    of the set-up still resident (the allocator keeps some freed blocks), whichever is larger, plus the features of
    ``duration`` seconds and, with stems, the separated song.

    This is the one formula; it follows what :class:`neuromv.renderer.Renderer`, :class:`neuromv.video.VideoWriter`
    and :mod:`neuromv.features` allocate (P pixels, H hidden units; float64 is 8 bytes, float32 4):

    - ``'kernel'`` (compiled CPU kernel): the coordinate grid, float64 (x, y, r) per pixel (24 P, built with as
      much again in temporaries), then float32 tiles of it through a padded copy: set-up peak about 56 P
      (measured), steady 12 P; frames come as I420, 1.5 P;
    - ``'tiled'`` (torch CPU: image mode, hidden widths the kernel lacks): the first layer's coordinate part,
      float64 P x H twice then float32 P x H: set-up peak 24 P + 20 P H, steady 4 P H; RGB frames, 3 P;
    - ``'dense'`` (GPU): the same first layer built on the host (the same peak), and about 3 batches of frames on
      the host;
    - image mode: the per-pixel mean pulse and its work space (36 P) and the target picture;
    - ``'picture'`` (a fitted picture, :class:`neuromv.renderer.picture.PictureBackend`): the picture, its 7
      structure maps and the sampling grids, float32 (56 P), built from float64 coordinates (48 P); per frame
      about 64 P of float32 work space and RGB frames;
    - the encoder: :data:`_ENCODER_BYTES_PER_PIXEL` of the x264 preset (measured), more with RGB frames and with
      more cores;
    - features: about 48 bytes per frame and mel band (float64 work arrays of the spectrogram);
    - stems: the whole song as float32, plus each stem and the separator's work: 4 x (2 + 2 x stems) bytes a
      sample and channel (stereo, 44.1 kHz assumed).

    Checked against the growth of a real render's peak resident memory (tests/test_hostile_inputs.py: within a
    factor of 2; measured 1.0 to 1.4 on the tiled and kernel paths from 640x360 to 3840x2160, 2 cores).

    Parameters
    ----------
    settings : RenderSettings
    duration : float, optional
        Seconds of audio, when known.
    image : bool or 'picture'
        The CPPN is fitted to an image (image mode: never the compiled kernel); 'picture': a fitted picture.
    method : {'kernel', 'tiled', 'dense', 'picture'}, optional
        The renderer's method; default: what :class:`~neuromv.renderer.Renderer` would choose here.

    Returns
    -------
    int
        Bytes.
    """
    w, h = settings.even_size()
    panels = [(w, h, settings.hidden)]
    if settings.stem_names():
        from .stems import stem_panels

        panels = [(st.width, st.height, st.hidden) for _, _, st in stem_panels(settings)]
    if method is None:
        method = _method(settings, image)
    total_p = w * h
    setup = steady = 0.0
    for pw, ph, hidden in panels:  # every panel's renderer is alive at once
        p = pw * ph
        if method == "kernel":
            setup += 56 * p
            steady += 12 * p
        elif method == "picture":
            setup += 104 * p
            steady += 120 * p
            continue
        else:
            setup += 24 * p + 20 * p * hidden
            steady += 4 * p * hidden
        if image:
            setup += 36 * p
            steady += 15 * p
    frame = 1.5 if method in ("kernel", "picture") else 3.0  # bytes a pixel of the frames handed to the encoder
    threads = max(3, int(1.5 * (os.cpu_count() or 2)))
    encoder = (_ENCODER_BYTES_PER_PIXEL.get(settings.preset, 134) + _QUEUED_FRAMES * (frame - 1.5)
               + _ENCODER_BYTES_PER_THREAD * (threads - 3)) * total_p
    if method == "dense":
        from .renderer import BATCH_PIXELS, MAX_BATCH

        batch = max(1, min(MAX_BATCH, BATCH_PIXELS // total_p))
        steady += 3 * batch * frame * total_p
    steady += encoder
    extra = 0.0
    if duration is not None:
        n_frames = math.ceil(duration * settings.fps)
        extra += 48 * n_frames * settings.n_mels * len(panels)
        if settings.stem_names():
            extra += 4 * 2 * 44100 * duration * (2 + 2 * len(settings.stem_names()))
    return int(max(setup, steady + setup / 4) + extra)


def _method(settings: RenderSettings, image: bool | str) -> str:
    """The method :class:`~neuromv.renderer.Renderer` picks for these settings on this machine."""
    from .renderer import kernel_widths, resolve_device

    if image == "picture":
        return "picture"
    device = resolve_device(settings.device)
    if device.type != "cpu":
        return "dense"
    return "kernel" if not image and settings.hidden in kernel_widths() else "tiled"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def memory_available() -> int | None:
    """Bytes this process can still allocate, or None where that cannot be known (not Linux).

    The least of: the kernel's estimate of memory available without swapping (``MemAvailable`` in
    /proc/meminfo), the room left under a cgroup v2 (``memory.max - memory.current``) or v1 limit, and the room
    left under an address-space limit (``ulimit -v``: RLIMIT_AS minus VmSize).
    """
    room: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    room.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # "max" or a huge v1 value: no limit
            room.append(max(0, limit - usage))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/status") as f:
                vm = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:")), 0)
            room.append(max(0, soft - vm))
    except (ImportError, OSError, ValueError):
        pass
    return min(room) if room else None


def format_count(n: float) -> str:
    """``3.1e6`` -> ``'3.1 M'``, ``2.8e14`` -> ``'280 T'`` (decimal prefixes, two or three figures)."""
    for prefix in ("", " k", " M", " G", " T"):
        if abs(n) < 1000:
            return f"{n:.3g}{prefix}"
        n /= 1000
    return f"{n:.3g} P"


def format_bytes(n: float) -> str:
    """``3.5e9`` -> ``'3.5 GB'`` (decimal units)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


#: A render whose estimate exceeds this fraction of the available memory gets a warning (it may swap or be
#: killed if something else grows meanwhile); over all of it, it is refused.
WARN_FRACTION = 0.5


def check_memory(settings: RenderSettings, *, duration: float | None = None, image: bool | str = False,
                 method: str | None = None) -> int:
    """Log what a render will cost (INFO: working set, pixels, multiply-adds a frame) and refuse it when it
    needs more memory than is available (:func:`estimate_memory`, :func:`memory_available`).

    Returns
    -------
    int
        The estimate in bytes.

    Raises
    ------
    ParameterError
        The estimate exceeds the available memory.
    """
    need = estimate_memory(settings, duration=duration, image=image, method=method)
    w, h = settings.even_size()
    if image == "picture":
        log.info("%dx%d, fitted picture: about %s working set, %s pixels a frame", w, h, format_bytes(need),
                 format_count(w * h))
    else:
        macs = w * h * (settings.hidden * (3 + settings.n_mels) + 4 * settings.hidden ** 2 + 3 * settings.hidden)
        log.info("%dx%d, hidden %d: about %s working set, %s pixels and %s multiply-adds a frame", w, h,
                 settings.hidden, format_bytes(need), format_count(w * h), format_count(macs))
    room = memory_available()
    if room is None:
        return need
    if need > room:
        raise ParameterError(f"size {w}x{h} with hidden {settings.hidden} needs about {format_bytes(need)} of memory "
                             f"to render; {format_bytes(room)} is available (choose a smaller size or hidden)")
    if need > WARN_FRACTION * room:
        log.warning("this render needs about %s of the %s of memory available", format_bytes(need),
                    format_bytes(room))
    return need
