"""The structure's motion fitted to the picture: each frame changes by as much as the music's onset strength asks.

:mod:`neuromv.structure` moves the network's input on every frame by the music's onset strength there (in full on
the beats, a share between them: :attr:`~neuromv.structure.Controls.motion`), and the music's own latents move it
too. How much the *picture* changes for a given step of the input is another matter: it depends on where the
input is (a step near a saturated tone changes little, one across a shape's edge a lot), and the latents' own
steps have nothing to do with the onsets. The sync (:mod:`neuromv.sync`) measures the picture's change, so the
plan closes the loop (:func:`follow`): it renders the panel's frames once more, as the sync would read a render
:data:`FOLLOW` ``short`` pixels on the short side (every 4th pixel each way: a 32x18 render, read whole), in
float32 on the CPU (the same controls on every device and precision); it measures each frame's change as the sync
does (:class:`neuromv.sync.MotionEnvelope`) and scales each frame's steps by how far the change missed the motion
asked for (a gain per frame, :func:`next_gain`); a few rounds (``rounds``) bring the two close (docs/sync.md).

The steps scaled are those of the network's input (the pattern's, the music's own, the looks' transitions), and
for a fitted picture the steps of the zoom and the light (the kicks and bursts) by the same gain kept within
``kick`` (times or divided by): a picture whose tone is held in its clip on some beat, where no step of the input
changes it, still changes there by a larger kick, and a kick that moves a busy picture more than the beat asks is
made smaller. The abstract network's zoom and light, and every colour (hue and saturation), are left as the
structure made them: the abstract network follows the motion closely without them (r 0.95-0.99), and on a stem's
kick panel they made kicks up to four times as bright (docs/sync.md). The scaled steps drift from what they were; a
leak (``leak`` per frame) pulls them back, slowly enough that the pull's own change is small and smooth, and not
where no motion is asked (a picture at rest does not creep). The result (:func:`fitted_controls`) is an offset per frame
(:func:`scaled_steps`) added to the controls' ``z_add``, ``zoom`` and ``brightness``: the render, the segments on a
cluster and the live page all play the same arrays.

Everything here is a pure function of its arrays, but for ``envelope_of``: the caller's small render
(:func:`neuromv.plan.follow_controls`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .errors import ParameterError

__all__ = ["FOLLOW", "follow", "fitted_controls", "scaled_steps", "next_gain"]

#: ``short``: pixels on the short side of the render whose frames the sync would read (every 4th pixel each
#: way: at 72, 18 pixels are rendered on the short side and read whole); ``rounds``: renders; ``rate``: the
#: exponent of each round's correction (below 1: damped); ``step``: the most one round changes a frame's gain
#: (times or divided by); ``gain``: the most a frame's gain may be (times or divided by); ``floor``: the share of
#: the mean change added to both sides of the ratio (a frame that asks for nothing is not pushed to nothing);
#: ``leak``: the share of the drift taken back per frame; ``window``: seconds over which the motion asked is
#: scaled to the change measured (a causal exponential window); ``kick``: the most a frame's gain scales the steps
#: of a fitted picture's zoom and light (times or divided by). Chosen on the six benchmark songs, ``kick`` on music009
#: (docs/sync.md).
FOLLOW = {"short": 72, "rounds": 3, "rate": 0.7, "step": 3.0, "gain": 20.0, "floor": 0.05, "leak": 0.05,
          "window": 10.0, "kick": 3.0}


def scaled_steps(u: np.ndarray, gain: np.ndarray, leak: float | None = None,
                 hold: np.ndarray | None = None) -> np.ndarray:
    """The offset that scales each frame's step of the input by its gain: ``u + d`` steps by about
    ``gain[i] * (u[i] - u[i - 1])`` into frame ``i``, with ``d[i] = keep[i] * (d[i - 1] + (gain[i] - 1) *
    (u[i] - u[i - 1]))``, ``d[0] = 0`` and ``keep`` = ``1 - leak``, or 1 on the frames of ``hold`` (there the drift
    is held: a picture at rest does not creep back).

    Parameters
    ----------
    u : np.ndarray [shape=(n_frames, n_z)]
        The network's input per frame.
    gain : np.ndarray [shape=(n_frames,)]
        Each frame's step's gain (1: as it is).
    leak : float, optional
        In [0, 1): the share of the drift taken back per frame (default: :data:`FOLLOW` ``leak``).
    hold : np.ndarray [shape=(n_frames,), dtype=bool], optional
        Frames that take nothing back (where no motion is asked).

    Returns
    -------
    np.ndarray [shape=(n_frames, n_z), dtype=float32]
    """
    leak = FOLLOW["leak"] if leak is None else float(leak)
    u = np.asarray(u, dtype=np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    if u.ndim != 2 or gain.shape != (len(u),):
        raise ParameterError(f"scaled_steps needs u (n, n_z) and gain (n,), not {u.shape} and {gain.shape}")
    if not 0.0 <= leak < 1.0:
        raise ParameterError(f"leak must be in [0, 1), not {leak}")
    x = np.zeros_like(u)
    x[1:] = (gain[1:, None] - 1.0) * np.diff(u, axis=0)
    keep = np.full(len(u), 1.0 - leak) if hold is None else np.where(np.asarray(hold, dtype=bool), 1.0, 1.0 - leak)
    d = np.zeros_like(u)
    acc = np.zeros(u.shape[1])
    for i in range(1, len(u)):
        acc = keep[i] * (acc + x[i])
        d[i] = acc
    return d.astype(np.float32)


def fitted_controls(controls, u: np.ndarray, gain: np.ndarray, hold: np.ndarray | None = None,
                    kick: float | None = None):
    """``controls`` with each frame's steps scaled by its gain: those of the network's input ``u`` (an offset
    added to ``z_add``) and those of the zoom and the light (added to ``zoom`` and ``brightness``, the gain kept
    within ``[1 / kick, kick]``), each by :func:`scaled_steps` (its leak, held on the frames of ``hold``). The zoom
    stays at most 1 (or the frame's own zoom where that is larger): the fit never zooms out.

    Parameters
    ----------
    controls : neuromv.structure.Controls
    u : np.ndarray [shape=(n_frames, n_z)]
        The network's input per frame before the fit (``controls.apply(z)``).
    gain : np.ndarray [shape=(n_frames,)]
    hold : np.ndarray [shape=(n_frames,), dtype=bool], optional
    kick : float, optional
        Default :data:`FOLLOW` ``kick``; 1 leaves the zoom and the light as they are.

    Returns
    -------
    neuromv.structure.Controls
        A copy; hue, saturation, ``z_scale`` and ``motion`` are the same arrays.
    """
    from dataclasses import replace

    kick = FOLLOW["kick"] if kick is None else float(kick)
    if kick < 1.0:
        raise ParameterError(f"kick must be at least 1, not {kick}")
    gain = np.asarray(gain, dtype=np.float64)
    z_add = np.ascontiguousarray(controls.z_add + scaled_steps(u, gain, hold=hold), dtype=np.float32)
    if kick == 1.0:
        return replace(controls, z_add=z_add)
    light = np.stack([controls.zoom, controls.brightness], axis=1).astype(np.float64)
    light += scaled_steps(light, np.clip(gain, 1.0 / kick, kick), hold=hold)
    # a kick's release scaled by other gains than its attack can leave the zoom above 1: a picture zooms in only
    zoom = np.minimum(light[:, 0], np.maximum(controls.zoom, 1.0))
    return replace(controls, z_add=z_add, zoom=zoom.astype(np.float32), brightness=light[:, 1].astype(np.float32))


def next_gain(gain: np.ndarray, envelope: np.ndarray, motion: np.ndarray, *, fps: float = 30.0,
              rate: float | None = None, step: float | None = None, most: float | None = None,
              floor: float | None = None, window: float | None = None) -> np.ndarray:
    """One round: each frame's gain times ``((scale * motion + f) / (envelope + f)) ** rate`` (each factor within
    ``[1 / step, step]``, each gain within ``[1 / most, most]``). ``scale`` makes the motion asked for as large as the
    change measured, and ``f`` is ``floor`` times the mean change, both over the frames before (exponential
    windows of ``window`` seconds): a frame's gain depends on no later frame, so an edit of the cues changes only
    the frames from where it starts. The defaults are :data:`FOLLOW`'s ``rate``, ``step``, ``gain``, ``floor`` and
    ``window``.

    Parameters
    ----------
    gain : np.ndarray [shape=(n_frames,)]
    envelope : np.ndarray [shape=(n_frames,)]
        The picture's change into each frame (0-255; frame 0's is not used).
    motion : np.ndarray [shape=(n_frames,)]
        The motion asked for, any unit (>= 0).
    fps : float
        Frames per second.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float64]
        The new gains; unchanged until something is asked and the picture has moved.
    """
    from scipy.signal import lfilter

    rate = FOLLOW["rate"] if rate is None else rate
    step = FOLLOW["step"] if step is None else step
    most = FOLLOW["gain"] if most is None else most
    floor = FOLLOW["floor"] if floor is None else floor
    window = FOLLOW["window"] if window is None else window
    e = np.asarray(envelope, dtype=np.float64).copy()
    m = np.asarray(motion, dtype=np.float64).copy()
    gain = np.asarray(gain, dtype=np.float64)
    ones = np.ones(len(e))
    e[:1], m[:1], ones[:1] = 0.0, 0.0, 0.0  # the change into frame 0 is not one
    keep = math.exp(-1.0 / max(window * fps, 1.0))
    seen, asked, count = (lfilter([1.0], [1.0, -keep], x) for x in (e, m, ones))
    ok = (asked > 0) & (seen > 0)
    scale = np.where(ok, seen / np.where(ok, asked, 1.0), 0.0)
    f = floor * seen / np.maximum(count, 1e-12)
    factor = np.clip((m * scale + f) / np.maximum(e + f, 1e-12), 1.0 / step, step) ** rate
    factor[~ok] = 1.0
    return np.clip(gain * factor, 1.0 / most, most)


def follow(motion: np.ndarray, envelope_of: Callable[[np.ndarray], np.ndarray], *, fps: float = 30.0,
           rounds: int | None = None) -> np.ndarray:
    """Each frame's gain that makes the picture's change follow ``motion`` (see the module's text).

    Parameters
    ----------
    motion : np.ndarray [shape=(n_frames,)]
        The motion asked for (:attr:`neuromv.structure.Controls.motion`).
    envelope_of : callable
        ``envelope_of(gain [shape=(n_frames,)]) -> [shape=(n_frames,)]``: the picture's change into each frame
        (:class:`neuromv.sync.MotionEnvelope`) rendered with each frame's steps scaled by its gain
        (:func:`scaled_steps`).
    fps : float
        Frames per second.
    rounds : int, optional
        Renders (0: none, the gains stay 1); default :data:`FOLLOW` ``rounds``.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float64]
        The gains (all 1 where nothing is asked, or with fewer than two frames).
    """
    rounds = FOLLOW["rounds"] if rounds is None else int(rounds)
    motion = np.asarray(motion, dtype=np.float64)
    if motion.ndim != 1:
        raise ParameterError(f"motion must have one value per frame, not shape {motion.shape}")
    gain = np.ones(len(motion))
    if rounds <= 0 or len(motion) < 2 or not np.any(motion[1:] > 0):
        return gain
    for _ in range(rounds):
        envelope = np.asarray(envelope_of(gain), dtype=np.float64)
        if envelope.shape != motion.shape:
            raise ParameterError(f"envelope of shape {envelope.shape} for motion of shape {motion.shape}")
        gain = next_gain(gain, envelope, motion, fps=fps)
    return gain
