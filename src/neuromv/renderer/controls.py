"""Per-frame controls of every render path, checked: the zoom (:func:`check_zoom`, :func:`check_zooms`) and the colour
map (:func:`check_colors`; one frame's: :func:`~neuromv.renderer.color.check_color`).

A frame's zoom ``s`` multiplies the pixels' CPPN coordinates ``(x, y, r)`` as the renderer computes them, pan
included: the frame is the one a renderer with ``scale * s`` and ``pan * s`` draws (``s < 1`` zooms in). A fitted
picture zooms about the view's centre instead (:mod:`.picture`). A frame's colour map replaces the renderer's own.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import ParameterError
from ..limits import MAX_FRAME_ZOOM

__all__ = ["check_zoom", "check_zooms", "check_colors", "MIN_FRAME_ZOOM"]

#: The smallest per-frame zoom: 1 / :data:`neuromv.limits.MAX_FRAME_ZOOM`.
MIN_FRAME_ZOOM = 1.0 / MAX_FRAME_ZOOM
_RANGE = f"a number from 1/{MAX_FRAME_ZOOM:g} to {MAX_FRAME_ZOOM:g}"


def check_zoom(zoom) -> float:
    """One frame's zoom -> a float in [MIN_FRAME_ZOOM, MAX_FRAME_ZOOM].

    Raises
    ------
    ParameterError
        Not a real number (booleans included), not finite, or out of that range.
    """
    if isinstance(zoom, bool) or not isinstance(zoom, numbers.Real):
        raise ParameterError(f"zoom must be {_RANGE}, not {zoom!r}")
    z = float(zoom)
    if not MIN_FRAME_ZOOM <= z <= MAX_FRAME_ZOOM:  # NaN fails too
        raise ParameterError(f"zoom must be {_RANGE}, not {z!r}")
    return z


def check_zooms(zoom, n_frames: int) -> np.ndarray | None:
    """Every frame's zoom: None (all 1) or an array [shape=(n_frames,)] of numbers -> None or float64 (a copy).

    Raises
    ------
    ParameterError
        Not numbers, another shape, or a value that :func:`check_zoom` refuses (the first is named).
    """
    if zoom is None:
        return None
    try:
        a = np.array(zoom, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"zoom must be None or an array of {n_frames} numbers, one per frame: {e}") from None
    if a.shape != (n_frames,):
        raise ParameterError(f"zoom must be None or an array of shape ({n_frames},), one per frame, not {a.shape}")
    bad = ~((a >= MIN_FRAME_ZOOM) & (a <= MAX_FRAME_ZOOM))
    if bad.any():
        i = int(np.argmax(bad))
        raise ParameterError(f"zoom[{i}] must be {_RANGE}, not {float(a[i])!r}")
    return a


def check_colors(color, n_frames: int) -> np.ndarray | None:
    """Every frame's colour map: None (the renderer's own) or an array [shape=(n_frames, 3, 4)] of finite numbers ->
    None or float64 (a copy). Each ``color[i]`` means what ``Renderer(color=...)`` means
    (:func:`~neuromv.renderer.color.color_matrix`).

    Raises
    ------
    ParameterError
        Not numbers, another shape, or not finite.
    """
    if color is None:
        return None
    try:
        a = np.array(color, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"color must be None or a ({n_frames}, 3, 4) array, one map per frame: {e}") from None
    if a.shape != (n_frames, 3, 4):
        raise ParameterError(f"color must be None or a ({n_frames}, 3, 4) array, one map per frame "
                             f"(see color_matrix), not shape {a.shape}")
    if not np.isfinite(a).all():
        raise ParameterError("color must hold finite numbers")
    return a

