"""End to end on the GPU with the fused hidden layers against the unfused torch layers, in one process.

    python bench/gpu_fused_e2e.py          # on a CUDA machine with Triton; prints, writes nothing

``neuromv.render(..., device='cuda')`` of 10 s of the demo song at 1920x1080 (the defaults: libx264 preset cppn,
crf 18, the structure on), alternating fused and unfused twice after one warm-up render, so that a difference
between the two is not a difference between machines or runs. The render-only figures are ``bench/gpu.py``'s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import neuromv
import neuromv.renderer.dense as dense
from neuromv.renderer.fused import supports

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import end_to_end  # noqa: E402 - bench/gpu.py's: neuromv.render on the GPU from 4 s on, frames/s


def main() -> int:
    if not torch.cuda.is_available():
        print("bench/gpu_fused_e2e.py: PyTorch sees no CUDA GPU here; nothing measured", file=sys.stderr)
        return 0
    song = neuromv.demo_song(duration=15.0)
    end_to_end(song, 64, 36, 0.5)  # warm-up: librosa's, FFmpeg's, CUDA's and Triton's one-time set-up
    for rnd in range(2):
        for on in (True, False):
            dense.fused_supports = supports if on else (lambda *a: False)  # what each new DenseBackend sees
            fps = end_to_end(song, 1920, 1080, 10.0)
            print(f"round {rnd}, {'fused' if on else 'unfused'}: {fps:.1f} fps", flush=True)
    dense.fused_supports = supports
    return 0


if __name__ == "__main__":
    sys.exit(main())
