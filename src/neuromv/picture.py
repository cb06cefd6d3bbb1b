"""The picture network: a neural field that holds a photograph (issue 15).

A **multi-resolution dense grid encoding with a small MLP** (Instant-NGP, Müller et al. 2022, without the hash:
two-dimensional dense grids are small). ``levels`` learnable feature grids of ``features`` channels each cover the
frame; their resolutions grow geometrically from ``base`` cells on the frame's short side to ``finest`` (the fit's
own short side, so the finest grid has one cell per fitted pixel). A coordinate ``(x, y, r)`` reads every grid by
bilinear interpolation; the features of all levels and ``(x, y)`` go through ``n_hidden`` ReLU layers of width
``hidden`` and a sigmoid to RGB.

It is a continuous function of the CPPN's coordinates (:func:`neuromv.cppn.coordinate_grid`: the short side spans
[-1, 1], x grows right, y grows down). It covers the frame of the aspect ratio it was fitted at; outside the frame
each grid repeats its border (clamp). It does not depend on the music: the renderer evaluates it once per
resolution.

Why this network and not SIREN or Fourier features: docs/reference-images.md ("The fit").
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import ParameterError
from .limits import (MAX_ASPECT, MAX_FEATURES, MAX_GRID_VALUES, MAX_LEVELS,  # noqa: F401 - re-exported
                     MAX_PICTURE_HIDDEN, MAX_PICTURE_LAYERS)
from .progress import Progress, ProgressCallback, check_cancel, training_checks

__all__ = ["PictureNet", "PictureQuality", "PICTURE_QUALITIES", "DEFAULT_QUALITY", "fit_size", "fit_picture",
           "grid_shapes", "picture_parameters", "check_picture_architecture", "max_picture_bytes",
           "MAX_LEVELS", "MAX_FEATURES", "MAX_GRID_VALUES", "MAX_PICTURE_HIDDEN", "MAX_PICTURE_LAYERS",
           "MAX_ASPECT", "RENDER_CHUNK"]

log = logging.getLogger(__name__)

#: Pixels evaluated at once by :meth:`PictureNet.render` (bounds its memory at any size: about 40 MB).
RENDER_CHUNK = 1 << 16


@dataclass(frozen=True)
class PictureQuality:
    """One ``--fit-quality`` level of the picture fit.

    Attributes
    ----------
    steps : int
        Adam steps.
    max_pixels : int
        Most pixels the fit is made at (the video's size, capped by the source image and by this).
    levels : int
        Grid levels (resolutions geometric from ``base`` to the fit's short side).
    base : int
        Cells of the coarsest grid on the frame's short side.
    features : int
        Features per grid cell.
    hidden, n_hidden : int
        The MLP's width and number of hidden layers.
    lr, grid_lr : float
        Peak learning rates of the MLP and of the grids (cosine decay to a twentieth).
    """

    steps: int
    max_pixels: int
    levels: int = 8
    base: int = 16
    features: int = 2
    hidden: int = 16
    n_hidden: int = 1
    lr: float = 1e-2
    grid_lr: float = 1e-2


#: ``--fit-quality`` -> settings. 'standard' is the default (the issue's 60 s on 2 cores at 1280x720).
PICTURE_QUALITIES: dict[str, PictureQuality] = {
    "draft": PictureQuality(steps=100, max_pixels=640 * 360, levels=6),
    "standard": PictureQuality(steps=200, max_pixels=1280 * 720),
    "high": PictureQuality(steps=600, max_pixels=1920 * 1080, levels=10),
}
DEFAULT_QUALITY = "standard"


def _quality(quality: str) -> PictureQuality:
    if quality not in PICTURE_QUALITIES:
        raise ParameterError(f"fit quality must be one of {', '.join(PICTURE_QUALITIES)}, not {quality!r:.40}")
    return PICTURE_QUALITIES[quality]


def grid_shapes(levels: int, base: int, finest: int, aspect: float) -> list[tuple[int, int]]:
    """The ``(rows, cols)`` of each level's grid, coarsest first.

    Short-side resolutions are geometric from ``base`` to ``finest`` (rounded; the finest is exactly ``finest``),
    and the long side follows the aspect ratio (``aspect`` = width / height).
    """
    out = []
    for i in range(levels):
        s = finest if levels == 1 else base * (finest / base) ** (i / (levels - 1))
        s = max(1, round(s))
        long = max(1, round(s * max(aspect, 1 / aspect)))
        out.append((s, long) if aspect >= 1 else (long, s))
    return out


def picture_parameters(levels: int, features: int, base: int, finest: int, aspect: float, hidden: int,
                       n_hidden: int) -> dict[str, tuple[int, ...]]:
    """The tensors of a :class:`PictureNet` of this architecture: name -> shape, computed without building it, so
    a model file's header can be checked before anything is allocated."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (rows, cols) in enumerate(grid_shapes(levels, base, finest, aspect)):
        shapes[f"grids.{i}"] = (1, features, rows, cols)
    sizes = [levels * features + 2] + [hidden] * n_hidden + [3]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes[f"mlp.{i}.weight"] = (b, a)
        shapes[f"mlp.{i}.bias"] = (b,)
    return shapes


def check_picture_architecture(levels, features, base, finest, aspect, hidden, n_hidden, seed=0) -> None:
    """A picture network's architecture within this module's limits (``MAX_...``), checked from the numbers alone.

    Raises
    ------
    ParameterError
        A value out of range, or grids of more than :data:`MAX_GRID_VALUES` values in all.
    """
    from .limits import MAX_SEED, MAX_SIDE, number

    number("levels", levels, 1, MAX_LEVELS, integer=True)
    number("features", features, 1, MAX_FEATURES, integer=True)
    number("base", base, 1, MAX_SIDE, integer=True)
    number("finest", finest, 1, MAX_SIDE, integer=True)
    number("aspect", aspect, 1 / MAX_ASPECT, MAX_ASPECT)
    number("hidden", hidden, 1, MAX_PICTURE_HIDDEN, integer=True)
    number("n_hidden", n_hidden, 1, MAX_PICTURE_LAYERS, integer=True)
    number("seed", seed, 0, MAX_SEED, integer=True)
    if base > finest:
        raise ParameterError(f"base ({base}) must be at most finest ({finest})")
    values = features * sum(r * c for r, c in grid_shapes(levels, base, finest, aspect))  # Python ints: no overflow
    if values > MAX_GRID_VALUES:
        raise ParameterError(f"grids of {values} values in all; at most {MAX_GRID_VALUES}")


def max_picture_bytes() -> int:
    """Most tensor bytes of an allowed picture network (float32): grids of :data:`MAX_GRID_VALUES` values and the
    widest, deepest MLP."""
    mlp = (MAX_LEVELS * MAX_FEATURES + 3) * MAX_PICTURE_HIDDEN * (MAX_PICTURE_LAYERS + 1)
    return 4 * (MAX_GRID_VALUES + mlp)


class PictureNet(nn.Module):
    """A photograph as a continuous function of the CPPN's coordinates (see the module's docstring).

    Parameters
    ----------
    aspect : float
        Width / height of the frame it covers.
    finest : int
        Cells of the finest grid on the frame's short side (the fit's short side in pixels).
    levels, features, base, hidden, n_hidden : int
        Architecture (:class:`PictureQuality`).
    seed : int
        Seed of the initial weights.

    Notes
    -----
    ``grids[i]`` [shape=(1, features, rows_i, cols_i)] (:func:`grid_shapes`), initialised uniform in +-1e-4;
    ``mlp`` maps ``levels * features + 2`` inputs (the features, then x and y) through ``n_hidden`` ReLU layers of
    ``hidden`` to 3 colours.
    """

    def __init__(self, aspect: float, finest: int, *, levels: int = 8, features: int = 2, base: int = 16,
                 hidden: int = 16, n_hidden: int = 1, seed: int = 0) -> None:
        super().__init__()
        base = min(base, finest)
        check_picture_architecture(levels, features, base, finest, aspect, hidden, n_hidden, seed)
        self.aspect, self.finest, self.levels, self.features = float(aspect), int(finest), int(levels), int(features)
        self.base, self.hidden, self.n_hidden, self.seed = int(base), int(hidden), int(n_hidden), int(seed)
        gen = torch.Generator().manual_seed(int(seed))
        self.grids = nn.ParameterList(
            nn.Parameter((torch.rand((1, features, r, c), generator=gen) * 2 - 1) * 1e-4)
            for r, c in grid_shapes(levels, self.base, finest, aspect))
        sizes = [levels * features + 2] + [hidden] * n_hidden + [3]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():
            for layer in self.mlp:  # PyTorch's default (Kaiming uniform), drawn from the seed
                bound = 1 / math.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound * math.sqrt(3))
                layer.bias.copy_((torch.rand(layer.bias.shape, generator=gen) * 2 - 1) * bound)
        # coordinates -> grid_sample's [-1, 1] over the frame: x spans +-aspect (wide) or +-1, y likewise
        self._half = (max(self.aspect, 1.0), max(1.0 / self.aspect, 1.0))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Colours of the points ``coords``.

        Parameters
        ----------
        coords : torch.Tensor [shape=(n, 3), dtype=float32]
            ``(x, y, r)`` per point (r is not used: the grids know where they are).

        Returns
        -------
        torch.Tensor [shape=(n, 3)]
            RGB in (0, 1).
        """
        half = coords.new_tensor(self._half)
        xy = torch.maximum(torch.minimum(coords[:, :2], half), -half)  # outside the frame: its border
        g = (xy / half).view(1, 1, -1, 2)
        feats = [F.grid_sample(grid, g, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T
                 for grid in self.grids]
        h = torch.cat(feats + [xy], dim=1)
        for layer in self.mlp[:-1]:
            h = torch.relu(layer(h))
        return torch.sigmoid(self.mlp[-1](h))

    def lattice(self, width: int, height: int, xy: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` at every pixel centre of a ``width x height`` frame of this network's aspect ratio, channels
        first: what the fit trains on. Each grid is upsampled to the frame (``F.interpolate``, bilinear, which at
        pixel centres is what ``grid_sample`` computes, border included, up to float rounding) and the MLP runs as
        matrix products on ``[channels, pixels]``: no gathers, and no scatter in the backward pass.

        Parameters
        ----------
        width, height : int
        xy : torch.Tensor [shape=(2, height * width)]
            The pixels' ``x, y`` (:func:`neuromv.cppn.coordinate_grid`'s first two columns, transposed).

        Returns
        -------
        torch.Tensor [shape=(3, height * width)]
            RGB in (0, 1), row-major pixels.
        """
        return self.decode(self.encode_lattice(width, height, xy))

    def encode_lattice(self, width: int, height: int, xy: torch.Tensor) -> torch.Tensor:
        """The MLP's inputs at every pixel centre [shape=(levels * features + 2, height * width)]: the grids
        upsampled to the frame, then ``xy``."""
        n = width * height
        feats = [F.interpolate(g, size=(height, width), mode="bilinear", align_corners=False).view(-1, n)
                 for g in self.grids]
        return torch.cat(feats + [xy], dim=0)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on channels-first inputs: [shape=(levels * features + 2, n)] -> RGB [shape=(3, n)]."""
        for layer in self.mlp[:-1]:
            x = torch.relu(torch.addmm(layer.bias[:, None], layer.weight, x))
        last = self.mlp[-1]
        return torch.sigmoid(torch.addmm(last.bias[:, None], last.weight, x))

    @torch.no_grad()
    def render(self, width: int, height: int, *, scale: float = 1.0, pan: tuple[float, float] = (0.0, 0.0),
               chunk: int = RENDER_CHUNK) -> np.ndarray:
        """The picture at ``width x height`` (:func:`neuromv.cppn.coordinate_grid`'s view), ``chunk`` pixels at a
        time so that memory stays bounded at any size.

        Returns
        -------
        np.ndarray [shape=(height, width, 3), dtype=float32]
            RGB in [0, 1].
        """
        from .cppn import check_pan

        pan = check_pan(pan)
        if width < 1 or height < 1:
            raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
        out = np.empty((height * width, 3), np.float32)
        rows = max(1, chunk // width)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            coords = _rows(width, height, r0, r1, scale, pan)
            out[r0 * width:r1 * width] = self(coords).numpy()
        return out.reshape(height, width, 3)


def _rows(width: int, height: int, r0: int, r1: int, scale: float, pan: tuple[float, float]) -> torch.Tensor:
    """Rows ``r0:r1`` of :func:`neuromv.cppn.coordinate_grid` ``(width, height, scale=scale, pan=pan)``, without
    building the whole grid: the same float64 arithmetic, so the values are equal bit for bit."""
    half = min(width, height) / 2.0
    xs = (torch.arange(width, dtype=torch.float64) + 0.5 - width / 2.0) / half * scale
    ys = (torch.arange(r0, r1, dtype=torch.float64) + 0.5 - height / 2.0) / half * scale
    if pan[0]:
        xs = xs + pan[0]
    if pan[1]:
        ys = ys + pan[1]
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    rr = torch.sqrt(xx * xx + yy * yy)
    return torch.stack([xx.reshape(-1), yy.reshape(-1), rr.reshape(-1)], dim=1).to(torch.float32)


#: Pixels whose MLP activations the fit holds at once (the grids' features are held for the whole frame).
_FIT_CHUNK = 1 << 18


def _step(net: PictureNet, width: int, height: int, xy: torch.Tensor, target: torch.Tensor) -> float:
    """Gradients of the mean squared error over every pixel into ``net``; returns the loss.

    The grids are upsampled once for the whole frame; the MLP runs on :data:`_FIT_CHUNK` pixels at a time, its
    input gradients gathered into one tensor that then flows back through the upsampling. The same gradient as one
    full pass (up to summation order), with the MLP's activations bounded.
    """
    x = net.encode_lattice(width, height, xy)
    xd = x.detach().requires_grad_(True)
    n = xd.shape[1]
    total = 0.0
    for a in range(0, n, _FIT_CHUNK):
        b = min(n, a + _FIT_CHUNK)
        loss = torch.sum((net.decode(xd[:, a:b]) - target[:, a:b]) ** 2) / (3 * n)
        loss.backward()
        total += loss.item()
    x.backward(xd.grad)
    return total


def fit_size(width: int, height: int, image_shape: tuple[int, ...], quality: str = DEFAULT_QUALITY,
             mode: str = "cover") -> tuple[int, int]:
    """The fit's resolution: the video's aspect ratio, and never more pixels than the video, than the source image
    carries once fitted to the frame (``mode`` 'cover' or 'contain'), or than the quality's cap.

    Parameters
    ----------
    width, height : int
        The video's size.
    image_shape : tuple
        The source image's ``(height, width, ...)``.
    quality : str
        A key of :data:`PICTURE_QUALITIES`.

    Returns
    -------
    (int, int)
        ``(width, height)`` of the fit.
    """
    q = _quality(quality)
    if width < 1 or height < 1:
        raise ParameterError(f"size must be at least 1x1, not {width}x{height}")
    ih, iw = int(image_shape[0]), int(image_shape[1])
    if ih < 1 or iw < 1:
        raise ParameterError(f"image must be at least 1x1, not {iw}x{ih}")
    # the image's own pixels across the frame: cover scales it to fill the frame, contain to fit inside it
    cover = max(width / iw, height / ih)
    fit = cover if mode == "cover" else min(width / iw, height / ih)
    source = 1.0 / fit  # frame pixels per source pixel, inverted: >1 if the source has more detail than the frame
    s = min(1.0, source, math.sqrt(q.max_pixels / (width * height)))
    return max(1, round(width * s)), max(1, round(height * s))


def fit_picture(image: np.ndarray, *, quality: str = DEFAULT_QUALITY, seed: int = 0, steps: int | None = None,
                progress: bool | ProgressCallback = False, cancel: threading.Event | None = None) -> PictureNet:
    """Fit a :class:`PictureNet` to ``image``.

    Parameters
    ----------
    image : np.ndarray [shape=(height, width, 3), dtype=uint8]
        The target at :func:`fit_size`, already fitted to the video's aspect ratio
        (:func:`neuromv.image.fit_image`). Pixel ``(row, col)`` sits at ``coordinate_grid(width, height)``.
    quality : {'draft', 'standard', 'high'}
        :data:`PICTURE_QUALITIES`.
    seed : int
        Seed of the initial weights: the same seed gives the same network on a machine.
    steps : int, optional
        Adam steps, overriding the quality's (``--fit-steps``).
    progress : bool or callable
        True: a tqdm bar with the loss; a callable gets ``('fit', step, steps)``.
    cancel : threading.Event, optional
        Checked before every step and by every layer; raises :class:`~neuromv.errors.Interrupted` once set.

    Returns
    -------
    PictureNet
        In eval mode, no gradients.

    Raises
    ------
    ParameterError
        Not a uint8 RGB image, more pixels than the quality's ``max_pixels``, an unknown quality.
    """
    from .cppn import coordinate_grid

    q = _quality(quality)
    if steps is not None:
        q = replace(q, steps=int(steps))
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ParameterError(f"image must be uint8 of shape (height, width, 3), not {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if h * w > q.max_pixels:  # bounds the fit's time and memory (fit_size never asks for more)
        raise ParameterError(f"a {w}x{h} image is over the {quality} fit's {q.max_pixels} pixels; resize it to "
                             "fit_size")
    net = PictureNet(w / h, min(w, h), levels=q.levels, features=q.features, base=q.base, hidden=q.hidden,
                     n_hidden=q.n_hidden, seed=seed)
    xy = coordinate_grid(w, h)[:, :2].T.contiguous()  # [2, n]: the MLP's x, y inputs, channels first
    target = torch.from_numpy(np.ascontiguousarray(image.reshape(-1, 3).T, dtype=np.float32) / 255.0)  # [3, n]
    optim = torch.optim.Adam([{"params": list(net.grids.parameters()), "lr": q.grid_lr},
                              {"params": list(net.mlp.parameters()), "lr": q.lr}],
                             betas=(0.9, 0.99), eps=1e-15, fused=True)  # fused: the grids' update in one pass
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda i: 0.05 + 0.475 * (1 + math.cos(math.pi * i / q.steps)))
    t0 = time.perf_counter()
    loss_avg = None
    net.train()
    with training_checks([net], cancel), Progress("fit", q.steps, progress, unit="step") as bar:
        for step in range(q.steps):
            check_cancel(cancel)
            optim.zero_grad(set_to_none=True)
            value = _step(net, w, h, xy, target)
            optim.step()
            sched.step()
            loss_avg = value if loss_avg is None else 0.8 * loss_avg + 0.2 * value
            if step % 5 == 4 or step == q.steps - 1:
                bar.note(loss=f"{loss_avg:.5f}")
                bar.update(step + 1 - bar.done)
    if not math.isfinite(loss_avg):
        raise ParameterError(f"the picture fit diverged (loss {loss_avg})")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    log.info("fit: %d steps (%s) on %dx%d pixels in %.1f s, loss %.5f (PSNR %.1f dB)", q.steps, quality, w, h,
             time.perf_counter() - t0, loss_avg, -10 * math.log10(max(loss_avg, 1e-12)))
    return net
