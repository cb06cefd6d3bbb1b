"""Reference images: fit a network to a picture, save and load fitted models, cache fits.

Since model format 2 the picture is held by a :class:`~neuromv.picture.PictureNet` (a multi-resolution grid and a
small MLP, :mod:`neuromv.picture`), fitted by :func:`cached_picture_fit`. The legacy image-mode CPPN below stays:
format 1 files hold it, and the benchmark compares the old method with the new one.

The legacy fit (pipeline stage 4): inputs are pixel positions ``(x, y, r)``, targets their colours; Adam on minibatches of
pixels at a small training resolution. Since the network is a function of continuous coordinates, it renders
sharp at any output size.

Two methods, both kept because the benchmark compares them (docs/reference-images.md):

- ``'neuromv'`` (default): an image-mode :class:`~neuromv.cppn.CPPN`. z stays out of the fit; the music drives the
  frozen pulse projections, so a longer fit makes the picture sharper without making the video static.
- ``'naive'``: the plain CPPN (z concatenated to the coordinates) trained with z held at 0, then driven by the
  music through its untrained first-layer z weights. This is what the original project did.

Models are saved as safetensors with their architecture and fit settings in the metadata: loading never
unpickles anything. Format 2 adds the ``'picture'`` mode; format 1 files (``'image'`` and ``'abstract'`` CPPNs)
load as before.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_file, check_output
from .cache import ContentCache, cache_dir
from .cppn import CPPN, coordinate_grid
from .errors import ModelError, ParameterError, summary
from .picture import (DEFAULT_QUALITY, PICTURE_QUALITIES, PictureNet, check_picture_architecture, fit_picture,
                      max_picture_bytes, picture_parameters)
from .progress import Progress, ProgressCallback, check_cancel, training_checks
from .settings import FIT_STEPS

__all__ = ["FitOptions", "fit_cppn", "training_size", "save_model", "load_model", "check_model_path", "check_architecture",
           "cache_dir", "cached_fit", "cached_picture_fit",
           "MODEL_FORMAT", "DEFAULT_STEPS"]

log = logging.getLogger(__name__)

#: Written in every model file's metadata; files without it are refused.
MODEL_FORMAT = "neuromv-cppn"
#: 2: adds the 'picture' mode (:class:`~neuromv.picture.PictureNet`); 1: CPPNs only (still read).
MODEL_VERSION = 2
#: Default number of Adam steps (about 10-20 s on 2 cores, docs/benchmarks.md).
DEFAULT_STEPS = FIT_STEPS
#: Pixels of the training image (its shape follows the video's aspect ratio).
TRAIN_PIXELS = 128 * 128


@dataclass(frozen=True)
class FitOptions:
    """How a CPPN is fitted to an image.

    Attributes
    ----------
    steps : int
        Adam steps.
    lr : float
        Peak learning rate (cosine decay to ``lr / 20`` over the steps).
    batch : int
        Pixels per step.
    method : {'neuromv', 'naive'}
        See the module's docstring.
    """

    steps: int = DEFAULT_STEPS
    lr: float = 3e-3
    batch: int = 4096
    method: str = "neuromv"

    def __post_init__(self) -> None:
        from .limits import MAX_FIT_STEPS

        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_FIT_STEPS:
            raise ParameterError(f"fit steps must be an integer from 1 to {MAX_FIT_STEPS}, not {self.steps!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ParameterError(f"learning rate must be above 0 and at most 1, not {self.lr!r}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not 1 <= self.batch <= 1 << 20:
            raise ParameterError(f"batch must be an integer from 1 to 1048576, not {self.batch!r}")
        if self.method not in ("neuromv", "naive"):
            raise ParameterError(f"fit method must be 'neuromv' or 'naive', not {self.method!r}")


def training_size(width: int, height: int, pixels: int = TRAIN_PIXELS) -> tuple[int, int]:
    """The training image's size: the video's aspect ratio, about ``pixels`` pixels, never more than the video."""
    if width < 1 or height < 1:
        raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
    s = min(1.0, math.sqrt(pixels / (width * height)))
    return max(1, round(width * s)), max(1, round(height * s))


def fit_cppn(image: np.ndarray, *, n_z: int = 32, hidden: int = 32, seed: int = 0,
             options: FitOptions | None = None, progress: bool | ProgressCallback = False,
             cancel: threading.Event | None = None) -> CPPN:
    """Fit a CPPN so that its picture is ``image``.

    Parameters
    ----------
    image : np.ndarray [shape=(height, width, 3), dtype=uint8]
        The target at training resolution (see :func:`training_size`), already cropped or padded to the video's
        aspect ratio (:func:`neuromv.image.fit_image`). Pixel ``(row, col)`` sits at
        ``coordinate_grid(width, height)``: the short side spans [-1, 1].
    n_z, hidden, seed : int
        Architecture and the seed of the initial N(0, 1) weights (and of the pulse projections).
    options : FitOptions, optional
    progress : bool or callable
        True: a tqdm bar with the loss; a callable gets ``('fit', step, steps)``.
    cancel : threading.Event, optional
        Checked before every step and every layer's forward and backward pass; raises :class:`~neuromv.errors.Interrupted` once set.

    Returns
    -------
    CPPN
        In image mode for ``'neuromv'``, abstract mode for ``'naive'``; in eval mode, no gradients.
    """
    opts = options or FitOptions()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ParameterError(f"image must be uint8 of shape (height, width, 3), not {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    naive = opts.method == "naive"
    cppn = CPPN(n_z, hidden, seed=seed, image=not naive)
    coords = coordinate_grid(w, h)
    target = torch.from_numpy(image.reshape(-1, 3).astype(np.float32) / 255.0)
    n_pixels = coords.shape[0]
    batch = min(opts.batch, n_pixels)
    zero = torch.zeros(n_z)
    params = [p for p in cppn.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=opts.lr)  # the first one in a process imports for about a second
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=opts.steps, eta_min=opts.lr / 20)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    t0 = time.perf_counter()
    loss_avg = None
    cppn.train()
    # every step checks ``cancel``, and so does every layer, forward and backward: a step of a wide network
    # (hidden 1024) takes seconds, one layer a fraction of one
    with training_checks([cppn], cancel), Progress("fit", opts.steps, progress, unit="step") as bar:
        for step in range(opts.steps):
            check_cancel(cancel)
            idx = torch.randint(0, n_pixels, (batch,), generator=gen)
            if naive:
                out = cppn(coords[idx], zero)
            else:
                out = torch.sigmoid(cppn.layers[-1](cppn.features(coords[idx])))  # z = 0: no pulse
            loss = torch.mean((out - target[idx]) ** 2)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            value = loss.item()
            loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
            if step % 25 == 24 or step == opts.steps - 1:
                bar.note(loss=f"{loss_avg:.4f}")
                bar.update(step + 1 - bar.done)
    if not math.isfinite(loss_avg):
        raise ParameterError(f"the fit diverged (loss {loss_avg}); try a smaller learning rate")
    cppn.eval()
    for p in cppn.parameters():
        p.requires_grad_(False)
    log.info("fit: %d steps on %dx%d pixels (%s) in %.1f s, loss %.4f (PSNR %.1f dB)", opts.steps, w, h,
             opts.method, time.perf_counter() - t0, loss_avg, -10 * math.log10(max(loss_avg, 1e-12)))
    return cppn


# -- saved models ----------------------------------------------------------------------------------------------
def save_model(cppn: CPPN | PictureNet, path: str | os.PathLike, *, info: dict | None = None,
               overwrite: bool = False) -> Path:
    """Save a CPPN or a picture network as safetensors, atomically, with its architecture and ``info`` (JSON) in
    the metadata (format :data:`MODEL_VERSION`).

    Raises
    ------
    OutputError
        ``path`` is a directory, lacks the ``.safetensors`` extension, is in a missing or unwritable folder, or
        exists without ``overwrite`` (checked again, atomically, when the file is put in place).
    """
    from safetensors.torch import save_file

    path = check_model_path(path, overwrite=overwrite)
    tensors, meta = _model_file(cppn, info)
    with atomic_file(path, overwrite=overwrite) as tmp:  # without overwrite, no-clobber even against a race
        save_file(tensors, tmp, metadata=meta)
    return path


#: The metadata fields of a picture network, in :class:`~neuromv.picture.PictureNet`'s constructor's terms.
_PICTURE_FIELDS = ("levels", "features", "base", "finest", "hidden", "n_hidden", "seed")


def _model_file(cppn: CPPN | PictureNet, info: dict | None) -> tuple[dict, dict]:
    """(tensors, metadata) of a model file of ``cppn``, checked to be what :func:`load_model` accepts."""
    meta = {"format": MODEL_FORMAT, "version": str(MODEL_VERSION), "info": json.dumps(info or {}, sort_keys=True)}
    if isinstance(cppn, PictureNet):
        check_picture_architecture(*(getattr(cppn, k) for k in ("levels", "features", "base", "finest", "aspect",
                                                                  "hidden", "n_hidden", "seed")))
        meta.update({k: str(getattr(cppn, k)) for k in _PICTURE_FIELDS}, mode="picture", aspect=repr(cppn.aspect))
    else:
        check_architecture(cppn.n_z, cppn.hidden, cppn.n_hidden, cppn.seed)  # what load_model will accept
        meta.update({"n_z": str(cppn.n_z), "hidden": str(cppn.hidden), "n_hidden": str(cppn.n_hidden),
                     "seed": str(cppn.seed), "mode": "image" if cppn.image else "abstract"})
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in cppn.state_dict().items()}
    return tensors, meta


def check_model_path(path: str | os.PathLike, *, inputs=(), overwrite: bool = False) -> Path:
    """Check where a model is to be written, before any slow work: :func:`neuromv._files.check_output` with the
    ``.safetensors`` extension.

    Raises
    ------
    OutputError
        ``path`` is one of ``inputs``, a directory, lacks the ``.safetensors`` extension, is in a missing or
        unwritable folder, or exists without ``overwrite``.
    """
    return check_output(path, inputs=inputs, overwrite=overwrite, kind="model", suffixes=(".safetensors",))


def load_model(path: str | os.PathLike) -> tuple[CPPN | PictureNet, dict]:
    """Load a model written by :func:`save_model` (format 1 or 2).

    Nothing is allocated before the file is known to describe an allowed network: the file must be a regular file
    of at most :func:`max_file_bytes`; its safetensors header (an 8-byte length, then JSON) is read
    with its size capped (:data:`~neuromv.limits.MAX_MODEL_HEADER_BYTES`) and parsed; every metadata field is
    checked against the limits of a render (a CPPN: n_z as n_mels, hidden, n_hidden up to ``MAX_LAYERS``, seed; a
    picture network: levels, features, grid sizes, aspect ratio, hidden and layers within the ``MAX_...`` limits
    of :mod:`neuromv.picture`); the tensor table must be exactly the tensors of that architecture, float32, with
    the shapes it implies and byte ranges inside the file. Only then are the tensors read.

    Returns
    -------
    (CPPN or PictureNet, dict)
        The network (eval mode, no gradients) and the ``info`` stored with it. Mode ``'picture'`` (format 2):
        a :class:`~neuromv.picture.PictureNet`; ``'image'`` or ``'abstract'`` (formats 1 and 2): a CPPN.

    Raises
    ------
    ModelError
        Missing, not a regular file, too large, not a safetensors file, not a NeuroMV model, a newer format, or
        damaged (metadata out of range, wrong tensor names, shapes or types, truncated, non-finite values).
    """
    from safetensors.torch import load as load_tensors

    from ._files import open_input_file
    from .limits import model_parameters, show

    path = Path(path)
    with open_input_file(path, "model", max_file_bytes()) as f:
        size = os.fstat(f.fileno()).st_size
        table, meta = _read_header(path, f, size)
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path}: a safetensors file, but not a NeuroMV model (no '{MODEL_FORMAT}' metadata)")
        try:
            version = int(meta["version"])
            if version > MODEL_VERSION:
                raise ModelError(f"{path}: model format {version} is newer than this NeuroMV reads "
                                 f"({MODEL_VERSION}); upgrade neuromv")
            modes = ("image", "abstract", "picture") if version >= 2 else ("image", "abstract")
            mode = meta["mode"]
            if mode not in modes:
                raise ParameterError(f"mode must be one of {', '.join(modes)} in format {version}, not {mode!r:.40}")
            if mode == "picture":
                arch = {k: _int(meta[k]) for k in _PICTURE_FIELDS}
                arch["aspect"] = float(meta["aspect"][:40])
                check_picture_architecture(**arch)
                expected = picture_parameters(*(arch[k] for k in ("levels", "features", "base", "finest", "aspect",
                                                                  "hidden", "n_hidden")))
            else:
                n_z, hidden, n_hidden, seed = (_int(meta[k]) for k in ("n_z", "hidden", "n_hidden", "seed"))
                image = mode == "image"
                check_architecture(n_z, hidden, n_hidden, seed)
                expected = model_parameters(n_z, hidden, n_hidden, image)
            info = json.loads(meta.get("info", "{}"))
            if not isinstance(info, dict):
                raise ValueError("info is not a JSON object")
        except ModelError:
            raise
        except (KeyError, ValueError, RecursionError) as e:  # ParameterError is a ValueError
            raise ModelError(f"{path}: damaged NeuroMV model metadata ({summary(e)})") from e
        if set(table) != set(expected):
            raise ModelError(f"{path}: damaged NeuroMV model (tensors {show(sorted(set(table) ^ set(expected)), 120)} "
                             "missing or unexpected)")
        for name, (dtype, shape) in table.items():
            if shape != expected[name]:
                raise ModelError(f"{path}: damaged NeuroMV model ({name} has shape {shape}, expected "
                                 f"{expected[name]})")
            if dtype != "F32":
                raise ModelError(f"{path}: damaged NeuroMV model ({name} is {dtype}; NeuroMV models are F32)")
        f.seek(0)
        data = f.read(size)  # at most max_model_bytes(): the shapes above bound it
    try:
        tensors = load_tensors(data)
    except Exception as e:  # safetensors raises SafetensorError and others on a damaged buffer
        raise ModelError(f"{path}: not a safetensors model file ({summary(e)})") from e
    del data
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise ModelError(f"{path}: damaged NeuroMV model ({name} holds NaN or infinite values)")
    if mode == "picture":
        cppn = PictureNet(**arch)
    else:
        cppn = CPPN(n_z, hidden, n_hidden, seed=seed, image=image)
    cppn.load_state_dict(tensors)
    cppn.eval()
    for p in cppn.parameters():
        p.requires_grad_(False)
    return cppn, info


def _int(text: str) -> int:
    """A metadata field as an int; at most 40 characters (``int`` of a huge string is slow)."""
    if len(text) > 40:
        raise ValueError(f"{text[:20]}... is not a number")
    return int(text)


def max_file_bytes() -> int:
    """The largest model file read: the largest allowed CPPN (:func:`neuromv.limits.max_model_bytes`) or picture
    network (:func:`neuromv.picture.max_picture_bytes`), with the largest header."""
    from .limits import MAX_MODEL_HEADER_BYTES, max_model_bytes

    return max(max_model_bytes(), 8 + MAX_MODEL_HEADER_BYTES + max_picture_bytes())


def check_architecture(n_z, hidden, n_hidden, seed=0) -> None:
    """A model's architecture within the limits a render takes (n_z is the render's n_mels).

    Raises
    ------
    ParameterError
    """
    from .limits import MAX_HIDDEN, MAX_LAYERS, MAX_MELS, MAX_SEED, number

    number("n_z", n_z, 1, MAX_MELS, integer=True)
    number("hidden", hidden, 1, MAX_HIDDEN, integer=True)
    number("n_hidden", n_hidden, 1, MAX_LAYERS, integer=True)
    number("seed", seed, 0, MAX_SEED, integer=True)


#: safetensors' dtype names and their sizes in bytes (what a header may name).
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _read_header(path: Path, f, size: int) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Parse and check a safetensors header from ``f`` without reading the tensors.

    Returns
    -------
    (table, metadata)
        ``{name: (dtype, shape)}`` and the ``__metadata__`` strings.

    Raises
    ------
    ModelError
        ``"not a safetensors model file (...)"``: a header length beyond the cap or the file, JSON that is not a
        safetensors table, byte ranges that disagree with the shapes, overlap or run past the end (truncation).
    """
    import struct

    from .limits import MAX_MODEL_HEADER_BYTES

    def bad(why: str) -> ModelError:
        return ModelError(f"{path}: not a safetensors model file ({why})")

    head = f.read(8)
    if len(head) < 8:
        raise bad(f"only {len(head)} bytes")
    n = struct.unpack("<Q", head)[0]
    if n > MAX_MODEL_HEADER_BYTES:
        raise bad(f"its header claims {n} bytes, over the limit of {MAX_MODEL_HEADER_BYTES}")
    if 8 + n > size:
        raise bad(f"truncated: its header claims {n} bytes, the file holds {size - 8}")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"header is not JSON: {summary(e)[:80]}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad("__metadata__ is not a table of strings")
    data_bytes = size - 8 - n
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    ranges = []
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (dtype in _DTYPE_BYTES and isinstance(shape, list) and len(shape) <= 8
                  and all(type(d) is int and d >= 0 for d in shape)
                  and all(type(o) is int for o in (begin, end)) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise bad(f"tensor {name[:40]!r} is not described as dtype, shape and data offsets")
        if end - begin != _DTYPE_BYTES[dtype] * math.prod(shape):
            raise bad(f"tensor {name[:40]!r}: its shape and its byte range disagree")
        if end > data_bytes:
            raise bad(f"truncated: tensor {name[:40]!r} ends at byte {end} of the data, the file holds "
                      f"{data_bytes}")
        table[name] = (dtype, tuple(shape))
        ranges.append((begin, end))
    ranges.sort()
    if any(b < a_end for (_, a_end), (b, _) in zip(ranges, ranges[1:])):
        raise bad("tensors overlap")
    return table, meta




# -- the fit cache ---------------------------------------------------------------------------------------------
def _fit_key(cache: ContentCache, image: np.ndarray, n_z: int, hidden: int, seed: int, options: FitOptions) -> str:
    return cache.key({"version": MODEL_VERSION, "shape": list(image.shape), "n_z": n_z, "hidden": hidden,
                      "seed": seed, "options": asdict(options), "torch": torch.__version__.split("+")[0]}, image)


def _picture_key(cache: ContentCache, image: np.ndarray, quality: str, seed: int, steps: int | None) -> str:
    return cache.key({"version": MODEL_VERSION, "method": "picture-grid", "shape": list(image.shape),
                      "quality": quality, "settings": asdict(PICTURE_QUALITIES[quality]), "seed": seed,
                      "steps": steps,
                      "torch": torch.__version__.split("+")[0]}, image)


def _cached(path: Path, fits: ContentCache, cache: bool, fit, info: dict):
    """The model at ``path`` in the cache ``fits`` if it loads, else ``fit()``, stored there (``cache``)."""
    from safetensors.torch import save_file

    if cache and path.is_file():
        try:
            net, _ = load_model(path)
            log.info("fit: reusing the cached fit %s", path)
            return net
        except ModelError as e:
            log.warning("fit cache: %s; fitting again", e)
    net = fit()
    if cache:
        tensors, meta = _model_file(net, info)
        fits.store(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return net


def cached_picture_fit(target: np.ndarray, *, quality: str = DEFAULT_QUALITY, seed: int = 0,
                       steps: int | None = None, cache: bool = True, progress: bool | ProgressCallback = False, cancel: threading.Event | None = None,
                       info: dict | None = None) -> PictureNet:
    """:func:`neuromv.picture.fit_picture`, reusing an earlier fit of the same target and settings.

    Parameters
    ----------
    target : np.ndarray [shape=(height, width, 3), dtype=uint8]
        The picture at :func:`neuromv.picture.fit_size`, fitted to the video's aspect ratio.
    quality : {'draft', 'standard', 'high'}
    seed : int
    steps : int, optional
        Adam steps, overriding the quality's.
    cache : bool
        False: the cache is neither read nor written.
    progress, cancel
        As :func:`~neuromv.picture.fit_picture`.
    info : dict, optional
        Stored with the cached model (aspect, fit mode, background...).

    Fits live in the :class:`~neuromv.cache.ContentCache` ``'fits'``, keyed by the target's pixels (so the fit
    mode, background and size), the method, the quality's name and settings, the seed, the format version and the
    torch version. A cache that cannot be read or written is only a warning: the fit is made again.
    """
    if quality not in PICTURE_QUALITIES:  # before the key is computed
        raise ParameterError(f"fit quality must be one of {', '.join(PICTURE_QUALITIES)}, not {quality!r:.40}")
    fits = ContentCache("fits")
    path = fits.path(_picture_key(fits, target, quality, seed, steps) + ".safetensors")
    return _cached(path, fits, cache,
                   lambda: fit_picture(target, quality=quality, seed=seed, steps=steps, progress=progress,
                                       cancel=cancel),
                   {**(info or {}), "quality": quality, "method": "picture"})


def cached_fit(image: np.ndarray, *, kind: str = "cppn", quality: str = DEFAULT_QUALITY, n_z: int = 32,
               hidden: int = 32, seed: int = 0, options: FitOptions | None = None, cache: bool = True,
               progress: bool | ProgressCallback = False, cancel: threading.Event | None = None,
               info: dict | None = None) -> CPPN | PictureNet:
    """A fit of ``image``, reusing an earlier fit of the same image and settings from :func:`cache_dir`.

    Parameters
    ----------
    kind : {'cppn', 'picture'}
        ``'picture'``: :func:`cached_picture_fit` (``quality``, ``seed``; ``image`` at
        :func:`neuromv.picture.fit_size`). ``'cppn'`` (the legacy image-mode or naive CPPN, kept for format 1
        models and for the benchmark's old-vs-new comparison): :func:`fit_cppn` with ``n_z``, ``hidden``, ``seed``
        and ``options`` (``image`` at :func:`training_size`).

    Fits live in the :class:`~neuromv.cache.ContentCache` ``'fits'``, keyed by the training image, the kind, the
    architecture, the options or quality and the torch version. A fit is stored after it is made (``cache=False``:
    neither read nor written). A cache that cannot be read or written is only a warning: the fit is made again.
    """
    if kind == "picture":
        return cached_picture_fit(image, quality=quality, seed=seed, cache=cache, progress=progress, cancel=cancel,
                                  info=info)
    if kind != "cppn":
        raise ParameterError(f"fit kind must be 'picture' or 'cppn', not {kind!r:.40}")
    opts = options or FitOptions()
    fits = ContentCache("fits")
    path = fits.path(_fit_key(fits, image, n_z, hidden, seed, opts) + ".safetensors")
    return _cached(path, fits, cache,
                   lambda: fit_cppn(image, n_z=n_z, hidden=hidden, seed=seed, options=opts, progress=progress,
                                    cancel=cancel),
                   {**(info or {}), "fit": asdict(opts)})
