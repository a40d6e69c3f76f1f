"""The errors a user meets first, through tools/train.py and tools/test.py:
a config, a data path or a checkpoint that cannot work gives one
``<tool>: error: ...`` line naming the file or config key and exit status
1, without a traceback ($DLU_MM_DEBUG=1 shows it), before a model is
built. The first tests run the tools as processes; the rest call the
tools' own entry point (``run_tool_main(main)``) in this process, which
is the same code without the start-up cost."""
import logging
import sys

import pytest
import torch

from crafted_pickle import crafted_checkpoint
from tool_runner import load_tool_module, run_tool

PAPER = 'configs/dlu/faster-rcnn_r50_fpn-dlu_1x_coco.py'
DEMO = 'configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py'


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_coco')
    load_tool_module('tools/data/make_demo_coco.py').make_demo_coco(
        str(root), num_train=2, num_val=1, image_size=(64, 64), seed=0)
    return str(root) + '/'


def _assert_one_clear_error(proc, tool, message):
    assert proc.returncode == 1
    assert f'{tool}: error: {message}' in proc.stdout
    assert 'Traceback' not in proc.stdout


def test_paper_config_without_data(tmp_path):
    """The headline case: tools/test.py on a machine where COCO is not where
    the config says -- no pycocotools FileNotFoundError from the Runner."""
    missing = tmp_path / 'coco'
    proc = run_tool(['tools/test.py', PAPER, tmp_path / 'x.pth'],
                    env={'DLU_MM_COCO_ROOT': f'{missing}/'}, check=False,
                    timeout=120)
    _assert_one_clear_error(
        proc, 'test.py', f"test_dataloader.dataset.data_root='{missing}/' "
        'does not exist')


def test_crafted_checkpoint_refused_by_the_tool(tmp_path, coco_root):
    marker = tmp_path / 'code_ran'
    path = crafted_checkpoint(tmp_path / 'model.pth', marker)
    proc = run_tool(['tools/test.py', DEMO, path, '--work-dir',
                     tmp_path / 'work'],
                    env={'DLU_MM_DEMO_COCO_ROOT': coco_root}, check=False,
                    timeout=120)
    _assert_one_clear_error(proc, 'test.py',
                            f'checkpoint {path} is refused')
    assert '--trust-checkpoint' in proc.stdout
    assert not marker.exists()


# --------------------------------------------------- in-process, same code
def _live_log_streams():
    """Point mmengine's console handlers, made in an earlier test, at this
    test's captured stdout (theirs is closed)."""
    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stdout  # (setStream flushes the old)


def _run(tool, argv, monkeypatch, capsys):
    """``tools/<tool>`` with ``argv``: (exit status, stderr)."""
    module = load_tool_module(f'tools/{tool}')
    _live_log_streams()
    monkeypatch.setattr(sys, 'argv', [f'tools/{tool}', *map(str, argv)])
    with pytest.raises(SystemExit) as exit_info:
        module.run_tool_main(module.main)
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def demo_env(monkeypatch, coco_root):
    monkeypatch.setenv('DLU_MM_DEMO_COCO_ROOT', coco_root)
    monkeypatch.delenv('DLU_MM_DEBUG', raising=False)
    monkeypatch.delenv('DLU_MM_TRUST_CHECKPOINTS', raising=False)


def _weights(path):
    torch.save({'state_dict': {}}, path)
    return path


@pytest.mark.parametrize('tool,argv,message', [
    ('test.py', ['nope.py', 'x.pth'], 'config file nope.py does not exist'),
    ('train.py', ['{bad_config}'],
     'config {bad_config} cannot be loaded: NameError'),
    ('train.py', [DEMO, '--cfg-options', 'model.neck=3',
                  'model.neck.type=FPN'],
     "--cfg-options {'model.neck': 3, 'model.neck.type': 'FPN'} cannot be "
     'merged'),
    ('test.py', [DEMO, '{weights}', '--cfg-options',
                 'test_evaluator.ann_file=/nonexistent/val.json'],
     "test_evaluator.ann_file='/nonexistent/val.json' does not exist"),
    ('test.py', [DEMO, '{weights}', '--cfg-options',
                 'test_dataloader.dataset.ann_file=nope.json'],
     "test_dataloader.dataset.ann_file='nope.json' does not exist under "
     'data_root'),
    ('test.py', [DEMO, '{tmp}/none.pth'],
     'checkpoint file {tmp}/none.pth does not exist'),
    ('test.py', [DEMO, '{truncated}'],
     'checkpoint {truncated} is truncated or corrupted'),
    ('test.py', [DEMO, '{weights}', '--out', 'results.json'],
     '--out must be a .pkl file, got results.json'),
    # not even the run's own work dir makes a pickle trusted
    ('train.py', [DEMO, '--work-dir', '{tmp}', '--resume', '{crafted}'],
     'checkpoint {crafted} is refused'),
])
def test_tool_error_is_one_line(tool, argv, message, tmp_path, monkeypatch,
                                capsys, demo_env):
    bad_config = tmp_path / 'bad.py'
    bad_config.write_text('model = dict(type=undefined_name)\n')
    weights = _weights(tmp_path / 'w.pth')
    truncated = tmp_path / 'cut.pth'
    truncated.write_bytes(weights.read_bytes()[:100])
    crafted = crafted_checkpoint(tmp_path / 'iter_4.pth', tmp_path / 'ran')
    names = dict(bad_config=bad_config, weights=weights, tmp=tmp_path,
                 truncated=truncated, crafted=crafted)

    def fill(text):
        for key, value in names.items():
            text = text.replace('{%s}' % key, str(value))
        return text

    status, err = _run(tool, [fill(a) for a in argv], monkeypatch, capsys)
    assert status == 1
    assert 'Traceback' not in err
    error, hint = err.strip().splitlines()[-2:]  # (mmengine may log before)
    assert error.startswith(f'{tool}: error: ')
    assert fill(message) in error
    assert hint == f'({tool}: set DLU_MM_DEBUG=1 for the traceback)'
    assert not (tmp_path / 'ran').exists()


def test_debug_environment_variable_shows_the_traceback(monkeypatch, capsys,
                                                        demo_env):
    from dlu_mm.engine.config_checks import ConfigError
    monkeypatch.setenv('DLU_MM_DEBUG', '1')
    module = load_tool_module('tools/test.py')
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', 'nope.py', 'x.pth'])
    with pytest.raises(ConfigError, match='config file nope.py does not'):
        module.run_tool_main(module.main)
