"""Drawing code shared by the demo dataset generators
(``make_demo_coco.py``, ``make_demo_ade.py``).

Everything takes a ``numpy.random.Generator`` and uses no other source of
randomness, so a scene is a pure function of its generator's seed.

* Shapes: six kinds (:data:`SHAPES`), each a polygon (the ring also a hole
  polygon) in unit coordinates, scaled to a size, stretched by an aspect
  ratio and rotated (:func:`sample_shape`), rasterised with anti-aliased edges
  into an alpha map (:func:`rasterise`); the shape's mask is ``alpha >= 0.5``.
* Textures: photo crops of scikit-image's shipped images
  (:data:`dlu_mm.demo_photos.TEXTURE_PHOTOS`), smooth/fine noise,
  stripes, checkers and gradients, blended with random colours
  (:func:`background`, :func:`object_texture`). Colours are drawn the same way
  for every kind, so a shape's class is told by its outline only.
* Composition: :func:`paste_shapes` draws shapes one over another (later over
  earlier) and keeps each one's *visible* mask; a shape is only placed if no
  shape (itself included) ends up with less than ``min_visible`` of its full
  area visible, so every drawn shape can be annotated.

Images are float32 (H, W, 3) in [0, 1]; masks are bool (H, W).
"""
import colorsys
import functools
import math
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from dlu_mm.demo_photos import TEXTURE_PHOTOS, load_photo

SHAPES = ('disc', 'box', 'triangle', 'star', 'ring', 'cross')

_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision (1/16 px)


# --------------------------------------------------------------- textures
@functools.lru_cache(maxsize=None)
def photos() -> Tuple[np.ndarray, ...]:
    """The texture photos (:data:`dlu_mm.demo_photos.TEXTURE_PHOTOS`) as
    float32 (H, W, 3) arrays in [0, 1]; loaded once per process."""
    return tuple(np.ascontiguousarray(load_photo(name), dtype=np.float32) /
                 255 for name in TEXTURE_PHOTOS)


def random_colour(rng: np.random.Generator,
                  hue: Tuple[float, float] = (0.0, 1.0),
                  sat: Tuple[float, float] = (0.15, 1.0),
                  val: Tuple[float, float] = (0.2, 1.0)) -> np.ndarray:
    """An RGB colour (3,) in [0, 1] drawn uniformly in the given HSV box
    (hue in turns, wrapping around 1)."""
    h = rng.uniform(*hue) % 1.0
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(*sat),
                                        rng.uniform(*val)), np.float32)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def smooth_noise(rng: np.random.Generator, h: int, w: int,
                 cell: float) -> np.ndarray:
    """(h, w) float32 value noise in [0, 1] with features ~``cell`` px."""
    gh = max(2, int(math.ceil(h / cell)) + 1)
    gw = max(2, int(math.ceil(w / cell)) + 1)
    grid = rng.random((gh, gw), dtype=np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC),
                   0, 1)


def _coords(h: int, w: int, angle: float) -> np.ndarray:
    """Pixel coordinate along direction ``angle`` (radians), (h, w)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x * math.cos(angle) + y * math.sin(angle)


def stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sine or square-wave stripes, period 3..24 px, any angle."""
    period = rng.uniform(3, 24)
    t = _coords(h, w, rng.uniform(0, math.pi))
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * t / period + rng.uniform(0, 6.3))
    return (wave > 0.5).astype(np.float32) if rng.random() < 0.5 else wave


def checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A rotated checkerboard with cells of 3..14 px."""
    cell, angle = rng.uniform(3, 14), rng.uniform(0, math.pi / 2)
    u = np.floor(_coords(h, w, angle) / cell)
    v = np.floor(_coords(h, w, angle + math.pi / 2) / cell)
    return ((u + v) % 2).astype(np.float32)


def gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A linear ramp from 0 to 1 in a random direction."""
    t = _coords(h, w, rng.uniform(0, 2 * math.pi))
    return ((t - t.min()) / max(float(np.ptp(t)), 1e-6)).astype(np.float32)


def photo_crop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random crop (10%..100% of the photo's side, any aspect up to 1.5)
    of a random photo, resized to (h, w, 3) and randomly flipped."""
    pool = photos()
    img = pool[rng.integers(len(pool))]
    ph, pw = img.shape[:2]
    side = rng.uniform(0.1, 1.0) * min(ph, pw)
    aspect = math.exp(rng.uniform(-0.4, 0.4))
    ch = int(np.clip(side * aspect, 8, ph))
    cw = int(np.clip(side / aspect, 8, pw))
    y0, x0 = rng.integers(ph - ch + 1), rng.integers(pw - cw + 1)
    crop = _resize(img[y0:y0 + ch, x0:x0 + cw], h, w)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.3:
        crop = crop[::-1]
    return np.ascontiguousarray(crop)


def pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (h, w) float32 pattern in [0, 1] of a random family."""
    kind = rng.integers(6)
    if kind == 0:
        return smooth_noise(rng, h, w, rng.uniform(3, 40))
    if kind == 1:
        return stripes(rng, h, w)
    if kind == 2:
        return checker(rng, h, w)
    if kind == 3:
        return gradient(rng, h, w)
    if kind == 4:
        return rng.random((h, w), dtype=np.float32)
    return photo_crop(rng, h, w).mean(axis=2)


def two_colour(rng: np.random.Generator, p: np.ndarray, c1: np.ndarray,
               c2: np.ndarray) -> np.ndarray:
    """Blend two colours with a pattern: (h, w) -> (h, w, 3)."""
    return c1 + (c2 - c1) * p[..., None]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured (h, w, 3) background: a colour-jittered photo crop (70%)
    or a two-colour pattern, overlaid with another pattern at 0..50%."""
    if rng.random() < 0.7:
        base = photo_crop(rng, h, w) * rng.uniform(0.6, 1.3, 3).astype(
            np.float32)
    else:
        base = two_colour(rng, pattern(rng, h, w), random_colour(rng),
                          random_colour(rng))
    overlay = two_colour(rng, pattern(rng, h, w), random_colour(rng),
                         random_colour(rng))
    alpha = np.float32(rng.uniform(0, 0.5))
    return np.clip(base * (1 - alpha) + overlay * alpha, 0, 1)


def object_texture(rng: np.random.Generator, h: int, w: int,
                   avoid: np.ndarray = None,
                   min_distance: float = 0.25) -> np.ndarray:
    """A textured, coloured (h, w, 3) fill for one shape: a pattern (or a
    tinted photo crop) between two random colours, with a soft shading ramp.

    ``avoid`` (3,): the mean colour of what lies under the shape; the colours
    are redrawn (up to 8 times) until the fill's mean is at least
    ``min_distance`` (RGB Euclidean) away from it, so shapes stand out."""
    p = pattern(rng, h, w)
    shade = 0.75 + 0.25 * gradient(rng, h, w)
    for _ in range(8):
        c1 = random_colour(rng)
        c2 = c1 * np.float32(rng.uniform(0.3, 1.0)) if rng.random() < 0.5 \
            else random_colour(rng)
        mean = c1 + (c2 - c1) * float(p.mean())
        if avoid is None or np.linalg.norm(mean - avoid) >= min_distance:
            break
    return np.clip(two_colour(rng, p, c1, c2) * shade[..., None], 0, 1)


def finish(img: np.ndarray, rng: np.random.Generator,
           noise: float = 0.02) -> np.ndarray:
    """Sensor noise and quantisation: float (h, w, 3) -> uint8 RGB."""
    img = img + np.float32(noise) * rng.standard_normal(img.shape, np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------- shapes
def _regular(n: int, radius: float, phase: float = math.pi / 2) -> np.ndarray:
    t = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def unit_polygons(kind: str, rng: np.random.Generator
                  ) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(outer polygons, hole polygons) of one ``kind`` in unit coordinates
    (within the circle of radius ~1), each an (n, 2) array of (x, y); the
    kind's free proportions (star depth, ring width, cross arm width,
    triangle apex) are drawn from ``rng``."""
    if kind == 'disc':
        return [_regular(64, 1.0)], []
    if kind == 'box':
        s = 0.8
        return [np.array([[-s, -s], [s, -s], [s, s], [-s, s]])], []
    if kind == 'triangle':
        tri = _regular(3, 1.0)
        tri[0, 0] += rng.uniform(-0.4, 0.4)  # apex sideways: not always
        return [tri], []                       # equilateral
    if kind == 'star':
        n = 5
        outer = _regular(n, 1.0)
        inner = _regular(n, rng.uniform(0.38, 0.55), math.pi / 2 + math.pi / n)
        pts = np.empty((2 * n, 2))
        pts[0::2], pts[1::2] = outer, inner
        return [pts], []
    if kind == 'ring':
        return [_regular(64, 1.0)], [_regular(64, rng.uniform(0.45, 0.65))]
    if kind == 'cross':
        a, t = 0.95, rng.uniform(0.2, 0.34)
        pts = [[-t, -a], [t, -a], [t, -t], [a, -t], [a, t], [t, t], [t, a],
               [-t, a], [-t, t], [-a, t], [-a, -t], [-t, -t]]
        return [np.array(pts, dtype=np.float64)], []
    raise ValueError(f'kind={kind!r} is not a shape; expected one of {SHAPES}')


@dataclass
class Shape:
    """One placed shape: pixel-space polygons (x, y) of its outline and
    holes, and the parameters that produced them."""
    kind: str
    centre: Tuple[float, float]
    size: float      # extent of the unit circle in px (before the aspect)
    aspect: float    # x stretch sqrt(aspect), y stretch 1/sqrt(aspect)
    angle: float     # radians
    outer: List[np.ndarray] = field(repr=False)
    holes: List[np.ndarray] = field(repr=False)


def sample_shape(rng: np.random.Generator, kind: str,
                 image_size: Tuple[int, int],
                 size_range: Tuple[float, float]) -> Shape:
    """A shape of ``kind`` with size log-uniform in ``size_range`` (px),
    aspect in [1/1.5, 1.5], any rotation, and its centre anywhere that keeps
    at least about three quarters of its extent inside the image."""
    h, w = image_size
    size = math.exp(rng.uniform(math.log(size_range[0]),
                                math.log(size_range[1])))
    aspect = math.exp(rng.uniform(-math.log(1.5), math.log(1.5)))
    angle = rng.uniform(0, 2 * math.pi)
    m = 0.25 * size
    cx = rng.uniform(min(m, w / 2), max(w - m, w / 2))
    cy = rng.uniform(min(m, h / 2), max(h - m, h / 2))
    outer, holes = unit_polygons(kind, rng)
    stretch = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)]) * size / 2
    rot = np.array([[math.cos(angle), -math.sin(angle)],
                    [math.sin(angle), math.cos(angle)]])

    def place(p):
        return (p * stretch) @ rot.T + np.array([cx, cy])

    return Shape(kind, (cx, cy), size, aspect, angle,
                 [place(p) for p in outer], [place(p) for p in holes])


def rasterise(shape: Shape, image_size: Tuple[int, int]
              ) -> Tuple[np.ndarray, int]:
    """Anti-aliased coverage of ``shape``: (alpha (H, W) float32 in [0, 1]
    clipped to the image, full_area) where full_area counts the pixels of
    ``alpha >= 0.5`` the shape would cover on an unbounded canvas (so a
    shape cut by the image border counts as partly hidden).

    Pixel (i, j) covers [j, j+1) x [i, i+1); polygons are in those units."""
    h, w = image_size
    pts = np.concatenate(shape.outer)
    pad = 2
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    # cv2 puts pixel centres on integers: shift by -0.5 from our convention.
    offset = np.array([x0 + 0.5, y0 + 0.5])

    def fixed(polys):
        return [np.round((p - offset) * scale).astype(np.int32)
                for p in polys]

    cv2.fillPoly(canvas, fixed(shape.outer), 255, cv2.LINE_AA,
                 _SUBPIXEL_BITS)
    if shape.holes:
        cv2.fillPoly(canvas, fixed(shape.holes), 0, cv2.LINE_AA,
                     _SUBPIXEL_BITS)
    full_area = int((canvas >= 128).sum())
    alpha = np.zeros((h, w), np.float32)
    iy0, ix0 = max(y0, 0), max(x0, 0)
    iy1, ix1 = min(y1, h), min(x1, w)
    if iy1 > iy0 and ix1 > ix0:
        alpha[iy0:iy1, ix0:ix1] = canvas[iy0 - y0:iy1 - y0,
                                         ix0 - x0:ix1 - x0] / np.float32(255)
    return alpha, full_area


@dataclass
class Placed:
    """A shape drawn into a scene: its kind, its own (unoccluded, in-image)
    mask, its full area on an unbounded canvas, and the part of it still
    visible after every later shape was drawn (``visible``, updated in
    place by :func:`paste_shapes`)."""
    kind: str
    shape: Shape = field(repr=False)
    mask: np.ndarray = field(repr=False)
    full_area: int
    visible: np.ndarray = field(repr=False)

    @property
    def visible_fraction(self) -> float:
        return float(self.visible.sum()) / max(self.full_area, 1)


def bbox_slices(mask: np.ndarray) -> Tuple[slice, slice]:
    """(rows, cols) slices of the bounding box of a non-empty bool mask."""
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)


def paste_shapes(rng: np.random.Generator, image: np.ndarray, count: int,
                 kinds: Sequence[str], size_range: Tuple[float, float],
                 min_visible: float = 0.4, min_area: int = 40,
                 tries: int = 20) -> List[Placed]:
    """Draw up to ``count`` textured shapes into ``image`` (H, W, 3, float,
    modified in place), each over the ones before it.

    Each shape's kind is uniform over ``kinds``. A candidate is redrawn (up
    to ``tries`` times, else skipped) if its in-image mask has fewer than
    ``min_area`` pixels or less than ``min_visible`` of its full area, or if
    drawing it would leave an earlier shape with less than ``min_visible``
    of its full area visible. Returns the placed shapes in drawing order;
    ``visible`` masks are disjoint and each is a subset of its ``mask``.
    """
    h, w = image.shape[:2]
    placed: List[Placed] = []
    for _ in range(count):
        kind = kinds[rng.integers(len(kinds))]
        for _ in range(tries):
            shape = sample_shape(rng, kind, (h, w), size_range)
            alpha, full_area = rasterise(shape, (h, w))
            mask = alpha >= 0.5
            area = int(mask.sum())
            if area < min_area or area < min_visible * full_area:
                continue
            if all((p.visible & ~mask).sum() >= min_visible * p.full_area
                   for p in placed):
                break
        else:
            continue
        for p in placed:
            p.visible &= ~mask
        ys, xs = bbox_slices(alpha > 0)
        under = image[ys, xs][mask[ys, xs]].mean(0)
        tex = object_texture(rng, ys.stop - ys.start, xs.stop - xs.start,
                             avoid=under)
        a = alpha[ys, xs, None]
        image[ys, xs] = image[ys, xs] * (1 - a) + tex * a
        placed.append(Placed(kind, shape, mask, full_area, mask.copy()))
    return placed


def check_args(num_train, num_val, image_size, seed) -> None:
    """The generators' arguments: split sizes >= 1, (H, W) ints >= 64, a
    seed >= 0; ``ValueError`` naming the argument otherwise."""
    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'{name} must be an int >= 1, got {value!r}')
    if (len(image_size) != 2 or
            not all(isinstance(v, int) and v >= 64 for v in image_size)):
        raise ValueError(f'image_size must be (height, width) ints >= 64, '
                         f'got {image_size!r}')
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f'seed must be an int >= 0, got {seed!r}')


def run_cli(make, doc: str, out_dir: str, num_train: int, num_val: int,
            argv=None):
    """The generators' common command line: ``--out-dir``, ``--num-train``,
    ``--num-val``, ``--size H W`` (default 256 256) and ``--seed`` (default
    0), then ``make(out_dir, num_train, num_val, (H, W), seed)``."""
    import argparse
    parser = argparse.ArgumentParser(description=doc.split('\n')[0])
    parser.add_argument('--out-dir', default=out_dir)
    parser.add_argument('--num-train', type=int, default=num_train)
    parser.add_argument('--num-val', type=int, default=num_val)
    parser.add_argument('--size', type=int, nargs=2, default=[256, 256],
                        metavar=('H', 'W'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    return make(args.out_dir, args.num_train, args.num_val, tuple(args.size),
                args.seed)
