"""Helpers shared by the benchmarks: the machine's description and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


#: ``python -c LOOPED_SONG SECONDS PATH`` writes the demo song looped to SECONDS as a 44.1 kHz stereo WAV (in a
#: process of its own, so that the benchmarked process never holds it).
LOOPED_SONG = r"""
import sys
import numpy as np
from neuromv.audio import Audio, save_wav
from neuromv.demo import demo_song
seconds = float(sys.argv[1])
base = demo_song(15.0).samples
n = int(seconds * 44100)
save_wav(sys.argv[2], Audio(np.ascontiguousarray(np.tile(base, (1, -(-n // base.shape[1])))[:, :n]), 44100))
"""


def cpu_generation(vendor: str, family: int, model: int) -> str:
    """The core's generation where /proc/cpuinfo's numbers tell it ("Zen 5"), else ``"family F model M"``.

    "AMD EPYC" alone names several generations whose vector units differ (Zen 4 runs 512-bit instructions in two
    halves, Zen 5 in one), so a benchmark's machine line needs it.
    """
    if vendor == "AuthenticAMD":
        if family == 23:
            return "Zen 2" if model >= 0x30 else "Zen/Zen+"
        if family == 25:
            return "Zen 4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF else "Zen 3"
        if family == 26:
            return "Zen 5"
    return f"family {family} model {model}"


def machine() -> str:
    cpu = platform.processor() or "?"
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block
            fields.setdefault(key.strip(), value.strip())
        cpu = fields.get("model name", cpu)
        cpu += f" ({cpu_generation(fields['vendor_id'], int(fields['cpu family']), int(fields['model']))})"
    except (OSError, KeyError, ValueError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{cpu}, {cores} cores{mem}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"numpy {np.__version__}, PyAV {__import__('av').__version__}")


def write_section(out: Path, title: str, body: list[str]) -> None:
    """Replace the section ``## title`` of ``out`` (or append it), keeping every other section."""
    heading = f"## {title}"
    section = "\n".join([heading, "", *body]).rstrip("\n") + "\n"
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"updated {out}", file=sys.stderr)
