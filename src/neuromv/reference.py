"""Reference images: fit a CPPN to a picture, save and load fitted models, cache fits.

The fit (pipeline stage 4): inputs are pixel positions ``(x, y, r)``, targets their colours; Adam on minibatches of
pixels at a small training resolution. Since the network is a function of continuous coordinates, it renders
sharp at any output size.

Two methods, both kept because the benchmark compares them (docs/reference-images.md):

- ``'neuromv'`` (default): an image-mode :class:`~neuromv.cppn.CPPN`. z stays out of the fit; the music drives the
  frozen pulse projections, so a longer fit makes the picture sharper without making the video static.
- ``'naive'``: the plain CPPN (z concatenated to the coordinates) trained with z held at 0, then driven by the
  music through its untrained first-layer z weights. This is what the original project did.

Models are saved as safetensors with their architecture and fit settings in the metadata: loading never
unpickles anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ._files import atomic_file, check_output
from .cppn import CPPN, coordinate_grid
from .errors import ModelError, OutputError, ParameterError
from .progress import CancelHooks, Progress, ProgressCallback, check_cancel
from .settings import FIT_STEPS

__all__ = ["FitOptions", "fit_cppn", "training_size", "save_model", "load_model", "check_model_path", "cache_dir", "cached_fit",
           "MODEL_FORMAT", "DEFAULT_STEPS"]

log = logging.getLogger(__name__)

#: Written in every model file's metadata; files without it are refused.
MODEL_FORMAT = "neuromv-cppn"
MODEL_VERSION = 1
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
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= 1_000_000:
            raise ParameterError(f"fit steps must be an integer from 1 to 1000000, not {self.steps!r}")
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
    with contextlib.ExitStack() as stack, Progress("fit", opts.steps, progress, unit="step") as bar:
        if cancel is not None:
            hooks = CancelHooks([cppn], backward=True)
            stack.callback(hooks.remove)
            stack.enter_context(hooks.watching(cancel))
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
def save_model(cppn: CPPN, path: str | os.PathLike, *, info: dict | None = None, overwrite: bool = False) -> Path:
    """Save a CPPN as safetensors, atomically, with its architecture and ``info`` (JSON) in the metadata.

    Raises
    ------
    OutputError
        ``path`` is a directory, lacks the ``.safetensors`` extension, is in a missing or unwritable folder, or
        exists without ``overwrite`` (checked again, atomically, when the file is put in place).
    """
    from safetensors.torch import save_file

    path = check_model_path(path, overwrite=overwrite)
    meta = {
        "format": MODEL_FORMAT, "version": str(MODEL_VERSION), "n_z": str(cppn.n_z), "hidden": str(cppn.hidden),
        "n_hidden": str(cppn.n_hidden), "seed": str(cppn.seed), "mode": "image" if cppn.image else "abstract",
        "info": json.dumps(info or {}, sort_keys=True),
    }
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in cppn.state_dict().items()}
    with atomic_file(path, overwrite=overwrite) as tmp:  # without overwrite, no-clobber even against a race
        save_file(tensors, tmp, metadata=meta)
    return path


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


def load_model(path: str | os.PathLike) -> tuple[CPPN, dict]:
    """Load a model written by :func:`save_model`.

    Returns
    -------
    (CPPN, dict)
        The network (eval mode) and the ``info`` stored with it.

    Raises
    ------
    ModelError
        Missing, a directory, not a safetensors file, not a NeuroMV model, a newer format, or damaged (wrong
        tensor names or shapes, non-finite values).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises SafetensorError, OSError, ValueError... on foreign files
        raise ModelError(f"{path}: not a safetensors model file ({_first_line(e)})") from e
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: a safetensors file, but not a NeuroMV model (no '{MODEL_FORMAT}' metadata)")
    try:
        version = int(meta["version"])
        if version > MODEL_VERSION:
            raise ModelError(f"{path}: model format {version} is newer than this NeuroMV reads ({MODEL_VERSION}); "
                             "upgrade neuromv")
        cppn = CPPN(int(meta["n_z"]), int(meta["hidden"]), int(meta["n_hidden"]), seed=int(meta["seed"]),
                    image=meta["mode"] == "image")
        info = json.loads(meta.get("info", "{}"))
    except ModelError:
        raise
    except (KeyError, ValueError, ParameterError) as e:
        raise ModelError(f"{path}: damaged NeuroMV model metadata ({_first_line(e)})") from e
    expected = cppn.state_dict()
    if set(tensors) != set(expected):
        raise ModelError(f"{path}: damaged NeuroMV model (tensors {sorted(set(tensors) ^ set(expected))} "
                         "missing or unexpected)")
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise ModelError(f"{path}: damaged NeuroMV model ({name} has shape {tuple(t.shape)}, expected "
                             f"{tuple(expected[name].shape)})")
        if not torch.isfinite(t).all():
            raise ModelError(f"{path}: damaged NeuroMV model ({name} holds NaN or infinite values)")
    cppn.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()})
    cppn.eval()
    for p in cppn.parameters():
        p.requires_grad_(False)
    return cppn, info


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# -- the fit cache ---------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """NeuroMV's cache folder: ``$NEUROMV_CACHE_DIR``, else the platform's user cache folder + ``neuromv``."""
    if os.environ.get("NEUROMV_CACHE_DIR"):
        return Path(os.environ["NEUROMV_CACHE_DIR"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "neuromv" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "neuromv"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "neuromv"


def _cache_key(image: np.ndarray, n_z: int, hidden: int, seed: int, options: FitOptions) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"version": MODEL_VERSION, "shape": list(image.shape), "n_z": n_z, "hidden": hidden,
                         "seed": seed, "options": asdict(options), "torch": torch.__version__.split("+")[0]},
                        sort_keys=True).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:32]


def cached_fit(image: np.ndarray, *, n_z: int = 32, hidden: int = 32, seed: int = 0,
               options: FitOptions | None = None, cache: bool = True, progress: bool | ProgressCallback = False,
               cancel: threading.Event | None = None, info: dict | None = None) -> CPPN:
    """:func:`fit_cppn`, reusing an earlier fit of the same training image and settings from :func:`cache_dir`.

    A fit is stored after it is made (``cache=False``: neither read nor written). A cache that cannot be read or
    written is only a warning: the fit is made again.
    """
    opts = options or FitOptions()
    key = _cache_key(image, n_z, hidden, seed, opts)
    path = cache_dir() / "fits" / f"{key}.safetensors"
    if cache and path.is_file():
        try:
            cppn, _ = load_model(path)
            log.info("fit: reusing the cached fit %s", path)
            return cppn
        except ModelError as e:
            log.warning("fit cache: %s; fitting again", e)
    cppn = fit_cppn(image, n_z=n_z, hidden=hidden, seed=seed, options=opts, progress=progress, cancel=cancel)
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(cppn, path, info={**(info or {}), "fit": asdict(opts)}, overwrite=True)
            log.debug("fit cached in %s", path)
        except (OSError, OutputError) as e:
            log.warning("fit cache: could not store the fit in %s (%s)", path.parent, e)
    return cppn
