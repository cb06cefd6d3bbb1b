"""The Triton kernel of :mod:`.fused` (imported there on first use, so that neuromv itself does not import
Triton). See :func:`.fused.hidden_stack`."""

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1 (no overflow); absolute error about 1e-7
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


# One program: BLOCK pixels (from row0) of one frame through the first layer's tanh and L hidden-to-hidden layers
# of width H, in registers; see neuromv.renderer.fused.hidden_stack. n_rows and row0 change from chunk to chunk:
# specialising on them (Triton's default for integers) would compile the kernel again for each new value's
# divisibility.
@triton.jit(do_not_specialize=["n_rows", "row0"])
def stack_kernel(a0_ptr, bias_ptr, scale_ptr, w_ptr, b_ptr, out_ptr, n_rows, row0,
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
