"""Which torch device a render runs on: :func:`resolve_device`."""

from __future__ import annotations

import torch

from ..errors import ParameterError

__all__ = ["resolve_device"]


def resolve_device(device: str = "auto") -> torch.device:
    """``'auto'`` (CUDA if available, else CPU), ``'cpu'`` or ``'cuda'`` / ``'cuda:N'`` -> a torch device.

    Raises
    ------
    ParameterError
        Unknown name, or CUDA asked for where there is none.
    """
    if not isinstance(device, str):
        raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ParameterError("device 'cuda' asked for, but PyTorch sees no CUDA GPU here (use --device cpu)")
        try:
            dev = torch.device(name)
        except RuntimeError as e:
            raise ParameterError(f"bad device {device!r}: {e}") from e
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA GPU(s)")
        return dev
    raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', not {device!r}")
