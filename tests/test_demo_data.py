"""The demo data generators (tools/data/make_demo_coco.py, make_demo_ade.py):
layout, annotation consistency with an independent decode (pycocotools),
occlusion, ring holes, determinism, and loading through mmseg."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy import ndimage

from tool_runner import load_tool_module, run_tool

coco_gen = load_tool_module('tools/data/make_demo_coco.py')
ade_gen = load_tool_module('tools/data/make_demo_ade.py')
shapes = load_tool_module('tools/data/demo_shapes.py')

SIZE = (256, 256)
COCO_SEED = 3


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_coco')
    coco_gen.make_demo_coco(str(root), num_train=6, num_val=3,
                            image_size=SIZE, seed=COCO_SEED)
    return root


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_ade')
    ade_gen.make_demo_ade(str(root), num_train=8, num_val=2,
                          image_size=SIZE, seed=0)
    return root


# ------------------------------------------------------------------ COCO
@pytest.mark.parametrize('split,num', [('train2017', 6), ('val2017', 3)])
def test_coco_layout_and_json(coco_root, split, num):
    coco = COCO(str(coco_root / 'annotations' / f'instances_{split}.json'))
    cats = coco.loadCats(coco.getCatIds())
    assert tuple(c['name'] for c in cats) == coco_gen.CLASSES == (
        'disc', 'box', 'triangle', 'star', 'ring', 'cross')
    assert len(coco.getImgIds()) == num
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(coco_root / split / img['file_name']) as im:
            assert im.format == 'JPEG' and im.mode == 'RGB'
            assert (im.height, im.width) == (img['height'], img['width']) \
                == SIZE
        n = len(coco.getAnnIds(imgIds=img['id']))
        assert 2 <= n <= 7
    assert all(a['iscrowd'] == 0 and a['category_id'] in coco.getCatIds()
               for a in coco.dataset['annotations'])


def test_coco_annotations_match_their_decoded_masks(coco_root):
    """bbox / area / polygons agree with each other (decoded independently
    by pycocotools) and with the generator's visible masks."""
    coco = COCO(str(coco_root / 'annotations' / 'instances_val2017.json'))
    for img in coco.loadImgs(coco.getImgIds()):
        _, placed = coco_gen.render_image(COCO_SEED, 'val2017',
                                          img['id'] - 1, SIZE)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        assert len(anns) == len(placed)
        for ann, obj in zip(anns, placed):
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= SIZE[1] and y + h <= SIZE[0]
            decoded = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(decoded)
            box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                   ys.max() + 1 - ys.min()]
            np.testing.assert_allclose(ann['bbox'], box, atol=1.5)
            assert abs(ann['area'] - decoded.sum()) <= max(
                3, 0.03 * ann['area'])
            iou = (decoded & obj.visible).sum() / (decoded | obj.visible).sum()
            assert iou > 0.97, (ann['id'], obj.kind, iou)
            assert coco_gen.CLASSES[ann['category_id'] - 1] == obj.kind


def test_coco_annotates_visible_parts_of_occluded_shapes():
    """Later shapes hide earlier ones; the annotation is what stays visible,
    and no shape is less than 40% visible."""
    occluded = 0
    for index in range(6):
        _, placed = coco_gen.render_image(COCO_SEED, 'train2017', index,
                                          SIZE)
        for i, obj in enumerate(placed):
            above = np.zeros(SIZE, bool)
            for later in placed[i + 1:]:
                above |= later.mask
            np.testing.assert_array_equal(obj.visible, obj.mask & ~above)
            assert obj.visible.sum() >= 0.4 * obj.full_area
            occluded += int(obj.visible.sum() < obj.mask.sum())
    assert occluded >= 3


def test_ring_polygons_keep_the_hole(coco_root):
    rng = np.random.default_rng(0)
    shape = shapes.sample_shape(rng, 'ring', SIZE, (60, 60))
    mask = shapes.rasterise(shape, SIZE)[0] >= 0.5
    assert ndimage.binary_fill_holes(mask).sum() > mask.sum() + 100
    rle = mask_utils.merge(mask_utils.frPyObjects(
        coco_gen.mask_to_polygons(mask), *SIZE))
    decoded = mask_utils.decode(rle).astype(bool)
    assert (decoded & mask).sum() / (decoded | mask).sum() > 0.99
    # and in the generated set: some ring annotation decodes with a hole
    ring_id = coco_gen.CLASSES.index('ring') + 1
    holes = []
    for split in coco_gen.SPLITS:
        coco = COCO(str(coco_root / 'annotations' / f'instances_{split}.json'))
        holes += [ndimage.binary_fill_holes(m).sum() - m.sum() for m in (
            coco.annToMask(a) for a in coco.loadAnns(
                coco.getAnnIds(catIds=[ring_id])))]
    assert max(holes) > 100


def test_coco_is_deterministic(coco_root, tmp_path):
    again, other = tmp_path / 'again', tmp_path / 'other'
    coco_gen.make_demo_coco(str(again), 6, 3, SIZE, seed=COCO_SEED)
    coco_gen.make_demo_coco(str(other), 6, 3, SIZE, seed=COCO_SEED + 1)
    assert tree_hash(again) == tree_hash(coco_root)
    assert tree_hash(other) != tree_hash(coco_root)


def test_coco_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_train.*got 0'):
        coco_gen.make_demo_coco(str(tmp_path), num_train=0)
    with pytest.raises(ValueError, match=r'image_size.*\(32, 256\)'):
        coco_gen.make_demo_coco(str(tmp_path), image_size=(32, 256))


def test_coco_cli(tmp_path):
    out = run_tool(['tools/data/make_demo_coco.py', '--out-dir', tmp_path,
                    '--num-train', 2, '--num-val', 1, '--size', 96, 128,
                    '--seed', 5]).stdout
    assert 'make_demo_coco: 2 train / 1 val images' in out
    with open(tmp_path / 'annotations' / 'instances_val2017.json') as f:
        img = json.load(f)['images'][0]
    assert (img['height'], img['width']) == (96, 128)
    with Image.open(tmp_path / 'val2017' / img['file_name']) as im:
        assert im.size == (128, 96)


# ------------------------------------------------------------------- ADE
def test_ade_layout_and_labels(ade_root):
    seen = np.zeros(len(ade_gen.CLASSES) + 1, bool)
    for split, num in (('training', 8), ('validation', 2)):
        imgs = sorted((ade_root / 'images' / split).glob('*.jpg'))
        anns = sorted((ade_root / 'annotations' / split).glob('*.png'))
        assert len(imgs) == num
        assert [p.stem for p in imgs] == [p.stem for p in anns]
        for img_path, ann_path in zip(imgs, anns):
            with Image.open(img_path) as im, Image.open(ann_path) as an:
                assert im.mode == 'RGB' and an.mode == 'L'
                assert an.size == im.size == SIZE[::-1]
                label = np.asarray(an)
            assert label.max() <= len(ade_gen.CLASSES)
            seen[np.unique(label)] = True
    assert ade_gen.CLASSES == ('sky', 'grass', 'road', 'water', 'wall',
                               'disc', 'box', 'triangle', 'star', 'ring',
                               'cross')
    assert seen.all(), f'label values never seen: {np.nonzero(~seen)[0]}'


def test_ade_is_deterministic(tmp_path):
    a, b, c = (tmp_path / n for n in 'abc')
    for root, seed in ((a, 0), (b, 0), (c, 1)):
        ade_gen.make_demo_ade(str(root), 2, 1, (96, 96), seed=seed)
    assert tree_hash(a) == tree_hash(b) != tree_hash(c)


def test_ade_loads_in_mmseg_with_zero_label_reduced(ade_root):
    """What a demo config uses: ADE20K's format and reduce_zero_label in a
    BaseSegDataset with our classes. (ADE20KDataset itself rejects classes
    that are not among its 150 names, and would remap labels by those.)"""
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    kwargs = dict(data_root=str(ade_root),
                  data_prefix=dict(img_path='images/validation',
                                   seg_map_path='annotations/validation'),
                  metainfo=dict(classes=ade_gen.CLASSES),
                  pipeline=[dict(type='LoadImageFromFile'),
                            dict(type='LoadAnnotations')])
    with DefaultScope.overwrite_default_scope('mmseg'):
        with pytest.raises(ValueError, match='not a subset'):
            DATASETS.build(dict(type='ADE20KDataset', **kwargs))
        dataset = DATASETS.build(dict(
            type='BaseSegDataset', img_suffix='.jpg', seg_map_suffix='.png',
            reduce_zero_label=True, **kwargs))
    assert len(dataset) == 2
    assert dataset.metainfo['classes'] == ade_gen.CLASSES
    for i in range(len(dataset)):
        sample = dataset[i]
        with Image.open(sample['seg_map_path']) as im:
            png = np.asarray(im)
        gt = sample['gt_seg_map']
        assert sample['img'].shape == (*SIZE, 3) and gt.shape == SIZE
        np.testing.assert_array_equal(gt == 255, png == 0)
        np.testing.assert_array_equal(gt[png > 0], png[png > 0] - 1)


def test_ade_cli(tmp_path):
    out = run_tool(['tools/data/make_demo_ade.py', '--out-dir', tmp_path,
                    '--num-train', 1, '--num-val', 1, '--size', 96, 128,
                    '--seed', 5]).stdout
    assert 'make_demo_ade: 1 train / 1 val images, 11 classes' in out
    with Image.open(tmp_path / 'annotations' / 'validation' /
                    '000000.png') as an:
        assert an.size == (128, 96) and an.mode == 'L'
