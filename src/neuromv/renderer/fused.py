"""The dense method's hidden layers fused into one GPU kernel (Triton), where Triton and a CUDA GPU are there.

Unfused, each of the CPPN's layers is a thin matrix product (``hidden`` wide) followed by a separate tanh pass,
so every layer reads and writes its activations through device memory: about 2.8 kB per pixel of a frame at
hidden 32 and 5 layers, which bounds the render by memory bandwidth (docs/performance.md). Fused, a block of
pixels of one frame goes through the first layer's tanh and every hidden-to-hidden layer in registers: the kernel
reads the first layer's coordinate part (``hidden`` floats per pixel) and writes the last hidden activations, and
the output layer, the colour map and uint8 stay in torch (:mod:`.dense`).

The products are float32 in full precision (``input_precision='ieee'``: no TF32), tanh is computed from one
``exp`` (a few float32 ulps from the exact value; its absolute error at most about 1e-7); the frames match the
unfused path's within rounding (tests/test_gpu_path.py compares them on a GPU).
"""

from __future__ import annotations

import logging

import torch

__all__ = ["BLOCK", "NUM_WARPS", "hidden_stack", "supports"]

logger = logging.getLogger(__name__)

#: Pixels of one frame per Triton program, and its warps (chosen on an H200 by ``bench/gpu.py --sweep``).
BLOCK = 64
NUM_WARPS = 4

try:  # Triton comes with CUDA builds of PyTorch; CPU builds have none, and then nothing here is used
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None


def supports(device: torch.device, hidden: int, n_layers: int) -> bool:
    """Whether :func:`hidden_stack` runs here: a CUDA device of compute capability 8.0 or later (Ampere on: what
    Triton supports in full), Triton importable, ``hidden`` a power of two from 16 to 128 (Triton's matrix products
    need 16 at least; 128 keeps a block's activations in registers), and at least one hidden-to-hidden layer
    (``n_layers``)."""
    return (triton is not None and device.type == "cuda" and 16 <= hidden <= 128
            and hidden & (hidden - 1) == 0 and n_layers >= 1
            and torch.cuda.get_device_capability(device)[0] >= 8)


if triton is not None:
    @triton.jit
    def _tanh(x):
        # exact to a few float32 ulps: tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1 (no overflow)
        e = tl.exp(-2.0 * tl.abs(x))
        t = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0, -t, t)

    # n_rows and row0 change from chunk to chunk: specialising on them (Triton's default for integers) would
    # compile the kernel again for each new value's divisibility
    @triton.jit(do_not_specialize=["n_rows", "row0"])
    def _stack_kernel(a0_ptr, bias_ptr, scale_ptr, w_ptr, b_ptr, out_ptr, n_rows, row0,
                      HAS_SCALE: tl.constexpr, H: tl.constexpr, L: tl.constexpr, BLOCK: tl.constexpr):
        block, frame = tl.program_id(0), tl.program_id(1)
        rows = block * BLOCK + tl.arange(0, BLOCK)
        inside = rows < n_rows
        rows64 = rows.to(tl.int64)
        cols = tl.arange(0, H)
        pre = tl.load(a0_ptr + (row0 + rows64)[:, None] * H + cols[None, :], mask=inside[:, None], other=0.0)
        if HAS_SCALE:
            pre = pre * tl.load(scale_ptr + frame)
        h = _tanh(pre + tl.load(bias_ptr + frame * H + cols)[None, :])
        for layer in tl.static_range(L):
            w = tl.load(w_ptr + layer * H * H + cols[:, None] * H + cols[None, :])  # W^T: (in, out)
            b = tl.load(b_ptr + layer * H + cols)
            h = _tanh(tl.dot(h, w, input_precision="ieee") + b[None, :])
        out = out_ptr + (frame.to(tl.int64) * n_rows + rows64)[:, None] * H + cols[None, :]
        tl.store(out, h, mask=inside[:, None])


def hidden_stack(a0: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor | None, weights: torch.Tensor,
                 biases: torch.Tensor, out: torch.Tensor, rows: slice) -> torch.Tensor:
    """The first layer's tanh and every hidden-to-hidden layer of a batch of frames, for the pixels ``rows``.

    Frame b's pixel p gets ``h = tanh(scale_b a0[p] + bias_b)``, then ``h = tanh(h W_l^T + b_l)`` for each
    hidden-to-hidden layer l.

    Parameters
    ----------
    a0 : torch.Tensor [shape=(n_pixels, hidden), dtype=float32]
        The first layer's coordinate part with its bias, on the GPU, contiguous.
    bias : torch.Tensor [shape=(B, hidden), dtype=float32]
        Each frame's first-layer bias (``W_z z_b``, plus ``(1 - s_b) b0`` where zoomed), contiguous.
    scale : torch.Tensor [shape=(B,), dtype=float32] or None
        Each frame's zoom ``s_b``, or None for 1.
    weights : torch.Tensor [shape=(L, hidden, hidden), dtype=float32]
        The hidden-to-hidden layers' ``W^T`` (in, out), contiguous.
    biases : torch.Tensor [shape=(L, hidden), dtype=float32]
    out : torch.Tensor [shape=(B * n, hidden), dtype=float32]
        Where the activations go, frame after frame (``n`` = the number of ``rows``), contiguous.
    rows : slice
        The pixels, ``start:stop`` (step 1).

    Returns
    -------
    torch.Tensor
        ``out``.
    """
    n_rows = rows.stop - rows.start
    n_b, hidden = bias.shape
    grid = (triton.cdiv(n_rows, BLOCK), n_b)
    _stack_kernel[grid](a0, bias, bias if scale is None else scale, weights, biases, out, n_rows, rows.start,
                        HAS_SCALE=scale is not None, H=hidden, L=weights.shape[0], BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out
