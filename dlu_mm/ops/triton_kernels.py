"""Triton kernels of the reassembly and of DLU's fused op (CUDA; CPU tensors
in Triton's interpreter, ``TRITON_INTERPRET=1``). Launched by
:mod:`dlu_mm.ops.triton_backend`; imported only when Triton runs.

Notation as in :mod:`dlu_mm.ops.reassemble` / :mod:`dlu_mm.ops.dlu_reassemble`:
features X (N, C, H, W), output Y (N, C, sH, sW), k = K, s = S, r = (K-1)/2,
G groups of Cg = ceil(C/G) channels (group g holds channels [g*Cg,
min((g+1)*Cg, C)), possibly none), tap t = dy*K + dx. All tensors are
contiguous (the launcher makes them so); sums are accumulated in ``ACC``
(float32, float64 for float64 inputs); every load outside a tensor is
masked. Programs never span two groups, so a pixel's kernel is loaded (or,
for DLU, sampled) once and reused by every channel of the block.

* ``_forward``: Y[c, i, j] = sum_t K_g(i, j)[t] * X[c, i//S+dy-r, j//S+dx-r]
  -- a program per (image*group, channel block, output-pixel block);
* ``_features_grad``: dX[c, y, x] = sum_t sum_{a, b < S}
  dY[c, i, j] * K_g(i, j)[t] with (i, j) = ((y-dy+r)*S + a, (x-dx+r)*S + b)
  -- a gather, a program per (image*group, channel block, input-pixel
  block), the S*S sub-pixels along the vector axis: no atomics;
* ``_masks_grad``: dK[g*K*K + t, i, j] = sum_{c in g} dY[c, i, j]
  * X[c, i//S+dy-r, j//S+dx-r] -- a program per (image*group, tap,
  output-pixel block): no atomics;
* ``_sampling_grad``: DLU's offsets gradient per output pixel (written once)
  and its kernel-space gradient, a scatter of w_corner * dK[t] done with
  atomic adds (used only while deterministic algorithms are off; the
  launcher takes an atomics-free path otherwise).

K_g(i, j) is read from the masks (``SAMPLED=False``) or sampled from the
kernel space at the offset point (``SAMPLED=True``, :func:`_sample_points`,
grid_sample's align_corners=True / border rule in pixel units).
"""
import triton
import triton.language as tl


@triton.jit
def _sample_points(off_ptr, ng, i, j, mask, H, W, S: tl.constexpr,
                   ACC: tl.constexpr):
    """Sampling points of output pixels (i, j) of image*group ``ng``: flat
    corner indices y*W + x (00, 01, 10, 11), bilinear weights, fractions
    wx / wy and the clamp gates (0 on or beyond the border)."""
    y = i // S
    x = j // S
    hw = H * W
    ox_index = ((ng * 2 * S * S + (i % S) * S + j % S).to(tl.int64) * hw +
                y * W + x)
    ox = tl.load(off_ptr + ox_index, mask=mask, other=0.).to(ACC)
    oy = tl.load(off_ptr + ox_index + S * S * hw, mask=mask,
                 other=0.).to(ACC)
    px = x.to(ACC) + ox
    py = y.to(ACC) + oy
    x_hi = tl.cast(W - 1, ACC)  # (a size of 1 comes as a constexpr)
    y_hi = tl.cast(H - 1, ACC)
    gate_x = (px > 0) & (px < x_hi)
    gate_y = (py > 0) & (py < y_hi)
    cx = tl.where(gate_x, px, tl.where(px > 0, x_hi, 0.))
    cy = tl.where(gate_y, py, tl.where(py > 0, y_hi, 0.))
    x0 = cx.to(tl.int32)
    y0 = cy.to(tl.int32)
    wx = cx - x0.to(ACC)
    wy = cy - y0.to(ACC)
    x1 = tl.minimum(x0 + 1, W - 1)
    y1 = tl.minimum(y0 + 1, H - 1)
    i00 = y0 * W + x0
    i01 = y0 * W + x1
    i10 = y1 * W + x0
    i11 = y1 * W + x1
    w00 = (1. - wy) * (1. - wx)
    w01 = (1. - wy) * wx
    w10 = wy * (1. - wx)
    w11 = wy * wx
    return (i00, i01, i10, i11, w00, w01, w10, w11, wx, wy, gate_x,
            gate_y)


@triton.jit
def _sampled_tap(k_ptr, ng, t, i00, i01, i10, i11, w00, w01, w10, w11, mask,
                 H, W, K: tl.constexpr, ACC: tl.constexpr):
    """Tap t of the kernel space (N, G*K*K, H, W), interpolated at sampling
    points from :func:`_sample_points`."""
    plane = k_ptr + (ng * K * K + t).to(tl.int64) * (H * W)
    return (w00 * tl.load(plane + i00, mask=mask, other=0.).to(ACC) +
            w01 * tl.load(plane + i01, mask=mask, other=0.).to(ACC) +
            w10 * tl.load(plane + i10, mask=mask, other=0.).to(ACC) +
            w11 * tl.load(plane + i11, mask=mask, other=0.).to(ACC))


@triton.jit
def _kernel_tap(k_ptr, off_ptr, ng, t, i, j, p, mask, H, W, K: tl.constexpr,
                S: tl.constexpr, SAMPLED: tl.constexpr, ACC: tl.constexpr):
    """K_g(i, j)[t] for output pixels p = i*sW + j: read from the masks
    (N, G*K*K, sH, sW), or sampled from the kernel space (N, G*K*K, H, W)
    at the offset points."""
    if SAMPLED:
        i00, i01, i10, i11, w00, w01, w10, w11, wx, wy, gx, gy = \
            _sample_points(off_ptr, ng, i, j, mask, H, W, S, ACC)
        value = _sampled_tap(k_ptr, ng, t, i00, i01, i10, i11, w00, w01,
                             w10, w11, mask, H, W, K, ACC)
    else:
        plane = k_ptr + (ng * K * K + t).to(tl.int64) * (H * S * W * S)
        value = tl.load(plane + p, mask=mask, other=0.).to(ACC)
    return value


@triton.jit
def _group_channels(C, G, CG, BLOCK_C: tl.constexpr):
    """This program's image n, group g, its block of the group's channels
    c (program axis 1) and their mask (program axis 2 is n*G + g)."""
    ng = tl.program_id(2)
    c_local = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c = ng % G * CG + c_local
    return ng, ng // G, ng % G, c, (c_local < CG) & (c < C)


@triton.jit
def _forward(x_ptr, k_ptr, off_ptr, y_ptr, C, H, W, G, CG,
             K: tl.constexpr, S: tl.constexpr, SAMPLED: tl.constexpr,
             ACC: tl.constexpr, BLOCK_C: tl.constexpr,
             BLOCK_P: tl.constexpr):
    ng, n, g, c, cmask = _group_channels(C, G, CG, BLOCK_C)
    OW = W * S
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * S * OW
    i = p // OW
    j = p % OW
    rows = (n * C + c).to(tl.int64) * H
    if SAMPLED:  # the same points for every tap: found once
        i00, i01, i10, i11, w00, w01, w10, w11, wx, wy, gx, gy = \
            _sample_points(off_ptr, ng, i, j, pmask, H, W, S, ACC)
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=ACC)
    for t in range(K * K):
        if SAMPLED:
            kt = _sampled_tap(k_ptr, ng, t, i00, i01, i10, i11, w00, w01,
                              w10, w11, pmask, H, W, K, ACC)
        else:
            kt = _kernel_tap(k_ptr, off_ptr, ng, t, i, j, p, pmask, H, W, K,
                             S, SAMPLED, ACC)
        yy = i // S + t // K - (K - 1) // 2
        xx = j // S + t % K - (K - 1) // 2
        valid = pmask & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        xv = tl.load(x_ptr + (rows[:, None] + yy[None, :]) * W + xx[None, :],
                     mask=cmask[:, None] & valid[None, :], other=0.)
        acc += xv.to(ACC) * kt[None, :]
    out = y_ptr + (n * C + c).to(tl.int64)[:, None] * (H * S * OW) + \
        p[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty),
             mask=cmask[:, None] & pmask[None, :])


@triton.jit
def _features_grad(dy_ptr, k_ptr, off_ptr, dx_ptr, C, H, W, G, CG,
                   K: tl.constexpr, S: tl.constexpr, SAMPLED: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_Q: tl.constexpr, SS: tl.constexpr):
    """A block of BLOCK_Q input pixels, each with its S*S sub-pixels (SS =
    S*S rounded up to a power of two) along the vector axis, so one
    iteration per tap gathers all S*S output pixels that reach it."""
    ng, n, g, c, cmask = _group_channels(C, G, CG, BLOCK_C)
    pid_q = tl.program_id(0)
    OW = W * S
    e = tl.arange(0, BLOCK_Q * SS)
    q = pid_q * BLOCK_Q + e // SS
    ab = e % SS
    emask = (q < H * W) & (ab < S * S)
    y = q // W
    x = q % W
    out_rows = (n * C + c).to(tl.int64) * (H * S)
    acc = tl.zeros([BLOCK_C, BLOCK_Q * SS], dtype=ACC)
    for t in range(K * K):
        by = y - t // K + (K - 1) // 2
        bx = x - t % K + (K - 1) // 2
        valid = emask & (by >= 0) & (by < H) & (bx >= 0) & (bx < W)
        i = by * S + ab // S
        j = bx * S + ab % S
        kt = _kernel_tap(k_ptr, off_ptr, ng, t, i, j, i * OW + j, valid, H,
                         W, K, S, SAMPLED, ACC)
        dyv = tl.load(
            dy_ptr + (out_rows[:, None] + i[None, :]) * OW + j[None, :],
            mask=cmask[:, None] & valid[None, :], other=0.)
        acc += dyv.to(ACC) * kt[None, :]
    grad = tl.sum(tl.reshape(acc, [BLOCK_C, BLOCK_Q, SS]), axis=2)
    qs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    out = dx_ptr + (n * C + c).to(tl.int64)[:, None] * (H * W) + qs[None, :]
    tl.store(out, grad.to(dx_ptr.dtype.element_ty),
             mask=cmask[:, None] & (qs < H * W)[None, :])


@triton.jit
def _tap_grad(dy_ptr, x_ptr, n, g, t, i, j, p, pmask, C, H, W, CG,
              K: tl.constexpr, S: tl.constexpr, ACC: tl.constexpr,
              BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """dK[g*K*K + t] at output pixels p: the sum over the group's channels
    of dY times the input value that tap t reads."""
    OW = W * S
    yy = i // S + t // K - (K - 1) // 2
    xx = j // S + t % K - (K - 1) // 2
    valid = pmask & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
    acc = tl.zeros([BLOCK_P], dtype=ACC)
    for c0 in range(0, CG, BLOCK_C):
        c_local = c0 + tl.arange(0, BLOCK_C)
        c = g * CG + c_local
        cmask = (c_local < CG) & (c < C)
        chan = (n * C + c).to(tl.int64)
        dyv = tl.load(dy_ptr + chan[:, None] * (H * S * OW) + p[None, :],
                      mask=cmask[:, None] & pmask[None, :], other=0.)
        xv = tl.load(x_ptr + (chan[:, None] * H + yy[None, :]) * W +
                     xx[None, :], mask=cmask[:, None] & valid[None, :],
                     other=0.)
        acc += tl.sum(dyv.to(ACC) * xv.to(ACC), axis=0)
    return acc


@triton.jit
def _masks_grad(dy_ptr, x_ptr, dk_ptr, C, H, W, G, CG, K: tl.constexpr,
                S: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                BLOCK_P: tl.constexpr):
    pid_p = tl.program_id(0)
    t = tl.program_id(1)
    ng = tl.program_id(2)
    n = ng // G
    g = ng % G
    OW = W * S
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * S * OW
    acc = _tap_grad(dy_ptr, x_ptr, n, g, t, p // OW, p % OW, p, pmask, C, H,
                    W, CG, K, S, ACC, BLOCK_C, BLOCK_P)
    out = dk_ptr + (ng * K * K + t).to(tl.int64) * (H * S * OW) + p
    tl.store(out, acc.to(dk_ptr.dtype.element_ty), mask=pmask)


@triton.jit
def _sampling_grad(dy_ptr, x_ptr, space_ptr, off_ptr, dspace_ptr, doff_ptr,
                   C, H, W, G, CG, K: tl.constexpr, S: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                   BLOCK_P: tl.constexpr):
    """Per output pixel: dK for every tap, the offsets' gradient
    (sum_t dK[t] * dK[t]/d(x, y), gated by the clamp), and dK scattered into
    the kernel space's gradient (float32 / float64, zero-initialised) at the
    four corners with atomic adds."""
    pid_p = tl.program_id(0)
    ng = tl.program_id(2)
    n = ng // G
    g = ng % G
    OW = W * S
    hw = H * W
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < H * S * OW
    i = p // OW
    j = p % OW
    i00, i01, i10, i11, w00, w01, w10, w11, wx, wy, gate_x, gate_y = \
        _sample_points(off_ptr, ng, i, j, pmask, H, W, S, ACC)
    grad_x = tl.zeros([BLOCK_P], dtype=ACC)
    grad_y = tl.zeros([BLOCK_P], dtype=ACC)
    for t in range(K * K):
        dk = _tap_grad(dy_ptr, x_ptr, n, g, t, i, j, p, pmask, C, H, W, CG,
                       K, S, ACC, BLOCK_C, BLOCK_P)
        plane = (ng * K * K + t).to(tl.int64) * hw
        v00 = tl.load(space_ptr + plane + i00, mask=pmask, other=0.).to(ACC)
        v01 = tl.load(space_ptr + plane + i01, mask=pmask, other=0.).to(ACC)
        v10 = tl.load(space_ptr + plane + i10, mask=pmask, other=0.).to(ACC)
        v11 = tl.load(space_ptr + plane + i11, mask=pmask, other=0.).to(ACC)
        grad_x += dk * ((1. - wy) * (v01 - v00) + wy * (v11 - v10))
        grad_y += dk * ((1. - wx) * (v10 - v00) + wx * (v11 - v01))
        tl.atomic_add(dspace_ptr + plane + i00, w00 * dk, mask=pmask)
        tl.atomic_add(dspace_ptr + plane + i01, w01 * dk, mask=pmask)
        tl.atomic_add(dspace_ptr + plane + i10, w10 * dk, mask=pmask)
        tl.atomic_add(dspace_ptr + plane + i11, w11 * dk, mask=pmask)
    y = i // S
    x = j // S
    ox_index = ((ng * 2 * S * S + (i % S) * S + j % S).to(tl.int64) * hw +
                y * W + x)
    elem = doff_ptr.dtype.element_ty
    tl.store(doff_ptr + ox_index,
             (grad_x * gate_x.to(ACC)).to(elem), mask=pmask)
    tl.store(doff_ptr + ox_index + S * S * hw,
             (grad_y * gate_y.to(ACC)).to(elem), mask=pmask)
