"""tools/demo_layer.py: runs end to end at a tiny size, reports parameter
counts equal to the paper's formulas and to a brute count of freshly built
layers, and its fit improves DLU's PSNR."""
import json
import math

import pytest
import torch
from PIL import Image

from dlu_mm.complexity import UpsamplerSpec, carafe_params, dlu_params
from dlu_mm.layers import DLU, CARAFEPortable
from tool_runner import load_tool_module

demo = load_tool_module('tools/demo_layer.py')


def test_demo_layer_end_to_end(tmp_path, capsys):
    png, js = tmp_path / 'demo.png', tmp_path / 'demo.json'
    threads = torch.get_num_threads()
    demo.main(['--steps', '15', '--size', '32', '--scale', '2', '--image',
               'camera', '--out', str(png), '--json', str(js),
               '--threads', '1'])
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out

    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        assert im.format == 'PNG' and im.width > 400 and im.height > 200

    result = json.loads(js.read_text())
    spec = UpsamplerSpec(channels=3, scale_factor=2)
    expected = dict(dlu=dlu_params(spec), carafe=carafe_params(spec))
    brute = dict(dlu=DLU(3, 2), carafe=CARAFEPortable(3, 2))
    for name, params in expected.items():
        assert result['params'][name]['params'] == params == sum(
            p.numel() for p in brute[name].parameters())
        assert f'{params:,d}' in out
    assert expected == dict(dlu=19297, carafe=57956)

    psnr = result['psnr']
    assert set(psnr) == {'nearest', 'bilinear', 'carafe', 'dlu'}
    assert all(math.isfinite(v) for v in psnr.values())
    for name in ('dlu', 'carafe'):
        assert psnr[name] > result['psnr_before_fit'][name] + 0.5
    assert f"dlu {psnr['dlu']:.2f} dB" in out


@pytest.mark.parametrize('args,match', [
    (['--size', '33'], 'size must be a multiple'),
    (['--scale', '1'], 'scale must be >= 2'),
])
def test_demo_layer_rejects_bad_arguments(args, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        demo.main(args + ['--out', str(tmp_path / 'x.png')])


def test_demo_layer_rejects_unknown_image():
    with pytest.raises(ValueError, match="'lena' is not available.*"
                       'astronaut'):
        demo.load_photo('lena', 32)
