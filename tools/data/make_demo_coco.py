"""Generate the demo detection / instance segmentation set in COCO format.

    python tools/data/make_demo_coco.py --out-dir data/demo_coco \
        [--num-train 800] [--num-val 100] [--size 256 256] [--seed 0]

Layout (what mmdet's ``CocoDataset`` and ``configs/demo/*coco.py`` read)::

    out_dir/train2017/000000.jpg ...
    out_dir/val2017/000000.jpg ...
    out_dir/annotations/instances_train2017.json
    out_dir/annotations/instances_val2017.json

Each image: a textured background (photo crops of ``skimage.data`` mixed with
noise / stripes / gradients) and 2..7 textured shapes of the six
:data:`CLASSES`, 12..120 px at 256x256 (scaled with the image), any rotation
and aspect, drawn over one another. An annotation describes the *visible*
part of its shape: ``bbox`` [x, y, w, h], ``area`` (pixels) and polygon
``segmentation`` all come from the visible mask; a shape is only placed if
every shape keeps at least 40% of its area visible, so nothing drawn is left
unannotated. Polygons trace pixel edges; masks with holes (a ring's hole, a
shape lying inside another) are cut into hole-free pieces, because COCO
decodes a polygon list as the union of its polygons.

Image ``i`` of a split depends only on (seed, split, i): same seed, same bytes.
"""
import json
import os
import sys
import time
from typing import Dict, List, Tuple

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.measure import find_contours

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_shapes  # noqa: E402

CLASSES = ('disc', 'box', 'triangle', 'star', 'ring', 'cross')
SPLITS = ('train2017', 'val2017')
OBJECTS_PER_IMAGE = (2, 7)
SIZE_RANGE_AT_256 = (12.0, 120.0)
MIN_VISIBLE = 0.4
JPEG_QUALITY = 92
assert CLASSES == demo_shapes.SHAPES


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image: independent of every other image."""
    return np.random.default_rng(
        np.random.SeedSequence([seed, SPLITS.index(split), index]))


def render_image(seed: int, split: str, index: int,
                 image_size: Tuple[int, int]):
    """Image ``index`` of ``split``: (uint8 (H, W, 3) RGB, placed shapes
    (:class:`demo_shapes.Placed`, with full and visible masks))."""
    rng = image_rng(seed, split, index)
    h, w = image_size
    scale = min(h, w) / 256
    image = demo_shapes.background(rng, h, w)
    count = int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))
    placed = demo_shapes.paste_shapes(
        rng, image, count, CLASSES,
        (SIZE_RANGE_AT_256[0] * scale, SIZE_RANGE_AT_256[1] * scale),
        min_visible=MIN_VISIBLE, min_area=max(16, int(40 * scale * scale)))
    return demo_shapes.finish(image, rng), placed


# ------------------------------------------------------ mask -> polygons
def split_holes(mask: np.ndarray) -> List[np.ndarray]:
    """Cut a bool mask into pieces without holes whose union is the mask.

    A hole is a background region that cannot reach the outside through
    4-connected background. Cutting the mask at a column x0 that crosses a
    hole (left piece: columns < x0, right piece: columns >= x0) opens that
    hole in both pieces; repeat until no piece has a hole."""
    todo, done = [mask], []
    while todo:
        piece = todo.pop()
        ys, xs = demo_shapes.bbox_slices(piece)
        crop = piece[ys, xs]
        holes = np.zeros_like(piece)
        holes[ys, xs] = ndimage.binary_fill_holes(crop) & ~crop
        if not holes.any():
            done.append(piece)
            continue
        labels, _ = ndimage.label(holes)
        cols = np.nonzero(labels == 1)[1]
        x0 = int(np.median(cols))
        left = piece.copy()
        left[:, x0:] = False
        right = piece.copy()
        right[:, :x0] = False
        todo += [p for p in (left, right) if p.any()]
    return done


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.3
                     ) -> List[List[float]]:
    """COCO polygons [[x1, y1, x2, y2, ...], ...] whose union rasterises
    (pycocotools) to ``mask`` (H, W) bool, up to edge pixels.

    Contours are traced at level 0.5 between pixel centres (marching
    squares), i.e. along pixel edges in COCO's continuous coordinates where
    pixel (i, j) covers [j, j+1) x [i, i+1); then simplified by at most
    ``tolerance`` px (Douglas-Peucker)."""
    polys = []
    for piece in split_holes(mask):
        ys, xs = demo_shapes.bbox_slices(piece)
        crop = np.pad(piece[ys, xs], 1).astype(np.float32)
        for contour in find_contours(crop, 0.5, fully_connected='high'):
            xy = contour[:-1, ::-1].astype(np.float32)  # closed: drop last
            xy = cv2.approxPolyDP(xy[:, None], tolerance, True)[:, 0]
            if len(xy) < 3:
                continue
            xy = xy + np.float32([xs.start - 0.5, ys.start - 0.5])
            polys.append([round(float(v), 2) for v in xy.ravel()])
    return polys


def mask_bbox(mask: np.ndarray) -> List[float]:
    """[x, y, w, h] of the pixels of a bool mask (COCO convention)."""
    ys, xs = demo_shapes.bbox_slices(mask)
    return [float(xs.start), float(ys.start), float(xs.stop - xs.start),
            float(ys.stop - ys.start)]


# ------------------------------------------------------------- dataset
def make_split(out_dir: str, split: str, num: int,
               image_size: Tuple[int, int], seed: int) -> Dict:
    """Write ``num`` images of ``split`` and return its COCO dict."""
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    images, annotations = [], []
    h, w = image_size
    for index in range(num):
        image, placed = render_image(seed, split, index, image_size)
        file_name = f'{index:06d}.jpg'
        Image.fromarray(image).save(os.path.join(out_dir, split, file_name),
                                    quality=JPEG_QUALITY)
        images.append(dict(id=index + 1, file_name=file_name, height=h,
                           width=w))
        for p in placed:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=index + 1,
                category_id=CLASSES.index(p.kind) + 1,
                bbox=mask_bbox(p.visible), area=float(p.visible.sum()),
                segmentation=mask_to_polygons(p.visible), iscrowd=0))
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    return dict(info=dict(description='dlu_mm demo shapes', version='1.0',
                          year=2024),
                licenses=[], images=images, annotations=annotations,
                categories=categories)


def make_demo_coco(out_dir: str, num_train: int = 800, num_val: int = 100,
                   image_size: Tuple[int, int] = (256, 256),
                   seed: int = 0) -> Dict[str, Dict]:
    """Write the demo set under ``out_dir``; returns {split: coco dict}."""
    image_size = tuple(image_size)
    demo_shapes.check_args(num_train, num_val, image_size, seed)
    start = time.time()
    os.makedirs(os.path.join(out_dir, 'annotations'), exist_ok=True)
    out = {}
    for split, num in zip(SPLITS, (num_train, num_val)):
        coco = make_split(out_dir, split, num, image_size, seed)
        with open(os.path.join(out_dir, 'annotations',
                               f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f, separators=(',', ':'))
        out[split] = coco
    n_obj = [len(out[s]['annotations']) for s in SPLITS]
    print(f'make_demo_coco: {num_train} train / {num_val} val images, '
          f'{n_obj[0]} / {n_obj[1]} objects, {len(CLASSES)} classes, '
          f'{image_size[0]}x{image_size[1]}, seed {seed} -> {out_dir} '
          f'({time.time() - start:.1f} s)')
    return out


def main(argv=None):
    demo_shapes.run_cli(make_demo_coco, __doc__, 'data/demo_coco', 800, 100, argv)


if __name__ == '__main__':
    main()
