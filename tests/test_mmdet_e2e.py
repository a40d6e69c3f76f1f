"""Detection end to end through the real tools on a tiny generated set:
train (checkpoint written), test (CocoMetric numbers), resume, 2 processes."""
import os
from pathlib import Path

import pytest
import torch

from tool_runner import load_tool_module, read_metrics, run_tool

FASTER = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'
MASK = 'configs/demo/mask-rcnn_r18_fpn-dlu_demo-coco.py'
SHORT = ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
         'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
         'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2']


@pytest.fixture(scope='module')
def coco_env(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_coco')
    gen = load_tool_module('tools/data/make_demo_coco.py')
    gen.make_demo_coco(str(root), num_train=6, num_val=3,
                       image_size=(128, 128), seed=0)
    return {'DLU_MM_DEMO_COCO_ROOT': str(root) + '/'}


def _train(config, work_dir, env, extra=(), options=SHORT):
    return run_tool(['tools/train.py', config, '--work-dir', work_dir, *extra,
                     '--cfg-options', *options], env=env)


@pytest.mark.parametrize('config,metrics', [(FASTER, ['bbox']),
                                            (MASK, ['bbox', 'segm'])])
def test_train_then_test(tmp_path, coco_env, config, metrics):
    work = tmp_path / 'work'
    _train(config, work, coco_env)
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()
    assert (work / 'last_checkpoint').read_text().strip() == str(ckpt)
    state = torch.load(ckpt, weights_only=True)['state_dict']
    assert any('upsample_modules' in k and 'conv_offset' in k for k in state)
    run_tool(['tools/test.py', config, ckpt, '--work-dir', work], env=coco_env)
    result = read_metrics(work)
    for metric in metrics:  # CocoMetric ran pycocotools' COCOeval
        for key in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'):
            value = result[f'coco/{metric}_{key}']
            assert -1 <= value <= 1  # -1: pycocotools' "no objects" marker


def test_resume_continues_from_saved_iteration(tmp_path, coco_env):
    work = tmp_path / 'work'
    _train(FASTER, work, coco_env)
    options = [o for o in SHORT if 'max_iters' not in o and 'val_interval'
               not in o] + ['train_cfg.max_iters=6', 'train_cfg.val_interval=6']
    out = _train(FASTER, work, coco_env, extra=['--resume'], options=options)
    assert 'resumed epoch: 0, iter: 4' in out.stdout
    assert 'Iter(train) [5/6]' in out.stdout
    assert 'Iter(train) [1/6]' not in out.stdout
    meta = torch.load(work / 'iter_6.pth', weights_only=True)['meta']
    assert meta['iter'] == 6


def test_two_processes_gloo(tmp_path, coco_env):
    work = tmp_path / 'work'
    env = dict(coco_env, PORT=str(29500 + os.getpid() % 1000))
    proc = run_tool([
        '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={env["PORT"]}', 'tools/train.py', FASTER,
        '--launcher', 'pytorch', '--work-dir', work, '--cfg-options',
        *[o for o in SHORT if 'val_interval' not in o],
        'train_cfg.val_interval=100'], env=env)
    assert 'Distributed launcher: pytorch' in proc.stdout or \
        'world_size: 2' in proc.stdout.replace('World size', 'world_size')
    assert (work / 'iter_4.pth').is_file()
