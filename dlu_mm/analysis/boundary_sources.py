"""Label maps whose label changes are an image's boundaries, for the
on/off-boundary statistics (:func:`~dlu_mm.analysis.upsampler_statistics.
boundary_statistics`): from a label map image, a folder of them, or the
instance masks of a COCO-style annotation file."""
import os.path as osp

import numpy as np
import torch
from torch import Tensor


def read_label_map(path: str) -> Tensor:
    """A label map image file (one label per grey value or palette index;
    an RGB file's colours are labels too) -> (H, W) long."""
    from PIL import Image
    if not osp.isfile(path):
        raise FileNotFoundError(f'label map {path} does not exist')
    array = np.asarray(Image.open(path)).astype(np.int64)
    if array.ndim == 3:
        array = (array[..., 0] << 16) + (array[..., 1] << 8) + array[..., 2]
    return torch.from_numpy(array)


def coco_label_map(ann_file: str, image_path: str) -> Tensor:
    """(H, W) long: 0 for background, i + 1 where the i-th annotation of
    the image whose ``file_name`` is ``image_path``'s base name covers the
    pixel (later annotations over earlier ones; COCO polygons or RLE)."""
    from pycocotools.coco import COCO
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints
        coco = COCO(ann_file)
    name = osp.basename(image_path)
    ids = [i for i, info in coco.imgs.items()
           if osp.basename(info['file_name']) == name]
    if not ids:
        raise ValueError(f'the label map source {ann_file} has no image '
                         f'named {name}')
    info = coco.imgs[ids[0]]
    labels = np.zeros((info['height'], info['width']), np.int64)
    for i, ann in enumerate(coco.loadAnns(coco.getAnnIds(imgIds=ids[0]))):
        labels[coco.annToMask(ann) > 0] = i + 1
    return torch.from_numpy(labels)


def boundary_labels(source: str, image_path: str) -> Tensor:
    """The (H, W) label map of ``image_path`` from ``source``: a COCO-style
    ``.json`` annotation file (:func:`coco_label_map`), a folder holding
    ``<image name without extension>.png``, or a label map file."""
    if source.endswith('.json'):
        if not osp.isfile(source):
            raise FileNotFoundError(f'annotation file {source} does not '
                                    f'exist')
        return coco_label_map(source, image_path)
    if osp.isdir(source):
        stem = osp.splitext(osp.basename(image_path))[0]
        return read_label_map(osp.join(source, stem + '.png'))
    return read_label_map(source)
