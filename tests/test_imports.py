"""What each import loads, in fresh interpreters: the core (``dlu_mm``,
``dlu_mm.ops``, ``dlu_mm.layers``) runs DLU and CARAFE forward/backward with
torch alone, whether the OpenMMLab frameworks are blocked, installed or
broken; an mmdet config's ``custom_imports=['dlu_mm.mmdet']`` loads no
mmseg, an mmseg config's adapter needs no mmdet; ``custom_imports=
['dlu_mm']`` still registers everything."""
import json
import subprocess
import sys
import textwrap

import pytest

from tool_runner import ROOT, tool_env

FRAMEWORKS = ('mmengine', 'mmcv', 'mmdet', 'mmseg')

# Prints the framework modules loaded (not None) in this interpreter.
LOADED = textwrap.dedent(f"""
    import sys
    def loaded():
        return sorted(k for k, v in sys.modules.items() if v is not None
                      and k.split('.')[0] in {FRAMEWORKS!r})
""")

CORE = textwrap.dedent("""
    import sys, json
    if sys.argv[1] == 'blocked':
        for name in {frameworks!r}:
            sys.modules[name] = None  # import raises ModuleNotFoundError
    {loaded}
    import torch
    import dlu_mm
    from dlu_mm.layers import DLU, CARAFEPortable
    from dlu_mm.ops import dlu_reassemble, reassemble, sample_kernel_space

    def run_layers():
        for cls in (DLU, CARAFEPortable):
            layer = cls(8, 2, up_kernel=3, compressed_channels=4)
            x = torch.randn(2, 8, 5, 6, requires_grad=True)
            y = layer(x)
            y.square().sum().backward()
            assert y.shape == (2, 8, 10, 12), y.shape
            assert x.grad.abs().sum() > 0
            assert all(p.grad is not None for p in layer.parameters())

    run_layers()
    out = dict(core=loaded())
    if sys.argv[1] == 'broken':
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import mmdet.models  # imports; dlu_mm.mmdet cannot
        out['warnings'] = [str(w.message) for w in caught]
        try:
            import mmseg
        except RuntimeError as err:
            out['mmseg_error'] = str(err)
        run_layers()
    print(json.dumps(out))
""").format(frameworks=FRAMEWORKS, loaded=LOADED)


def _python(code, *args, env=None, timeout=300):
    proc = subprocess.run([sys.executable, '-c', code, *args], cwd=ROOT,
                          env=tool_env(env), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('mode', ['blocked', 'installed'])
def test_core_runs_with_torch_alone(mode):
    """Blocked: the frameworks cannot be imported at all. Installed: they
    can, and importing the core still loads none of them."""
    assert _python(CORE, mode)['core'] == []


def test_broken_frameworks_do_not_break_layer_users(tmp_path):
    """An mmdet whose models lack what the adapter needs and an mmseg that
    raises on import: the layers run, ``import mmdet.models`` still works
    (with a warning naming dlu_mm.mmdet), mmseg's own error is its own."""
    (tmp_path / 'mmdet' / 'models').mkdir(parents=True)
    (tmp_path / 'mmdet' / '__init__.py').write_text('')
    (tmp_path / 'mmdet' / 'models' / '__init__.py').write_text('')
    (tmp_path / 'mmseg').mkdir()
    (tmp_path / 'mmseg' / '__init__.py').write_text(
        "raise RuntimeError('broken mmseg')\n")
    out = _python(CORE, 'broken',
                  env=dict(PYTHONPATH=f'{tmp_path}:{ROOT}'))
    assert out['core'] == []
    assert out['mmseg_error'] == 'broken mmseg'
    assert len(out['warnings']) == 1
    assert 'dlu_mm.mmdet could not be imported' in out['warnings'][0]
    assert 'mmdet.models.roi_heads' in out['warnings'][0]


BUILD = textwrap.dedent("""
    import sys, json
    for name in sys.argv[3:]:
        sys.modules[name] = None
    {loaded}
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(sys.argv[2])
    init_default_scope(sys.argv[1])
    model = MODELS.build(cfg.model)
    print(json.dumps(dict(
        loaded=loaded(),
        modules=sorted({{type(m).__name__ for m in model.modules()}}))))
""").format(loaded=LOADED)

DET_CFG = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'
SEG_CFG = 'configs/demo/upernet-dlu_r18_demo-ade-256x256.py'


def test_mmdet_config_loads_no_mmseg():
    out = _python(BUILD, 'mmdet', DET_CFG)
    assert {'FPN_Upsample', 'DLU'} <= set(out['modules'])
    assert not any(m.startswith('mmseg') for m in out['loaded'])
    assert 'mmdet.models' in out['loaded']


def test_mmseg_config_needs_no_mmdet():
    """mmseg's own models import mmdet when it is installed; blocked, the
    adapter still imports and builds."""
    out = _python(BUILD, 'mmseg', SEG_CFG, 'mmdet')
    assert {'UPerHeadUpsample', 'DLU'} <= set(out['modules'])
    assert not any(m.startswith('mmdet') for m in out['loaded'])


def test_custom_imports_dlu_mm_registers_everything(tmp_path):
    """The old spelling: ``import dlu_mm`` before any framework is loaded;
    both frameworks' adapters are registered when their registries build."""
    code = LOADED + textwrap.dedent("""
        import sys, json
        import dlu_mm
        before = loaded()
        from mmengine.registry import MODELS, init_default_scope
        from mmdet.registry import MODELS as DET
        from mmseg.registry import MODELS as SEG
        neck = DET.build(dict(type='FPN_Upsample', in_channels=[8, 16],
                              out_channels=8, num_outs=2,
                              upsample_cfg=dict(type='dlu')))
        head = SEG.build(dict(type='UPerHeadUpsample', in_channels=[8, 16],
                              in_index=[0, 1], channels=8, num_classes=2,
                              pool_scales=(1, 2),
                              upsample_cfg=dict(type='carafe_portable')))
        print(json.dumps(dict(before=before, types=sorted(
            {type(m).__name__ for m in (*neck.modules(), *head.modules())}
        ))))
    """)
    out = _python(code)
    assert out['before'] == []
    assert {'FPN_Upsample', 'DLU', 'UPerHeadUpsample',
            'CARAFEPortable'} <= set(out['types'])
