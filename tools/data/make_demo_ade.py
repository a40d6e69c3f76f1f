"""Generate the demo semantic segmentation set in ADE20K format.

    python tools/data/make_demo_ade.py --out-dir data/demo_ade \
        [--num-train 400] [--num-val 50] [--size 256 256] [--seed 0]

Layout (mmseg's ADE20K layout, same stem for image and label)::

    out_dir/images/training/000000.jpg       out_dir/images/validation/...
    out_dir/annotations/training/000000.png  out_dir/annotations/validation/...

Labels are single-channel uint8 PNGs with ADE20K's convention: 0 = other /
unlabelled, k = ``CLASSES[k - 1]`` for k in 1..11. Train with
``reduce_zero_label=True`` (label k -> class k - 1, 0 -> 255 = ignored).

A scene: "stuff" regions (sky, grass, road, water, wall) laid out as a
horizon scene, bands or a Voronoi partition, each region with its class's
texture family in varied colours; a little label-0 "other" (thin borders
between regions, photo-textured blobs, an image frame); then 1..5 "thing"
shapes from :mod:`demo_shapes` (the same six kinds as the detection set).

Image ``i`` of a split depends only on (seed, split, i): same seed, same bytes.
"""
import math
import os
import sys
import time
from typing import List, Tuple

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_shapes  # noqa: E402
from demo_shapes import random_colour, smooth_noise  # noqa: E402

STUFF = ('sky', 'grass', 'road', 'water', 'wall')
THINGS = demo_shapes.SHAPES
CLASSES = STUFF + THINGS
OTHER = 0  # ADE20K's "other / unlabelled" label
SPLITS = ('training', 'validation')
THINGS_PER_IMAGE = (1, 5)
SIZE_RANGE_AT_256 = (14.0, 100.0)
JPEG_QUALITY = 92
assert CLASSES == ('sky', 'grass', 'road', 'water', 'wall', 'disc', 'box',
                   'triangle', 'star', 'ring', 'cross')


def label_of(name: str) -> int:
    """PNG value of a class name (1-based; 0 is 'other')."""
    return CLASSES.index(name) + 1


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([seed, 100 + SPLITS.index(split), index]))


# ---------------------------------------------------------- stuff textures
def _shade(p: np.ndarray, colour: np.ndarray, spread: float) -> np.ndarray:
    """Colour modulated by a pattern: (h, w) in [0, 1] -> (h, w, 3)."""
    return colour * (1 - spread + 2 * spread * p[..., None])


def sky_texture(rng, h, w):
    """Vertical gradient (blue, grey, or sunset) with soft clouds."""
    hue = (0.53, 0.64) if rng.random() < 0.65 else (-0.05, 0.12)
    top = random_colour(rng, hue, (0.2, 0.8), (0.45, 0.9))
    bottom = np.clip(top + rng.uniform(0.05, 0.3), 0, 1).astype(np.float32)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top + (bottom - top) * t, (h, w, 3))
    cloud = np.clip((smooth_noise(rng, h, w, rng.uniform(20, 60)) - 0.5) * 3,
                    0, 1) * np.float32(rng.uniform(0, 0.9))
    white = random_colour(rng, (0, 1), (0, 0.1), (0.8, 1.0))
    return img + (white - img) * cloud[..., None]


def grass_texture(rng, h, w):
    """Green (sometimes dry yellow) with vertical blade streaks."""
    hue = (0.20, 0.40) if rng.random() < 0.8 else (0.10, 0.17)
    base = random_colour(rng, hue, (0.35, 0.9), (0.2, 0.7))
    blades = cv2.resize(rng.random((max(2, h // 6), w), dtype=np.float32),
                        (w, h), interpolation=cv2.INTER_LINEAR)
    p = 0.6 * blades + 0.4 * smooth_noise(rng, h, w, 24)
    return _shade(p, base, 0.45)


def road_texture(rng, h, w):
    """Grey asphalt: fine speckle on a low-frequency tone, maybe lane marks."""
    base = random_colour(rng, (0, 1), (0, 0.12), (0.2, 0.6))
    p = 0.5 * rng.random((h, w), dtype=np.float32) + \
        0.5 * smooth_noise(rng, h, w, 40)
    img = _shade(p, base, 0.25)
    if rng.random() < 0.5:
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, math.pi)
        across = x * math.cos(angle) + y * math.sin(angle)
        along = -x * math.sin(angle) + y * math.cos(angle)
        centre = rng.uniform(0.3, 0.7) * (abs(math.cos(angle)) * w +
                                          abs(math.sin(angle)) * h)
        lane = (np.abs(across - centre) < 2) & \
            ((along % rng.uniform(20, 40)) < 12)
        img[lane] = random_colour(rng, (0.1, 0.17), (0, 0.9), (0.85, 1))
    return img


def water_texture(rng, h, w):
    """Blue / teal (sometimes murky) with horizontal ripples and glints."""
    hue = (0.48, 0.62) if rng.random() < 0.8 else (0.15, 0.3)
    base = random_colour(rng, hue, (0.3, 0.9), (0.25, 0.75))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    warp = smooth_noise(rng, h, w, 32) * rng.uniform(5, 20)
    ripples = 0.5 + 0.5 * np.sin(2 * math.pi * (y + warp) /
                                 rng.uniform(3, 9))
    img = _shade(0.7 * ripples + 0.3 * smooth_noise(rng, h, w, 16), base, 0.3)
    glint = rng.random((h, w), dtype=np.float32) > 0.992
    img[glint] = np.clip(base + 0.5, 0, 1)
    return img


def wall_texture(rng, h, w):
    """Bricks with mortar lines (70%) or mottled plaster."""
    base = random_colour(rng, (-0.05, 0.12), (0.1, 0.7), (0.3, 0.85))
    if rng.random() < 0.3:
        return _shade(smooth_noise(rng, h, w, rng.uniform(4, 12)), base, 0.2)
    row = rng.uniform(6, 14)
    brick = row * rng.uniform(2, 3)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.floor(y / row)
    xs = x + (r % 2) * brick / 2
    mortar = ((y % row) < 1.5) | ((xs % brick) < 1.5)
    tone = rng.uniform(0.8, 1.2, (int(h / row) + 2, int(w / brick) + 3))
    per_brick = tone[r.astype(int), np.floor(xs / brick).astype(int)]
    img = base * per_brick[..., None].astype(np.float32)
    img = _shade(rng.random((h, w), dtype=np.float32), img, 0.08)
    img[mortar] = random_colour(rng, (0, 1), (0, 0.1), (0.5, 0.9))
    return img


TEXTURES = dict(sky=sky_texture, grass=grass_texture, road=road_texture,
                water=water_texture, wall=wall_texture)


# ----------------------------------------------------------------- layouts
def _poly_mask(h: int, w: int, pts) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    cv2.fillPoly(out, [np.round(np.asarray(pts)).astype(np.int32)], 1)
    return out.astype(bool)


def horizon_layout(rng, h, w) -> Tuple[np.ndarray, List[str]]:
    """Sky (or wall) above a tilted horizon, ground (grass / water / road)
    below, maybe a wall skyline, a road running to the horizon and a pond."""
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None]
    horizon = rng.uniform(0.25, 0.6) * h + rng.uniform(-0.15, 0.15) * \
        (x - w / 2)
    names = ['sky' if rng.random() < 0.8 else 'wall',
             ['grass', 'water', 'road'][rng.choice(3, p=[0.6, 0.25, 0.15])]]
    regions = np.where(y < horizon, 0, 1).astype(np.int32)
    if names[0] == 'sky' and rng.random() < 0.5:  # buildings on the horizon
        skyline = np.zeros(w, np.float32)
        x0 = 0
        while x0 < w:
            width = int(rng.uniform(0.08, 0.3) * w)
            if rng.random() < 0.6:
                skyline[x0:x0 + width] = rng.uniform(0.05, 0.3) * h
            x0 += width
        names.append('wall')
        regions[(y < horizon) & (y >= horizon - skyline[None])] = 2
    if names[1] != 'road' and rng.random() < 0.6:  # a road to the horizon
        vx = rng.uniform(0.2, 0.8) * w
        vy = float(np.interp(vx, x[0], horizon[0]))
        bottom = rng.uniform(0.3, 0.9) * w
        half = rng.uniform(0.15, 0.4) * w
        names.append('road')
        regions[_poly_mask(h, w, [[vx - 2, vy], [vx + 2, vy],
                                  [bottom + half, h], [bottom - half, h]])
                & (y >= horizon)] = len(names) - 1
    if names[1] != 'water' and rng.random() < 0.4:  # a pond
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.75, 0.95) * h
        t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        r = rng.uniform(0.1, 0.25) * w * rng.uniform(0.7, 1.3, 24)
        names.append('water')
        pond = _poly_mask(h, w, np.stack([cx + r * np.cos(t),
                                          cy + 0.5 * r * np.sin(t)], 1))
        regions[pond & (y >= horizon)] = len(names) - 1
    return regions, names


def band_layout(rng, h, w) -> Tuple[np.ndarray, List[str]]:
    """2..4 wavy bands across a random direction, neighbours differing."""
    n = int(rng.integers(2, 5))
    angle = rng.uniform(-0.4, 0.4) + (math.pi / 2 if rng.random() < 0.3
                                      else 0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = y * math.cos(angle) + x * math.sin(angle)
    t = t + rng.uniform(2, 10) * np.sin(
        2 * math.pi * (x * math.cos(angle) - y * math.sin(angle)) /
        rng.uniform(40, 160) + rng.uniform(0, 6.3))
    cuts = np.sort(rng.uniform(t.min(), t.max(), n - 1))
    regions = np.searchsorted(cuts, t).astype(np.int32)
    names = [STUFF[rng.integers(len(STUFF))]]
    for _ in range(n - 1):
        names.append(STUFF[(STUFF.index(names[-1]) +
                            rng.integers(1, len(STUFF))) % len(STUFF)])
    return regions, names


def voronoi_layout(rng, h, w) -> Tuple[np.ndarray, List[str]]:
    """3..6 Voronoi cells (stretched metric), each a random stuff class."""
    n = int(rng.integers(3, 7))
    seeds = rng.uniform(0, 1, (n, 2)) * [w, h]
    stretch = math.exp(rng.uniform(-0.7, 0.7))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    d = [((x - sx) * stretch)**2 + ((y - sy) / stretch)**2
         for sx, sy in seeds]
    regions = np.argmin(np.stack(d), 0).astype(np.int32)
    names = [STUFF[i] for i in rng.integers(len(STUFF), size=n)]
    return regions, names


LAYOUTS = (horizon_layout, band_layout, voronoi_layout)
LAYOUT_P = (0.45, 0.25, 0.30)


# ------------------------------------------------------------------ scene
def _other_regions(rng, regions: np.ndarray) -> np.ndarray:
    """Where label 0 goes: borders between regions, blobs, a frame.
    At least one of them, and never more than about a tenth of the image."""
    h, w = regions.shape
    other = np.zeros((h, w), bool)
    kinds = rng.random(3) < [0.5, 0.5, 0.25]
    if not kinds.any():
        kinds[rng.integers(3)] = True
    if kinds[0]:  # thin borders between stuff regions (kerbs, fences)
        edge = np.zeros((h, w), bool)
        edge[1:] |= regions[1:] != regions[:-1]
        edge[:, 1:] |= regions[:, 1:] != regions[:, :-1]
        k = int(rng.integers(1, 4))
        other |= cv2.dilate(edge.astype(np.uint8), np.ones((k, k),
                                                           np.uint8)) > 0
    if kinds[1]:  # 1..2 irregular blobs
        for _ in range(int(rng.integers(1, 3))):
            r = rng.uniform(0.04, 0.1) * min(h, w)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            y, x = np.mgrid[0:h, 0:w].astype(np.float32)
            dist = np.hypot(x - cx, y - cy) / r
            other |= dist + 0.6 * smooth_noise(rng, h, w, r / 2) < 1.2
    if kinds[2]:  # a frame
        b = int(rng.integers(2, 6))
        other[:b] = other[-b:] = True
        other[:, :b] = other[:, -b:] = True
    return other


def render_scene(seed: int, split: str, index: int,
                 image_size: Tuple[int, int]):
    """Scene ``index`` of ``split``: (uint8 (H, W, 3) RGB image, uint8
    (H, W) label map with values in 0..len(CLASSES))."""
    rng = image_rng(seed, split, index)
    h, w = image_size
    layout = LAYOUTS[rng.choice(len(LAYOUTS), p=LAYOUT_P)]
    regions, names = layout(rng, h, w)
    image = np.zeros((h, w, 3), np.float32)
    label = np.zeros((h, w), np.uint8)
    for i, name in enumerate(names):
        inside = regions == i
        if inside.any():
            image[inside] = TEXTURES[name](rng, h, w)[inside]
            label[inside] = label_of(name)
    other = _other_regions(rng, regions)
    image[other] = demo_shapes.object_texture(rng, h, w)[other]
    label[other] = OTHER
    scale = min(h, w) / 256
    count = int(rng.integers(THINGS_PER_IMAGE[0], THINGS_PER_IMAGE[1] + 1))
    for p in demo_shapes.paste_shapes(
            rng, image, count, THINGS,
            (SIZE_RANGE_AT_256[0] * scale, SIZE_RANGE_AT_256[1] * scale),
            min_area=max(16, int(40 * scale * scale))):
        label[p.mask] = label_of(p.kind)
    return demo_shapes.finish(image, rng), label


# ---------------------------------------------------------------- dataset
def make_demo_ade(out_dir: str, num_train: int = 400, num_val: int = 50,
                  image_size: Tuple[int, int] = (256, 256),
                  seed: int = 0) -> np.ndarray:
    """Write the demo set under ``out_dir``; returns the pixel count of
    each label value 0..11 over both splits."""
    image_size = tuple(image_size)
    demo_shapes.check_args(num_train, num_val, image_size, seed)
    start = time.time()
    counts = np.zeros(len(CLASSES) + 1, np.int64)
    for split, num in zip(SPLITS, (num_train, num_val)):
        img_dir = os.path.join(out_dir, 'images', split)
        ann_dir = os.path.join(out_dir, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for index in range(num):
            image, label = render_scene(seed, split, index, image_size)
            Image.fromarray(image).save(
                os.path.join(img_dir, f'{index:06d}.jpg'),
                quality=JPEG_QUALITY)
            Image.fromarray(label, mode='L').save(
                os.path.join(ann_dir, f'{index:06d}.png'))
            counts += np.bincount(label.ravel(), minlength=len(counts))
    share = counts / counts.sum()
    print(f'make_demo_ade: {num_train} train / {num_val} val images, '
          f'{len(CLASSES)} classes + other ({share[0]:.1%} of pixels), '
          f'{image_size[0]}x{image_size[1]}, seed {seed} -> {out_dir} '
          f'({time.time() - start:.1f} s)')
    return counts


def main(argv=None):
    demo_shapes.run_cli(make_demo_ade, __doc__, 'data/demo_ade', 400, 50, argv)


if __name__ == '__main__':
    main()
