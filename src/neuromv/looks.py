"""Looks: named bundles of settings (``--look NAME|FILE.toml``), shared by the CLI, the Python API and the page.

A look holds values of the settings in :data:`LOOK_SETTINGS` (the picture's character: palette, colour, view,
motion, the music structure's strengths), never the run's (size, frame rate, quality, codec, excerpt, device,
stems). A setting a look leaves out keeps its default; an option given explicitly overrides the look. The
built-in looks are :data:`LOOKS`; others are TOML files (docs/looks.md)::

    # A NeuroMV look (docs/looks.md): settings left out keep their defaults.
    neuromv_look = 1
    name = "warm-drift"
    palette = "ember"
    reactivity = 0.8
    smooth = 0.35

Flat ``key = value`` lines (no tables): ``neuromv_look`` (the format version, :data:`LOOK_VERSION`) is required,
``name`` is optional, every other key is a setting of :data:`LOOK_SETTINGS`, validated as
:class:`~neuromv.settings.RenderSettings` validates it. Files are read with :mod:`tomllib` (at most
:data:`MAX_LOOK_BYTES`, regular files only) and written by :func:`look_toml` (strings, numbers, booleans).

This module is light (settings, errors and the standard library), so the CLI and the server import it freely.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib  # type: ignore[no-redef]

from .errors import LookError, ParameterError
from .limits import show
from .settings import SETTINGS, RenderSettings

__all__ = ["LOOK_SETTINGS", "LOOKS", "LOOK_VERSION", "MAX_LOOK_BYTES", "load_look", "save_look", "look_toml",
           "look_values", "check_look", "apply_look", "parse_look_toml", "read_look"]

#: The settings a look may set: how the picture looks and moves. Not in it: the run and its encoding (width,
#: height, fps, n_mels, crf, preset, codec, start, duration, precision, device), the picture fit's effort
#: (fit_quality, fit_steps) and what is rendered (stems, separator).
LOOK_SETTINGS: tuple[str, ...] = (
    "seed", "hidden", "smooth", "reactivity", "zoom", "pan_x", "pan_y",
    "hue", "saturation", "brightness", "contrast", "tone", "chroma", "palette",
    "fit", "background", "motion",
    "structure", "beat", "variety", "transition",
    "layout", "labels",
)

#: The version of the TOML format (the ``neuromv_look`` key) this NeuroMV reads and writes.
LOOK_VERSION = 1
#: Largest look file read (bytes): a look is a few hundred.
MAX_LOOK_BYTES = 64 * 1024
#: A look's name: letters, digits, '-', '_' and '.', 1-64 characters (a name is also a file name on the page).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: The built-in looks: name -> the settings each sets (the others keep their defaults). 'default' is the
#: defaults themselves.
LOOKS: dict[str, dict[str, Any]] = {
    "default": {},
    # warm and calm: a slow release, soft kicks, long changes between sections
    "ember": {"palette": "ember", "reactivity": 0.8, "smooth": 0.35, "beat": 0.6, "variety": 0.8,
              "transition": 2.0, "zoom": 1.2},
    # electric: hard kicks, a fast release, wide and quick section changes, a busier pattern
    "neon": {"palette": "neon", "reactivity": 1.4, "smooth": 0.1, "beat": 2.0, "variety": 1.5,
             "transition": 0.5, "zoom": 0.8},
    # soft colours: gentle tone and chroma, a little lighter and flatter, a floating motion (none of the looks pushes
    # contrast or saturation above 1: on bright pictures that clips; docs/looks.md)
    "pastel": {"tone": 0.35, "chroma": 0.4, "brightness": 0.05, "contrast": 0.9, "smooth": 0.3, "beat": 0.8,
               "reactivity": 0.9},
    # black and white: the noir palette, harder kicks, cuts between sections, a closer view
    "mono": {"palette": "noir", "beat": 1.2, "transition": 0.0, "zoom": 1.5},
    # the song's cover art's colours, moving gently
    "cover": {"palette": "cover", "reactivity": 0.9, "smooth": 0.25, "beat": 0.8},
}

_ROWS = {row.name: row for row in SETTINGS}
_ALLOWED = ", ".join(LOOK_SETTINGS)


def check_look(values: dict, where: str = "look") -> dict[str, Any]:
    """Check a look's settings: every key in :data:`LOOK_SETTINGS`, every value one that
    :class:`~neuromv.settings.RenderSettings` accepts (a whole number for a float setting becomes a float).

    Parameters
    ----------
    values : dict
        Setting name -> value.
    where : str
        What the values come from, for the messages (a file name, ``"look 'ember'"``).

    Returns
    -------
    dict
        The values, in :data:`LOOK_SETTINGS`' order.

    Raises
    ------
    LookError
        One line naming ``where`` and the key or the setting's own message.
    """
    if not isinstance(values, dict):
        raise LookError(f"{where}: a look is a table of settings, not {show(values)}")
    for key in values:
        if key not in LOOK_SETTINGS:
            what = "is not a setting a look may set" if key in _ROWS else "is not a setting"
            raise LookError(f"{where}: {show(key)} {what} (a look may set: {_ALLOWED})")
    out = {}
    for key in LOOK_SETTINGS:
        if key not in values:
            continue
        v = values[key]
        if _ROWS[key].kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        out[key] = v
    try:
        RenderSettings(**out)
    except ParameterError as e:
        raise LookError(f"{where}: {e}") from None
    return out


def look_values(settings: RenderSettings) -> dict[str, Any]:
    """The look of ``settings``: its values of :data:`LOOK_SETTINGS` that differ from the defaults."""
    default = RenderSettings()
    return {k: getattr(settings, k) for k in LOOK_SETTINGS if getattr(settings, k) != getattr(default, k)}


def apply_look(settings: RenderSettings, look: str | os.PathLike | dict) -> RenderSettings:
    """``settings`` with a look's values (a name, a file or a dict of :func:`load_look`'s) in place of its own.

    Raises
    ------
    LookError
    """
    values = check_look(look, "look") if isinstance(look, dict) else load_look(look)
    return replace(settings, **values)


def _is_name(text: str) -> bool:
    return "/" not in text and os.sep not in text and not text.lower().endswith(".toml") and not os.path.exists(text)


def load_look(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """A look's settings: a built-in look's (:data:`LOOKS`) or a TOML file's (:func:`read_look` without the name).

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A name of :data:`LOOKS`, or a look file (a path: it has a '/' or ends in .toml, or exists).

    Returns
    -------
    dict
        Setting name -> value, checked (:func:`check_look`); settings the look leaves out are not in it.

    Raises
    ------
    LookError
        One line: an unknown name (with the names), a file missing, not a regular file, over
        :data:`MAX_LOOK_BYTES`, not UTF-8 TOML (with tomllib's line and column), not a look, or with a key or
        value no look may have (naming the file).
    """
    return read_look(name_or_path)[1]


def read_look(name_or_path: str | os.PathLike) -> tuple[str | None, dict[str, Any]]:
    """(name, settings) of a look: :func:`load_look`'s settings and the look's name (a built-in's, or a file's
    ``name``; None when the file has none). Raises :class:`LookError` like :func:`load_look`."""
    if isinstance(name_or_path, str) and name_or_path in LOOKS:
        return name_or_path, dict(LOOKS[name_or_path])
    if isinstance(name_or_path, str) and _is_name(name_or_path):
        raise LookError(f"unknown look {show(name_or_path)}; choose one of {', '.join(LOOKS)} or a look file "
                        f"(.toml)")
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise LookError(f"a look is a name ({', '.join(LOOKS)}) or a .toml file, not {show(name_or_path)}")
    from ._files import open_input_file

    with open_input_file(name_or_path, "look") as f:  # a regular file, opened without blocking
        data = f.read(MAX_LOOK_BYTES + 1)  # never more
    if len(data) > MAX_LOOK_BYTES:
        raise LookError(f"{name_or_path}: over the limit of {MAX_LOOK_BYTES // 1024} KB for a look file")
    return parse_look_toml(data, str(name_or_path))


def parse_look_toml(data: bytes | str, where: str = "look") -> tuple[str | None, dict[str, Any]]:
    """(name or None, settings) of a look file's text (:func:`load_look` without the file).

    Raises
    ------
    LookError
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = tomllib.loads(text)
    except UnicodeDecodeError:
        raise LookError(f"{where}: not a look file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise LookError(f"{where}: not valid TOML ({str(e).splitlines()[0]})") from None
    except (ValueError, RecursionError) as e:  # a number of thousands of digits, arrays nested thousands deep
        raise LookError(f"{where}: not valid TOML ({type(e).__name__}: {show(str(e).splitlines()[0], 80)})") from None
    if "neuromv_look" not in doc:
        raise LookError(f"{where}: not a look file (it needs the line 'neuromv_look = {LOOK_VERSION}')")
    version = doc.pop("neuromv_look")
    if version != LOOK_VERSION or isinstance(version, bool):
        raise LookError(f"{where}: look format version {show(version)}; this NeuroMV reads version {LOOK_VERSION}")
    name = doc.pop("name", None)
    if name is not None and not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise LookError(f"{where}: name must be 1-64 letters, digits, '.', '-' or '_', not {show(name)}")
    return name, check_look(doc, where)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise LookError(f"a look's numbers are finite, not {v!r}")
        return repr(v)
    if isinstance(v, str):
        out = []
        for c in v:
            if c in '"\\':
                out.append("\\" + c)
            elif ord(c) < 0x20 or ord(c) == 0x7F:
                out.append(f"\\u{ord(c):04x}")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'
    raise LookError(f"a look's values are strings, numbers or true/false, not {show(v)}")


def look_toml(values: dict, name: str | None = None) -> str:
    """A look as the text of a TOML file (:func:`load_look` reads it back to the same values).

    Parameters
    ----------
    values : dict
        Setting name -> value (checked by :func:`check_look`; None values, such as no palette, are left out:
        those settings keep their defaults).
    name : str, optional
        The look's name (``name = ...``): 1-64 letters, digits, '.', '-' or '_'.

    Returns
    -------
    str
        ``neuromv_look = 1``, ``name`` and one ``key = value`` line per setting, in :data:`LOOK_SETTINGS`' order.

    Raises
    ------
    LookError
    """
    checked = check_look({k: v for k, v in values.items() if v is not None} if isinstance(values, dict) else values)
    if name is not None and not (isinstance(name, str) and _NAME_RE.fullmatch(name)):
        raise LookError(f"a look's name must be 1-64 letters, digits, '.', '-' or '_', not {show(name)}")
    lines = ["# A NeuroMV look (docs/looks.md): settings left out keep their defaults.",
             f"neuromv_look = {LOOK_VERSION}"]
    if name is not None:
        lines.append(f"name = {_toml_value(name)}")
    lines += [f"{k} = {_toml_value(v)}" for k, v in checked.items()]
    return "\n".join(lines) + "\n"


def save_look(values: dict, path: str | os.PathLike, *, name: str | None = None, overwrite: bool = False,
              inputs: tuple = ()) -> Path:
    """Write a look file (:func:`look_toml`), atomically: it appears only when complete.

    Parameters
    ----------
    values : dict
        Setting name -> value (or a :class:`~neuromv.settings.RenderSettings`: its :func:`look_values`).
    path : str or os.PathLike
        The .toml file to write.
    name : str, optional
        The look's name; default: the file's name without .toml, when it is a valid name.
    overwrite : bool
        Replace ``path`` if it exists (never one of ``inputs``).
    inputs : tuple of paths
        Files that must not be overwritten (the look file the values were read from).

    Returns
    -------
    Path

    Raises
    ------
    LookError, OutputError
        Also for a path not ending in .toml (a song or a video is never replaced by a look).
    """
    from ._files import atomic_file, check_output

    if isinstance(values, RenderSettings):
        values = look_values(values)
    if name is None and _NAME_RE.fullmatch(Path(path).stem):
        name = Path(path).stem
    text = look_toml(values, name)
    out = check_output(path, overwrite=overwrite, kind="look", suffixes=(".toml",), inputs=inputs)
    with atomic_file(out, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return out


for _name, _look in LOOKS.items():  # the built-ins are valid looks (checked once, at import)
    check_look(_look, f"look {_name!r}")
