"""Plain-PyTorch CARAFE-style reassembly: always available, the path the fast
kernels are tested against.

Notation (CARAFE / DLU papers): features X of shape (N, C, H, W), reassembly
kernels K of shape (N, G*k*k, sH, sW), r = (k - 1) / 2, Cg = C / G.

    Y[n, c, i, j] = sum_{dy, dx < k} K[n, g*k*k + dy*k + dx, i, j]
                                     * X[n, c, i//s + dy - r, j//s + dx - r]

with g = c // Cg and X taken as 0 outside the map. As in mmcv's CARAFE,
Cg = ceil(C / G): when G does not divide C the last groups hold fewer
channels (or none); here the channels are zero-padded to G*Cg.

Both directions loop over the k*k window positions and work on views of
shape (N, G, Cg, H, s, W, s), so no tensor k*k times larger than the input or
the output is ever built: the extra memory is one output-sized buffer.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are accumulated in float32 and cast back."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def channels_per_group(channels: int, group_size: int) -> int:
    """Cg = ceil(C / G), mmcv's channels per group."""
    return -(-channels // group_size)


def _pad_channels(t: Tensor, channels: int) -> Tensor:
    """Zero-pad dim 1 of (N, C, ...) to ``channels``."""
    extra = channels - t.shape[1]
    if extra == 0:
        return t
    return torch.cat((t, t.new_zeros(t.shape[0], extra, *t.shape[2:])), 1)


def reassemble_forward(features: Tensor, masks: Tensor, kernel_size: int,
                       group_size: int, scale_factor: int) -> Tensor:
    """Forward reassembly. Shapes: features (N, C, H, W), masks
    (N, G*k*k, sH, sW) -> (N, C, sH, sW), in the features' dtype."""
    n, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    r = (k - 1) // 2
    cg = channels_per_group(c, g)
    acc = _accumulation_dtype(features.dtype)
    x = F.pad(_pad_channels(features.to(acc), g * cg), (r, r, r, r))
    m = masks.to(acc).reshape(n, g, k * k, h, s, w, s)
    out = torch.zeros(n, g, cg, h, s, w, s, dtype=acc,
                      device=features.device)
    for dy in range(k):
        for dx in range(k):
            window = x[:, :, dy:dy + h, dx:dx + w].reshape(
                n, g, cg, h, 1, w, 1)
            out.addcmul_(window, m[:, :, dy * k + dx].unsqueeze(2))
    out = out.reshape(n, g * cg, h * s, w * s)[:, :c]
    return out.to(features.dtype)


def reassemble_backward(
    grad_output: Tensor,
    features: Tensor,
    masks: Tensor,
    kernel_size: int,
    group_size: int,
    scale_factor: int,
    needs_features_grad: bool = True,
    needs_masks_grad: bool = True,
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`reassemble_forward` with respect to features
    (N, C, H, W) and masks (N, G*k*k, sH, sW); ``None`` where not needed.

        dL/dX[n, c, y, x] = sum over (i, j, dy, dx) that read X[c, y, x] of
                            dL/dY[n, c, i, j] * K[n, g*k*k + dy*k + dx, i, j]
        dL/dK[n, g*k*k + dy*k + dx, i, j] = sum_{c in g} dL/dY[n, c, i, j]
                            * X[n, c, i//s + dy - r, j//s + dx - r]
    """
    n, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    r = (k - 1) // 2
    cg = channels_per_group(c, g)
    acc = _accumulation_dtype(features.dtype)
    # (N, G, H, W, Cg, s*s): per source pixel, a (Cg x s*s) block of dL/dY.
    # (contiguous first: y.sum().backward() hands in a zero-stride tensor,
    # which sends the batched matmuls below down a very slow path)
    grad_blocks = _pad_channels(grad_output.to(acc), g * cg).contiguous(
    ).reshape(
        n, g, cg, h, s, w, s).permute(0, 1, 3, 5, 2, 4,
                                      6).reshape(n, g, h, w, cg, s * s)
    # (N, G, H, W, s*s, k*k): per source pixel, its s*s output kernels.
    kernel_blocks = masks.to(acc).reshape(n, g, k * k, h, s, w, s).permute(
        0, 1, 3, 5, 4, 6, 2).reshape(n, g, h, w, s * s, k * k)
    x = F.pad(_pad_channels(features.to(acc), g * cg), (r, r, r, r))

    grad_x = (torch.zeros(n, g, cg, h + 2 * r, w + 2 * r, dtype=acc,
                          device=features.device)
              if needs_features_grad else None)
    grad_m = (torch.empty(n, g, h, w, s * s, k * k, dtype=acc,
                          device=features.device)
              if needs_masks_grad else None)
    for dy in range(k):
        for dx in range(k):
            idx = dy * k + dx
            if grad_m is not None:
                # (N,G,H,W,1,Cg) @ (N,G,H,W,Cg,s*s) -> (N,G,H,W,1,s*s)
                window = x[:, :, dy:dy + h, dx:dx + w].reshape(
                    n, g, cg, h, w).permute(0, 1, 3, 4, 2).unsqueeze(-2)
                grad_m[..., idx] = torch.matmul(window,
                                                grad_blocks).squeeze(-2)
            if grad_x is not None:
                # (N,G,H,W,Cg,s*s) @ (N,G,H,W,s*s,1) -> (N,G,H,W,Cg,1)
                contrib = torch.matmul(grad_blocks,
                                       kernel_blocks[..., idx:idx + 1])
                grad_x[..., dy:dy + h, dx:dx + w] += contrib.squeeze(
                    -1).permute(0, 1, 4, 2, 3)

    grad_features = None
    if grad_x is not None:
        grad_features = grad_x[..., r:r + h, r:r + w].reshape(
            n, g * cg, h, w)[:, :c].to(features.dtype)
    grad_masks = None
    if grad_m is not None:
        grad_masks = grad_m.reshape(n, g, h, w, s, s, k * k).permute(
            0, 1, 6, 2, 4, 3, 5).reshape(n, g * k * k, h * s,
                                         w * s).to(masks.dtype)
    return grad_features, grad_masks
