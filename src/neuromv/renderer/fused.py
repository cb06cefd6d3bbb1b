"""The dense method's hidden layers fused into one GPU kernel (Triton), where Triton and a CUDA GPU are there.

Unfused, each of the CPPN's layers is a thin matrix product (``hidden`` wide) followed by a separate tanh pass,
so every layer reads and writes its activations through device memory: about 2.8 kB per pixel of a frame at
hidden 32 and 5 layers, which bounds the render by memory bandwidth (docs/performance.md). Fused, a block of
pixels of one frame goes through the first layer's tanh and every hidden-to-hidden layer in registers: the kernel
reads the first layer's coordinate part (``hidden`` floats per pixel) and writes the last hidden activations, and
the output layer, the colour map and uint8 stay in torch (:mod:`.dense`).

The products are float32 in full precision (``input_precision='ieee'``: no TF32), tanh is computed from one
``exp`` (its absolute error about 1e-7, the rounding of ``1 - exp(-2|x|)``); the frames match the
unfused path's within rounding (tests/test_gpu_path.py compares them on a GPU).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["BLOCK", "NUM_WARPS", "hidden_stack", "supports", "triton_available"]

#: Pixels of one frame per Triton program, and its warps (chosen on an H200 by ``bench/gpu.py --sweep``).
BLOCK = 64
NUM_WARPS = 4


@functools.cache
def triton_available() -> bool:
    """Whether Triton imports here (it comes with PyTorch's CUDA builds; CPU builds have none). Imported on first
    use, not with neuromv: it takes a moment."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def supports(device: torch.device, hidden: int, n_layers: int) -> bool:
    """Whether :func:`hidden_stack` runs here: a CUDA device of compute capability 8.0 or later (Ampere on: what
    Triton supports in full), Triton importable, ``hidden`` a power of two from 16 to 128 (Triton's matrix products
    need 16 at least; 128 keeps a block's activations in registers), and at least one hidden-to-hidden layer
    (``n_layers``)."""
    return (device.type == "cuda" and 16 <= hidden <= 128 and hidden & (hidden - 1) == 0 and n_layers >= 1
            and triton_available() and torch.cuda.get_device_capability(device)[0] >= 8)


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
    import triton

    from ._fused_kernel import stack_kernel  # Triton compiles it at the first call

    n_rows = rows.stop - rows.start
    n_b, hidden = bias.shape
    grid = (triton.cdiv(n_rows, BLOCK), n_b)
    stack_kernel[grid](a0, bias, bias if scale is None else scale, weights, biases, out, n_rows, rows.start,
                       HAS_SCALE=scale is not None, H=hidden, L=weights.shape[0], BLOCK=BLOCK, num_warps=NUM_WARPS)
    return out
