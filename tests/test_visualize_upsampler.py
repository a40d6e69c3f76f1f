"""tools/analysis/visualize_upsampler.py end to end, as a user runs it, on
the demo Mask R-CNN (4 DLU FPN upsamplers + a DLU mask head) with weights
whose offsets are known: zero offset convs with a constant bias give the
same offsets on every input."""
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from dlu_mm.analysis.model_inspection import build_model
from dlu_mm.analysis.upsampler_figure import FIGURE_SIZE_PX
from tool_runner import run_tool

MASK = 'configs/demo/mask-rcnn_r18_fpn-dlu_demo-coco.py'
TOOL = 'tools/analysis/visualize_upsampler.py'
# (x, y) offset in input pixels per upsampler: |offset| 0.5 and 2.0
OFFSETS = {'neck.upsample_modules.1': (1.2, 1.6)}
DEFAULT_OFFSET = (0.3, 0.4)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('visualize')
    torch.manual_seed(0)
    model = build_model(Config.fromfile(MASK))
    model.init_weights()
    state = model.state_dict()
    for key in [k for k in state if k.endswith('conv_offset.bias')]:
        name = key[:-len('.conv_offset.bias')]
        x, y = OFFSETS.get(name, DEFAULT_OFFSET)
        state[key[:-4] + 'weight'].zero_()
        bias = state[key].view(2, 4)  # G=1, s=2: x of 4 subpixels, then y
        bias[0], bias[1] = x, y
    torch.save({'state_dict': state, 'meta': {}}, root / 'ckpt.pth')
    image = np.full((100, 128, 3), 40, np.uint8)
    image[20:70, 30:90] = (220, 180, 30)  # one box
    Image.fromarray(image).save(root / 'a.png')
    Image.fromarray(image[:, ::-1]).save(root / 'b.png')
    box = [[30, 20, 90, 20, 90, 70, 30, 70]]
    (root / 'ann.json').write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'{n}.png', height=100, width=128)
                for i, n in enumerate('ab')],
        categories=[dict(id=1, name='box')],
        annotations=[dict(id=i, image_id=i, category_id=1, iscrowd=0,
                          area=3000, bbox=[30, 20, 60, 50], segmentation=box)
                     for i in range(2)])))
    return root


def test_writes_one_png_per_upsampler_and_their_statistics(inputs):
    out = inputs / 'out'
    proc = run_tool([TOOL, MASK, inputs / 'ckpt.pth', inputs / 'a.png',
                     inputs / 'b.png', '--out-dir', out, '--boundaries',
                     inputs / 'ann.json'])
    names = [f'neck.upsample_modules.{i}' for i in range(4)]
    names.append('roi_head.mask_head.upsample')
    for i, name in enumerate(names, 1):
        assert f'[{i}/5] {name}: DLU s=2' in proc.stdout
    for image in 'ab':
        stats = json.loads(
            (out / image / 'upsampler_statistics.json').read_text())
        assert [u['name'] for u in stats['upsamplers']] == names
        # 100x128 resized to 200x256, padded to a multiple of 64
        assert stats['model_input'] == [256, 256]
        assert stats['boundaries'].startswith('label map from')
        for u in stats['upsamplers']:
            x, y = OFFSETS.get(u['name'], DEFAULT_OFFSET)
            assert u['mean_abs_offset_px'] == pytest.approx(
                np.hypot(x, y), rel=1e-5)
            assert u['share_offsets_beyond_1px'] == (1.0 if x > 1 else 0.0)
            assert 0 < u['entropy_ratio'] <= 1
            edges = u['boundaries']['abs_offset_px']
            assert 0 < edges['share_on'] < 1
            assert edges['on_off_ratio'] == pytest.approx(1, rel=1e-5)
            assert Image.open(u['png']).size == FIGURE_SIZE_PX
        mask_head = stats['upsamplers'][-1]
        assert mask_head['input_shape'][1:] == [128, 14, 14]
        assert mask_head['drawn'].startswith('RoI 0')
        assert sorted(p.name for p in (out / image).glob('*.png')) == [
            f'{i:02d}_{n}.png' for i, n in enumerate(names, 1)]
    summary = json.loads((out / 'summary.json').read_text())
    assert [u['images'] for u in summary['upsamplers']] == [2] * 5


def test_a_model_without_learned_upsamplers_is_refused(inputs):
    proc = run_tool([
        TOOL, MASK, inputs / 'ckpt.pth', inputs / 'a.png', '--out-dir',
        inputs / 'none', '--cfg-options',
        'model.neck.upsample_cfg.type=nearest',
        'model.roi_head.mask_head.upsample_cfg.type=nearest'], check=False)
    assert proc.returncode == 1
    assert ('error: MaskRCNN has no learned upsampler' in proc.stdout
            and 'neck.upsample_modules.0 (Upsample, mode=nearest)'
            in proc.stdout and 'Traceback' not in proc.stdout)
    assert not (inputs / 'none').exists()
