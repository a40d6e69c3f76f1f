"""Independent, loop-based references (numpy, float64) written from the
papers' equations. They share no code with the package."""
import numpy as np
import torch
import torch.nn.functional as F


def reassemble(x, masks, k, groups, s):
    """Y[n,c,i,j] = sum_{dy,dx} K[n, g*k*k+dy*k+dx, i, j] *
    X[n, c, i//s+dy-r, j//s+dx-r], zero outside the map; channel c is in
    group g = c // ceil(C/G) (mmcv's CARAFE)."""
    x, masks = np.asarray(x, np.float64), np.asarray(masks, np.float64)
    n, c, h, w = x.shape
    r, cg = (k - 1) // 2, -(-c // groups)
    out = np.zeros((n, c, h * s, w * s))
    for b in range(n):
        for i in range(h * s):
            for j in range(w * s):
                for g in range(groups):
                    chans = slice(g * cg, min((g + 1) * cg, c))
                    for dy in range(k):
                        y = i // s + dy - r
                        if not 0 <= y < h:
                            continue
                        for dx in range(k):
                            xx = j // s + dx - r
                            if 0 <= xx < w:
                                out[b, chans, i, j] += masks[
                                    b, g * k * k + dy * k + dx, i,
                                    j] * x[b, chans, y, xx]
    return out


def softmax_groups(m, k):
    """Softmax over each group's k*k channels of (N, G*k*k, H, W)."""
    n, c, h, w = m.shape
    m = m.reshape(n, c // (k * k), k * k, h, w)
    e = np.exp(m - m.max(axis=2, keepdims=True))
    return (e / e.sum(axis=2, keepdims=True)).reshape(n, c, h, w)


def pixel_shuffle(t, s):
    """(N, C*s*s, H, W) -> (N, C, sH, sW): out[c, i, j] =
    in[c*s*s + (i%s)*s + j%s, i//s, j//s]."""
    n, cs, h, w = t.shape
    out = np.zeros((n, cs // (s * s), h * s, w * s))
    for c in range(cs // (s * s)):
        for i in range(h * s):
            for j in range(w * s):
                out[:, c, i, j] = t[:, c * s * s + (i % s) * s + j % s,
                                    i // s, j // s]
    return out


def bilinear_border(img, y, x):
    """Sample (..., H, W) at real (y, x), clamped to the map (border)."""
    h, w = img.shape[-2:]
    y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    wy, wx = y - y0, x - x0
    return ((1 - wy) * (1 - wx) * img[..., y0, x0] +
            (1 - wy) * wx * img[..., y0, x1] + wy * (1 - wx) * img[..., y1, x0]
            + wy * wx * img[..., y1, x1])


def _conv(conv, t):
    with torch.no_grad():
        return F.conv2d(torch.as_tensor(t, dtype=torch.float64),
                        conv.weight.double(), conv.bias.double(),
                        padding=conv.padding,
                        dilation=conv.dilation).numpy()


def dlu(module, x):
    """DLU forward from the paper: kernel space at low resolution, sampled
    at (i//s + oy, j//s + ox) per group, then CARAFE reassembly."""
    x = np.asarray(x, np.float64)
    k, g, s = module.up_kernel, module.up_group, module.scale_factor
    comp = _conv(module.channel_compressor, x)
    space = softmax_groups(_conv(module.kernel_space_generator, comp), k)
    off = _conv(module.conv_offset, comp)
    return dlu_reassemble(x, space, off, k, g, s)


def sample_kernels(space, off, k, g, s):
    """Per-output-pixel kernels (N, G*k*k, sH, sW): group grp's kernel
    space sampled at (i//s + oy, j//s + ox), with ox = offsets channel
    2*grp*s*s + (i%s)*s + j%s and oy the next s*s block (pixel shuffle)."""
    space, off = np.asarray(space, np.float64), np.asarray(off, np.float64)
    n, _, h, w = space.shape
    kernels = np.zeros((n, g * k * k, h * s, w * s))
    for b in range(n):
        for grp in range(g):
            for i in range(h * s):
                for j in range(w * s):
                    base = (i % s) * s + j % s
                    ox = off[b, 2 * grp * s * s + base, i // s, j // s]
                    oy = off[b, (2 * grp + 1) * s * s + base, i // s, j // s]
                    kernels[b, grp * k * k:(grp + 1) * k * k, i, j] = \
                        bilinear_border(space[b, grp * k * k:(grp + 1) * k * k],
                                        i // s + oy, j // s + ox)
    return kernels


def dlu_reassemble(x, space, off, k, g, s):
    """DLU's output from the input, its kernel space and its offsets."""
    return reassemble(x, sample_kernels(space, off, k, g, s), k, g, s)


def carafe(module, x):
    """CARAFE forward from its paper: per-output-pixel kernels from a
    content encoder, pixel shuffle, softmax, reassembly."""
    x = np.asarray(x, np.float64)
    k, g, s = module.up_kernel, module.up_group, module.scale_factor
    enc = _conv(module.content_encoder, _conv(module.channel_compressor, x))
    return reassemble(x, softmax_groups(pixel_shuffle(enc, s), k), k, g, s)
