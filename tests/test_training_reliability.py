"""Training that can be trusted: bf16 autocast on CPU, bit-identical
repeat runs, a SIGKILLed run that resumes to the same weights, and bad
configs that fail before training with the key named."""
import ast
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tool_runner import PROBE_ENV, ROOT, load_tool_module, run_tool, tool_env

CONFIG = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'
FAST = ['default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
        'val_dataloader.batch_size=2', 'randomness.deterministic=True']


@pytest.fixture(scope='module')
def coco_env(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_coco')
    load_tool_module('tools/data/make_demo_coco.py').make_demo_coco(
        str(root), num_train=8, num_val=2, image_size=(128, 128), seed=1)
    return {'DLU_MM_DEMO_COCO_ROOT': str(root) + '/'}


def _options(iters, ckpt_interval):
    return FAST + [f'train_cfg.max_iters={iters}',
                   f'train_cfg.val_interval={iters + 1}',
                   f'default_hooks.checkpoint.interval={ckpt_interval}',
                   'default_hooks.checkpoint.max_keep_ckpts=-1']


def _train_args(work, iters, ckpt_interval, *extra):
    return ['tools/train.py', CONFIG, '--work-dir', work, *extra,
            '--cfg-options', *_options(iters, ckpt_interval)]


def _losses(work):
    """Per-iteration total loss from mmengine's scalars.json."""
    scalars = next(Path(work).glob('*/vis_data/scalars.json'))
    return [json.loads(line)['loss'] for line in scalars.read_text().splitlines()
            if '"loss"' in line]


def _weights(path):
    """The state dict of a tool checkpoint, which loads weights-only."""
    return torch.load(path, weights_only=True)['state_dict']


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f'{key} differs'


def test_cpu_amp_wrapper_enables_bf16_autocast():
    from dlu_mm.engine import CPUAmpOptimWrapper
    model = torch.nn.Linear(2, 2)
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert model(torch.randn(1, 2)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled('cpu')
    with pytest.raises(ValueError, match="dtype must be 'bfloat16' or"):
        CPUAmpOptimWrapper(dtype='float8', optimizer=wrapper.optimizer)


def test_mmcv_fp32_ops_under_cpu_amp_match_float32():
    """nms / roi_align have no bf16 CPU kernels: under the wrapper they run
    in float32 (roi_align handing back the input's dtype, gradient too)."""
    from mmcv.ops import RoIAlign, nms
    from dlu_mm.engine import CPUAmpOptimWrapper
    torch.manual_seed(0)
    xy = torch.rand(30, 2) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(30, 2) * 20], 1)
    scores = torch.rand(30)
    feats = torch.randn(1, 4, 16, 16)
    rois = torch.tensor([[0, 1.0, 2.0, 9.0, 12.0], [0, 0.5, 0.5, 15.0, 7.0]])
    keep_fp32 = nms(boxes, scores, 0.5)[1]
    roi_align = RoIAlign((3, 3), 1.0, 2)  # as mmdet's RoI extractors
    ref = roi_align(feats, rois)
    model = torch.nn.Linear(2, 2)
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        keep = nms(boxes, scores.bfloat16(), 0.5)[1]
        low = feats.bfloat16().requires_grad_()
        out = roi_align(low, rois)
        out.float().sum().backward()
    assert torch.equal(keep, nms(boxes, scores.bfloat16().float(), 0.5)[1])
    assert keep_fp32.numel() > 0
    assert out.dtype == torch.bfloat16 and low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.02)
    with pytest.raises((RuntimeError, NotImplementedError)):  # mmcv alone
        roi_align(feats.bfloat16(), rois.bfloat16())


DTYPE_PROBE = """_base_ = {base!r}
custom_imports = dict(imports=['dlu_mm', 'tool_probes'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='DtypeProbeHook', out_file={out!r})]
"""


def test_amp_training_on_cpu(tmp_path, coco_env):
    """train.py --amp: in the first step DLU's convolutions and its fused
    reassembly (forward and backward) ran in bfloat16, mmcv's nms and
    roi_align kernels in float32; losses finite, weights stay float32."""
    work, record = tmp_path / 'amp', tmp_path / 'dtypes.json'
    config = tmp_path / 'probe.py'
    config.write_text(DTYPE_PROBE.format(base=str(ROOT / CONFIG),
                                         out=str(record)))
    args = _train_args(work, 3, 3, '--amp')
    args[1] = config
    out = run_tool(args, env=dict(coco_env, **PROBE_ENV)).stdout
    assert "type='CPUAmpOptimWrapper'" in out  # the logged config
    dtypes = json.loads(record.read_text())
    # 4 DLU upsamplers: the compressor conv, then the kernel-space and
    # offset encoders (one stacked conv) gave bfloat16 space and offsets
    assert len(dtypes['convs']) == 4
    assert all(pair == ['bfloat16', 'bfloat16'] for pair in dtypes['convs'])
    assert [call[1:] for call in dtypes['predictions']] == \
        [['bfloat16', 'bfloat16']] * 4
    # the fused op (native backend), or sampling + reassembly (torch)
    for suffix in ('reassemble', 'reassemble_backward'):
        calls = [call for op in ('dlu_mm::dlu_', 'dlu_mm::')
                 for call in dtypes.get(op + suffix, [])]
        assert len(calls) == 4, suffix
        assert all(d == 'bfloat16' for call in calls for d in call), suffix
    for kernel in ('nms', 'roi_align_forward'):
        assert dtypes[kernel], kernel
        assert all(d == 'float32' for call in dtypes[kernel] for d in call)
    losses = _losses(work)
    assert len(losses) == 3 and all(v == v and v > 0 for v in losses)
    assert all(v.dtype == torch.float32
               for v in _weights(work / 'iter_3.pth').values()
               if v.is_floating_point())


@pytest.fixture(scope='module')
def uninterrupted_run(tmp_path_factory, coco_env):
    """8 iterations, a checkpoint every 2: the reference for the tests below."""
    work = tmp_path_factory.mktemp('uninterrupted')
    run_tool(_train_args(work, 8, 2), env=coco_env)
    return work


@pytest.fixture(scope='module')
def killed_and_resumed_run(tmp_path_factory, coco_env, uninterrupted_run):
    """The same run, SIGKILLed once its 4th-iteration checkpoint is on disk
    (mid-epoch: the sampler is infinite), then restarted with --resume."""
    killed = tmp_path_factory.mktemp('killed')
    env = tool_env(coco_env)
    proc = subprocess.Popen([sys.executable, *map(str, _train_args(
        killed, 8, 2))], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    marker = killed / 'last_checkpoint'  # written once iter_4.pth is saved
    while not (marker.exists() and marker.read_text().strip().endswith(
            'iter_4.pth')):
        assert proc.poll() is None, 'training ended before it could be killed'
        assert time.time() < deadline, 'no checkpoint after 300 s'
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / 'iter_8.pth').exists(), 'killed too late'
    first_losses = _losses(killed)
    out = run_tool(_train_args(killed, 8, 2, '--resume'), env=coco_env)
    return killed, first_losses, out.stdout


def test_same_seed_gives_bit_identical_losses(uninterrupted_run,
                                              killed_and_resumed_run):
    """Two independent processes, same seed, deterministic=True: the losses
    of every iteration both logged (at least the first 4) are equal bit for
    bit."""
    reference = _losses(uninterrupted_run)
    _, first_losses, _ = killed_and_resumed_run
    assert len(reference) == 8 and len(first_losses) >= 4
    assert first_losses == reference[:len(first_losses)]


def test_sigkill_then_resume_matches_uninterrupted_run(
        uninterrupted_run, killed_and_resumed_run):
    killed, _, stdout = killed_and_resumed_run
    assert 'resumed epoch: 0, iter:' in stdout
    _assert_same_weights(_weights(uninterrupted_run / 'iter_8.pth'),
                         _weights(killed / 'iter_8.pth'))


LISTED = "registered upsample types: "


@pytest.mark.parametrize('options,env,message', [
    (['model.neck.upsample_cfg.type=dlux'], {},
     "model.neck.upsample_cfg['type']='dlux' is not a registered upsample "
     "layer; " + LISTED),
    (['model.neck.upsample_cfg.channels=64'], {},
     'model.neck.upsample_cfg.channels=64 does not match '
     'model.neck.out_channels=128'),
    (['model.neck.upsample_cfg.scale_factor=4'], {},
     'model.neck.upsample_cfg.scale_factor=4 does not match the FPN level '
     'ratio (2)'),
    ([], {'DLU_MM_DEMO_COCO_ROOT': '/nonexistent/coco/'},
     "train_dataloader.dataset.data_root='/nonexistent/coco/' does not exist"),
    (['val_evaluator.ann_file=/nonexistent/val.json'], {},
     "val_evaluator.ann_file='/nonexistent/val.json' does not exist"),
])
def test_bad_config_fails_before_training(tmp_path, coco_env, options, env,
                                          message):
    """The tool's pre-flight names the key, in one message: no traceback,
    exit status 1, nothing trained."""
    work = tmp_path / 'bad'
    proc = run_tool(['tools/train.py', CONFIG, '--work-dir', work,
                     '--cfg-options', *FAST, *options],
                    env=dict(coco_env, **env), check=False, timeout=120)
    assert proc.returncode == 1
    assert f'train.py: error: {message}' in proc.stdout
    assert 'Traceback' not in proc.stdout
    assert 'Iter(train)' not in proc.stdout
    assert not work.exists() or not list(work.glob('*.pth'))
    if LISTED in message:
        _check_listed_types(proc.stdout)


def _check_listed_types(out):
    """The types the message lists are the upsample layers a config can
    use: each one builds (in mmdet's scope, as the tool) into a layer that
    upsamples 2x -- mmcv's CUDA-only 'carafe' is built only -- and the
    layers README promises are among them."""
    from mmengine.registry import DefaultScope
    from dlu_mm.layers.builder import build_upsampler
    listed = ast.literal_eval(
        out[out.index(LISTED) + len(LISTED):].splitlines()[0])
    assert {'dlu', 'carafe_portable', 'carafe', 'nearest', 'bilinear',
            'deconv', 'pixel_shuffle'} <= set(listed)
    assert 'dlux' not in listed
    x = torch.randn(1, 8, 5, 6)
    with DefaultScope.overwrite_default_scope('mmdet'):
        for name in listed:
            kernel = {'upsample_kernel': 3} if name in (
                'deconv', 'pixel_shuffle') else {}  # their required key
            layer = build_upsampler(dict(type=name, **kernel), 8, 2)
            if name != 'carafe':
                assert layer(x).shape == (1, 8, 10, 12), name
