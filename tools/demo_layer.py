"""See the DLU layer work in a minute: a tiny super-resolution fit.

    python tools/demo_layer.py [--image astronaut] [--scale 2] [--steps 150]
        [--size 128] [--out work_dirs/demo_layer/demo_layer.png] [--seed 0]
        [--json PATH] [--lr 3e-3] [--threads N]

1. A photo from ``skimage.data`` is centre-cropped and resized to
   ``size x size`` (the target), and area-downsampled by s (the input).
2. DLU and CARAFE are built **through the registry**, as a config would:
   ``mmcv.cnn.build_upsample_layer(dict(type='dlu', channels=3,
   scale_factor=s))`` and ``type='carafe_portable'`` (mmcv's own
   ``'carafe'`` when CUDA is available), with the paper's defaults
   (k_up=5, k_enc=3, C_m=64, G=1). Their parameter counts are printed side
   by side and checked against :mod:`dlu_mm.complexity`.
3. Each layer is fitted for ``--steps`` Adam steps (MSE) to map the input
   back to the target; PSNR against the target is printed for nearest,
   bilinear, CARAFE and DLU (and for the learned layers before fitting).
4. One PNG shows the input, the bilinear / CARAFE / DLU outputs, the
   target, DLU's learned offset field (colour = direction, brightness =
   length, arrows), the centre weight of its sampled kernels and its
   kernel space (the k_up^2 channels as a k_up x k_up mosaic).

Why ``channels=3`` (the layers reassemble RGB directly) rather than a 1x1
lift to more channels and a 1x1 projection back: reassembly is linear in the
features and, with G=1, applies one kernel to all channels, so
``P . reassemble(L . x) == reassemble((P . L) . x)``; the lift would add
parameters, not function. With C=3 each output pixel is a content-aware
convex combination (softmax kernels) of nearby input pixels, directly
comparable with bilinear, which is a fixed convex combination.

What to expect (defaults, CPU): CARAFE ~24.1 dB > bilinear 23.6 dB > DLU
~22.9-23.0 dB ~ nearest 22.9 dB, both layers up from ~16 dB before fitting.
CARAFE predicts s^2 kernels per input pixel, so it can learn sub-pixel
interpolation. DLU predicts one kernel per input pixel (its kernel space) and
gives the s^2 outputs of a pixel different kernels only by sampling that
space at learned offsets; where the kernel space is locally uniform (smooth
image regions) every offset yields the same kernel, so those outputs equal
each other, as in nearest upsampling, and the offsets there do not change the
output (they drift freely, which the offset panel shows). DLU's gains are at
edges, and in a network the convolutions after the upsampler (FPN, decode
heads: where the paper uses it) remove the blockiness. The demo shows what
the layer learns and costs; it is not a super-resolution method.
"""
import argparse
import json
import math
import os
import sys
import time
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
import dlu_mm  # noqa: E402,F401  (registers 'dlu' and 'carafe_portable')
from dlu_mm.complexity import (UpsamplerSpec, carafe_macs,  # noqa: E402
                               carafe_params, dlu_macs, dlu_params)
from dlu_mm.demo_photos import PHOTOS  # noqa: E402
from dlu_mm.demo_photos import load_photo as load_full_photo  # noqa: E402


def load_photo(name: str, size: int) -> np.ndarray:
    """Photo ``name`` (one of :data:`dlu_mm.demo_photos.PHOTOS`)
    centre-cropped to a square and resized to (size, size, 3) float32 in
    [0, 1] (area interpolation)."""
    import cv2
    img = load_full_photo(name)
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    img = img[y0:y0 + side, x0:x0 + side]
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of [0, 1] images; pred is clamped."""
    mse = F.mse_loss(pred.detach().clamp(0, 1), target).item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def build_layers(scale: int,
                 device: torch.device) -> Dict[str, torch.nn.Module]:
    """DLU and CARAFE for RGB (C=3) at scale s, built through mmcv's
    registry; mmcv's CUDA ``carafe`` on GPU, ``carafe_portable`` on CPU."""
    from mmcv.cnn import build_upsample_layer
    carafe_type = 'carafe' if device.type == 'cuda' else 'carafe_portable'
    if carafe_type == 'carafe':
        import mmcv.ops  # noqa: F401  (registers 'carafe')
    return dict(
        carafe=build_upsample_layer(dict(type=carafe_type, channels=3,
                                         scale_factor=scale)).to(device),
        dlu=build_upsample_layer(dict(type='dlu', channels=3,
                                      scale_factor=scale)).to(device))


def complexity_report(layers: Dict[str, torch.nn.Module], scale: int) -> Dict:
    """Counted parameters next to the paper's formulas; raises if they
    disagree."""
    spec = UpsamplerSpec(channels=3, scale_factor=scale)
    formulas = dict(carafe=(carafe_params(spec), carafe_macs(spec)),
                    dlu=(dlu_params(spec), dlu_macs(spec)))
    report = {}
    for name, layer in layers.items():
        counted = sum(p.numel() for p in layer.parameters())
        params, macs = formulas[name]
        if counted != params:
            raise RuntimeError(f'{name}: {counted} parameters counted, the '
                               f'formula for {spec} gives {params}')
        report[name] = dict(params=counted, params_formula=params,
                            macs_per_input_px=macs)
    return report


def fit(layer: torch.nn.Module, lr_img: torch.Tensor, target: torch.Tensor,
        steps: int, lr: float) -> Tuple[float, float]:
    """Adam on MSE(layer(lr_img), target); returns (PSNR before, after)."""
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    with torch.no_grad():
        before = psnr(layer(lr_img), target)
    for _ in range(steps):
        loss = F.mse_loss(layer(lr_img), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = psnr(layer(lr_img), target)
    return before, after


def _to_image(t: torch.Tensor) -> np.ndarray:
    return t[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def offset_colours(off: np.ndarray) -> np.ndarray:
    """(2, H, W) offsets (x, y) -> (H, W, 3) RGB: hue = direction,
    brightness = length relative to the largest."""
    from matplotlib.colors import hsv_to_rgb
    mag = np.hypot(off[0], off[1])
    hue = (np.arctan2(off[1], off[0]) / (2 * np.pi)) % 1.0
    val = mag / max(float(mag.max()), 1e-8)
    return hsv_to_rgb(np.stack([hue, np.ones_like(hue), val], -1))


def draw_figure(path: str, images: Dict[str, np.ndarray], scores: Dict,
                dlu: torch.nn.Module, lr_img: torch.Tensor) -> None:
    """The 2x4 panel PNG described in the module docstring."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    s, k = dlu.scale_factor, dlu.up_kernel
    with torch.no_grad():
        prediction = dlu.predict_kernels(lr_img)
        space, offsets = prediction.kernel_space, prediction.offsets
        kernels = prediction.per_pixel_kernels(s)
    off = F.pixel_shuffle(offsets, s)[0, :2].cpu().numpy()  # (2, sH, sW)
    centre = kernels[0, k * k // 2].cpu().numpy()
    h, w = space.shape[2:]
    mosaic = space[0, :k * k].reshape(k, k, h, w).permute(0, 2, 1, 3)
    mosaic = mosaic.reshape(k * h, k * w).cpu().numpy()

    fig, axes = plt.subplots(2, 4, figsize=(16, 8.6))
    panels = [
        ('input (1/%d)' % s, images['input'], None),
        ('bilinear  %.2f dB' % scores['bilinear'], images['bilinear'], None),
        ('CARAFE  %.2f dB' % scores['carafe'], images['carafe'], None),
        ('DLU  %.2f dB' % scores['dlu'], images['dlu'], None),
        ('target', images['target'], None),
        ('DLU offsets (hue: direction, brightness: length,\nmax %.2f input '
         'px)' % float(np.hypot(*off).max()), offset_colours(off), None),
        ('DLU sampled kernels: centre weight', centre, 'viridis'),
        ('DLU kernel space: %dx%d mosaic of its k_up^2 maps' % (k, k),
         mosaic, 'magma'),
    ]
    for ax, (title, img, cmap) in zip(axes.ravel(), panels):
        im = ax.imshow(img, cmap=cmap, interpolation='nearest')
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        if cmap is not None:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    step = max(1, off.shape[1] // 16)
    ys, xs = np.mgrid[step // 2:off.shape[1]:step, step // 2:off.shape[2]:step]
    axes[1, 1].quiver(xs, ys, off[0][ys, xs], off[1][ys, xs], color='white',
                      angles='xy', scale_units='xy',
                      scale=1 / (2 * s), width=0.004)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(image: str = 'astronaut', scale: int = 2, steps: int = 150,
        size: int = 128, out: str = 'work_dirs/demo_layer/demo_layer.png',
        seed: int = 0, lr: float = 3e-3, json_path: str = None) -> Dict:
    """The whole demo; returns the numbers it prints (and writes as JSON)."""
    if scale < 2:
        raise ValueError(f'--scale must be >= 2, got {scale}')
    if size % scale or size // scale < 4:
        raise ValueError(f'--size must be a multiple of --scale ({scale}) '
                         f'and at least {4 * scale}, got {size}')
    if steps < 0:
        raise ValueError(f'--steps must be >= 0, got {steps}')
    start = time.time()
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    target = torch.from_numpy(load_photo(image, size)).permute(2, 0, 1)
    target = target[None].to(device)
    lr_img = F.avg_pool2d(target, scale)
    torch.manual_seed(seed)
    layers = build_layers(scale, device)
    report = complexity_report(layers, scale)
    print(f'{image} {size}x{size}, x{scale} from {size // scale}x'
          f'{size // scale}, C=3, C_m=64, k_up=5, k_enc=3, G=1, {device}')
    print(f'{"":8s}{"params":>10s}{"formula":>10s}{"MACs/input px":>15s}')
    for name in ('carafe', 'dlu'):
        r = report[name]
        print(f'{name:8s}{r["params"]:>10,d}{r["params_formula"]:>10,d}'
              f'{r["macs_per_input_px"]:>15,d}')
    fewer = 1 - report['dlu']['params'] / report['carafe']['params']
    print(f'DLU has {fewer:.0%} fewer parameters than CARAFE here')

    outputs = dict(
        input=F.interpolate(lr_img, scale_factor=scale, mode='nearest'),
        bilinear=F.interpolate(lr_img, scale_factor=scale, mode='bilinear',
                               align_corners=False))
    scores = dict(nearest=psnr(outputs['input'], target),
                  bilinear=psnr(outputs['bilinear'], target))
    initial = {}
    for name in ('carafe', 'dlu'):
        t0 = time.time()
        initial[name], scores[name] = fit(layers[name], lr_img, target,
                                          steps, lr)
        with torch.no_grad():
            outputs[name] = layers[name](lr_img)
        print(f'fitted {name}: {steps} Adam steps in {time.time() - t0:.1f} s'
              f', PSNR {initial[name]:.2f} -> {scores[name]:.2f} dB')
    print('PSNR vs target: ' + ', '.join(
        f'{n} {scores[n]:.2f} dB' for n in ('nearest', 'bilinear', 'carafe',
                                             'dlu')))
    images = {n: _to_image(t) for n, t in outputs.items()}
    images['target'] = _to_image(target)
    draw_figure(out, images, scores, layers['dlu'], lr_img)
    result = dict(image=image, size=size, scale=scale, steps=steps,
                  seed=seed, lr=lr, device=str(device), params=report,
                  psnr=scores, psnr_before_fit=initial, figure=out,
                  seconds=round(time.time() - start, 2))
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)),
                    exist_ok=True)
        with open(json_path, 'w') as f:
            json.dump(result, f, indent=2)
    print(f'wrote {out}' + (f' and {json_path}' if json_path else '') +
          f' ({result["seconds"]:.1f} s)')
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Fit DLU and CARAFE to upsample a photo; plot what DLU '
        'learns.')
    parser.add_argument('--image', default='astronaut', choices=PHOTOS,
                        help='a photo shipped with scikit-image')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--steps', type=int, default=150)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--out', default='work_dirs/demo_layer/demo_layer.png')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--lr', type=float, default=3e-3,
                        help='Adam learning rate')
    parser.add_argument('--json', default=None, help='write the numbers here')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads for this run (default: '
                        "torch's)")
    return parser.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args.image, args.scale, args.steps, args.size, args.out,
                   args.seed, args.lr, args.json)
    finally:
        torch.set_num_threads(threads)


if __name__ == '__main__':
    main()
