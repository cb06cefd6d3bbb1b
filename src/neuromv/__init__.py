"""NeuroMV: turn a song into a music video whose CPPN images pulse and move with the music.

The pipeline, one module per stage:

- :mod:`neuromv.audio`: decode audio files (PyAV) -> :class:`Audio`
- :mod:`neuromv.separate`: split a song into stems (Spleeter 2-stem, HPSS, demucs) -> one Audio per stem
- :mod:`neuromv.features`: mel spectrogram -> one latent vector z per video frame (librosa)
- :mod:`neuromv.analysis`, :mod:`neuromv.cues`: the song's structure (tempo, beats, bars, sections, drops) -> Cues
- :mod:`neuromv.structure`: the cues -> what each frame adds (kicks, section looks, bursts, rest)
- :mod:`neuromv.image`: load reference images and find a song's cover art (Pillow, mutagen)
- :mod:`neuromv.picture`: the picture network a reference image is fitted to (multi-resolution grids + MLP)
- :mod:`neuromv.reference`: save/load models (safetensors); the fit cache; the format-1 CPPN fit
- :mod:`neuromv.cppn`: the CPPN network (PyTorch)
- :mod:`neuromv.motion`: how the music moves a fitted picture (tone, flow, breath along its structure)
- :mod:`neuromv.renderer`: the fast renderer, z -> RGB frames
- :mod:`neuromv.video`: frames + audio -> H.264/AAC file (PyAV), atomically
- :mod:`neuromv.cache`: the content-keyed caches (fits, stems)
- :mod:`neuromv.plan`: a render resolved before the slow work: image, model, device, CPPNs, latents
- :mod:`neuromv.stems`: stem panels, the stems' cache, compositing; :func:`separate_song`
- :mod:`neuromv.pipeline`: :func:`render`, all of the above in one call
- :mod:`neuromv.palette`: palettes (``--palette``): OKLab colour tables, a cover's dominant colours
- :mod:`neuromv.looks`: named bundles of settings (``--look``), built in or saved as TOML
- :mod:`neuromv.loop`, :mod:`neuromv.animated`: seamless loops (``--loop``), animated WebP and GIF
- :mod:`neuromv.batch`, :mod:`neuromv.segments`, :mod:`neuromv.cluster`: many songs, and one long song, on Ray
- :mod:`neuromv.metrics`, :mod:`neuromv.sync`: fidelity and reactivity of a video; how closely it follows the music

Heavy modules load on first use, so ``import neuromv`` is instant.
"""

from __future__ import annotations

import importlib

from .errors import (AudioError, CuesError, ImageError, Interrupted, LookError, ModelError, NeuroMVError,
                     OutputError, ParameterError, SeparationError, VideoError)

__version__ = "0.1.0"

_LAZY = {
    "render": "pipeline", "RenderResult": "pipeline",
    "RenderSettings": "settings", "parse_size": "settings",
    "Audio": "audio", "AudioFile": "audio", "load_audio": "audio", "check_audible": "audio",
    "song_latents": "features", "mel_power": "features", "normalize": "features",
    "CPPN": "cppn", "coordinate_grid": "cppn",
    "Renderer": "renderer", "reference_render": "renderer", "resolve_device": "renderer",
    "VideoWriter": "video",
    "demo_song": "demo", "demo_cover": "demo",
    "load_image": "image", "find_cover_art": "image", "fit_image": "image",
    "PictureNet": "picture", "fit_picture": "picture", "Motion": "motion",
    "fit_cppn": "reference", "FitOptions": "reference", "save_model": "reference", "load_model": "reference",
    "measure_video": "metrics", "ssim": "metrics",
    "analyze": "analysis", "Cues": "cues", "load_cues": "cues", "save_cues": "cues",
    "sync_video": "sync", "SyncReport": "sync",
    "Separator": "separate", "separate_song": "stems",
    "load_look": "looks", "save_look": "looks", "look_toml": "looks", "LOOKS": "looks",
}

__all__ = ["NeuroMVError", "ParameterError", "AudioError", "ImageError", "ModelError", "SeparationError", "CuesError",
           "VideoError", "OutputError", "LookError", "Interrupted",
           "__version__",
           *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuromv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
