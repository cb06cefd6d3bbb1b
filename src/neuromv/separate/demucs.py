"""The ``demucs`` backend: 4 stems (drums, bass, other, vocals) with the optional ``demucs`` package
(``pip install 'neuromv[demucs]'``) and its pretrained model (:data:`DEMUCS_MODEL`), or a model object given.

Without the package, or without a cached model and no route to its hosts, it fails at once (SeparationError).

Imports: numpy, torch and demucs (lazily), ``neuromv.errors``, ``neuromv.progress``, ``neuromv.renderer.device``, the
engine, the façade's stem table.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import SeparationError
from ..progress import CancelHooks
from .engine import SecondsWindow

__all__ = ["Demucs", "check_installed", "pretrained", "model_cached", "DEMUCS_MODEL", "DEMUCS_HOSTS"]

#: The pretrained demucs model used when none is given.
DEMUCS_MODEL = "htdemucs"
#: Where demucs 4.1 downloads its models from; one must answer within 3 s when the model is not cached.
DEMUCS_HOSTS = ("huggingface.co", "dl.fbaipublicfiles.com")
_MISSING = "separator 'demucs' needs the optional extra: pip install 'neuromv[demucs]'"


def check_installed() -> None:
    """SeparationError at once if the demucs package is missing or cannot be imported."""
    try:
        import demucs  # noqa: F401
    except ImportError:
        raise SeparationError(_MISSING) from None
    except Exception as e:  # installed but broken
        raise SeparationError(f"separator 'demucs' is installed but cannot be imported ({e})") from e


class Demucs(SecondsWindow):
    """The demucs backend (:class:`neuromv.separate.engine.Backend`): 60 s windows, 2 s crossfades, at the model's
    rate and channel count.

    Parameters
    ----------
    device : str
        'auto', 'cpu' or 'cuda'.
    model : torch.nn.Module, optional
        A demucs model whose ``sources`` include the four stems; by default the pretrained :data:`DEMUCS_MODEL`.
    """

    channels = 2
    _WINDOW_S, _OVERLAP_S = 60.0, 2.0  # demucs splits each window into its own overlapping segments

    def __init__(self, device: str, model=None) -> None:
        check_installed()
        from ..renderer.device import resolve_device
        from . import stems_of

        stems = stems_of("demucs")  # our stem order (the model's own order may differ)

        self.device = resolve_device(device)
        if model is None:
            model = pretrained()
        missing = [s for s in stems if s not in list(getattr(model, "sources", []))]
        if missing:
            raise SeparationError(f"separator 'demucs': the model has no {', '.join(missing)} source")
        self.model = model.to(self.device).eval()
        self.sr = int(model.samplerate)
        self.channels = int(getattr(model, "audio_channels", 2))
        self._order = [list(model.sources).index(s) for s in stems]
        self.watch = CancelHooks([self.model])

    def process(self, x: np.ndarray, cancel: threading.Event | None = None) -> np.ndarray:
        """Separate one window: np.ndarray [shape=(C, L)] -> np.ndarray [shape=(4, C, L)], in our stem order."""
        import torch
        from demucs.apply import apply_model

        with torch.inference_mode():
            est = apply_model(self.model, torch.from_numpy(np.ascontiguousarray(x))[None], device=self.device,
                              progress=False)[0]  # (sources, C, L)
        return est[self._order].cpu().numpy()


def pretrained():
    """htdemucs from the user's cache, or downloaded; SeparationError at once when it can be neither."""
    import socket

    if not model_cached():
        for host in DEMUCS_HOSTS:  # fail at once, not after the downloader's retries
            try:
                socket.create_connection((host, 443), timeout=3).close()
                break
            except OSError as e:
                reason = e
        else:
            raise SeparationError(f"separator 'demucs' must download its model ({DEMUCS_MODEL}) from "
                                  f"{' or '.join(DEMUCS_HOSTS)}, which cannot be reached here ({reason})")
    from demucs.pretrained import get_model

    try:
        return get_model(DEMUCS_MODEL)
    except Exception as e:  # network and repository errors of many kinds
        raise SeparationError(f"separator 'demucs': cannot load model {DEMUCS_MODEL} ({e})") from e


def model_cached() -> bool:
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
