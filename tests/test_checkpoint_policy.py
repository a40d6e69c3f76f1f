"""Checkpoint loading on torch >= 2.6: weights-only with an allow-list for
every file; full unpickling only when the user opts in (a digest beside a
file, or its directory, never makes it trusted); training checkpoints
stored as plain data; clear errors for broken files."""
from collections import Counter, OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import CheckpointLoader

from dlu_mm.engine import checkpoint as ckpt
from dlu_mm.engine import plain_checkpoint as plain
from dlu_mm.engine.checkpoint import CheckpointError, CheckpointNotFoundError
from dlu_mm.engine.exact_resume import capture_rng_state, restore_rng_state

from crafted_pickle import Payload, crafted_checkpoint


@pytest.fixture(autouse=True)
def _loader(monkeypatch):
    monkeypatch.delenv(ckpt.TRUST_ENV, raising=False)
    ckpt.install_checkpoint_loader()
    yield
    ckpt.install_checkpoint_loader()


@pytest.mark.parametrize('zip_format', [True, False], ids=['zip', 'legacy'])
def test_crafted_pickle_with_digest_is_refused_and_never_runs(tmp_path,
                                                              zip_format):
    marker = tmp_path / 'code_ran'
    path = crafted_checkpoint(tmp_path / 'model.pth', marker, zip_format)
    with pytest.raises(CheckpointError, match=(
            f'checkpoint {path} is refused.*posix.mkdir.*--trust-checkpoint')):
        CheckpointLoader.load_checkpoint(path)
    with pytest.raises(CheckpointError, match='is refused'):
        ckpt.check_checkpoint(path)  # the tools' pre-flight
    assert not marker.exists()
    # control: the payload is live -- opting in does run it
    ckpt.install_checkpoint_loader(trust_all=True)
    CheckpointLoader.load_checkpoint(path)
    assert marker.is_dir()


def test_opt_in_by_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {}, 'extra': len}, path)  # a function
    with pytest.raises(CheckpointError, match='builtins.len'):
        CheckpointLoader.load_checkpoint(str(path))
    monkeypatch.setenv(ckpt.TRUST_ENV, '1')
    ckpt.check_checkpoint(str(path))
    assert CheckpointLoader.load_checkpoint(str(path))['extra'] is len


def test_model_zoo_file_loads_weights_only(tmp_path, monkeypatch):
    """state_dict + meta with numpy values (as mmdet's model zoo files):
    the allow-list admits them without trust, and torch.load is only ever
    called with weights_only=True."""
    calls = []
    load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(
        k.get('weights_only')) or load(*a, **k))
    path = tmp_path / 'zoo.pth'
    meta = {'epoch': 12, 'mAP': np.float64(0.374), 'iters': np.int64(9000),
            'hist': np.arange(3, dtype=np.float32), 'classes': ('a', 'b')}
    torch.save({'state_dict': OrderedDict(w=torch.arange(3.)), 'meta': meta},
               path)
    ckpt.check_checkpoint(str(path))
    out = CheckpointLoader.load_checkpoint(str(path))
    assert calls == [True]
    assert torch.equal(out['state_dict']['w'], torch.arange(3.))
    assert out['meta']['mAP'] == np.float64(0.374)
    assert type(out['meta']['mAP']) is np.float64
    np.testing.assert_array_equal(out['meta']['hist'], meta['hist'])


def _message_hub():
    hub = MessageHub.get_instance('ckpt-test')
    for i in range(3):
        hub.update_scalar('train/loss', 0.5 / (i + 1))
        hub.update_scalar('train/lr', 2e-4 * (i + 1), count=2)
    hub.update_info('eta', np.float64(12.25))
    hub.update_info('iter', 3)
    hub.update_info('dataset_meta', dict(classes=('a', ), palette=[(1, 2)]))
    return hub


def test_training_checkpoint_is_plain_and_round_trips(tmp_path):
    """What the tools' hooks save: the message hub (HistoryBuffers, numpy
    runtime info), RNG states and a Counter (MultiStepLR's milestones) load
    with weights_only=True and no allow-list at all, and come back equal."""
    assert list(plain.unsafe_paths(capture_rng_state())) == []
    hub = _message_hub()
    state = hub.state_dict()
    checkpoint = {'meta': {'iter': 3}, 'message_hub': state,
                  'param_schedulers': [{'milestones': Counter({375: 1})}],
                  'rng_state': capture_rng_state(),
                  'state_dict': OrderedDict(w=torch.ones(1))}
    checkpoint['state_dict']._metadata = OrderedDict({'': {'version': 1}})
    assert list(plain.unsafe_paths(checkpoint))  # mmengine's own form
    plain.WeightsOnlyCheckpointHook().before_save_checkpoint(None, checkpoint)
    assert list(plain.unsafe_paths(checkpoint)) == []
    path = tmp_path / 'train.pth'
    torch.save(checkpoint, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded['state_dict']._metadata == {'': {'version': 1}}
    assert loaded['param_schedulers'][0]['milestones'] == Counter({375: 1})
    plain.WeightsOnlyCheckpointHook().after_load_checkpoint(None, loaded)
    hub2 = MessageHub.get_instance('ckpt-test-2')
    hub2.load_state_dict(loaded['message_hub'])
    for key in ('train/loss', 'train/lr'):
        buffer = hub2.get_scalar(key)
        assert isinstance(buffer, HistoryBuffer)
        for a, b in zip(buffer.data, state['log_scalars'][key].data):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert buffer.mean(2) == state['log_scalars'][key].mean(2)
    assert hub2.get_info('eta') == 12.25 and hub2.get_info('iter') == 3
    assert hub2.get_info('dataset_meta') == dict(classes=('a', ),
                                                 palette=[(1, 2)])
    # the RNG states restore the generators exactly
    draws = (np.random.rand(3), torch.rand(3), __import__('random').random())
    restore_rng_state(loaded['rng_state'])
    again = (np.random.rand(3), torch.rand(3), __import__('random').random())
    assert np.array_equal(draws[0], again[0])
    assert torch.equal(draws[1], again[1]) and draws[2] == again[2]


def test_hook_warns_about_what_it_cannot_make_plain():
    checkpoint = {'meta': {'fn': Payload('x')}}
    with pytest.warns(UserWarning, match=r"checkpoint\['meta'\]\['fn'\] "
                      r'\(Payload\).*--trust-checkpoint'):
        plain.WeightsOnlyCheckpointHook().before_save_checkpoint(
            None, checkpoint)


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'empty'])
def test_broken_file_names_the_file(tmp_path, damage):
    path = tmp_path / 'broken.pth'
    torch.save({'state_dict': {'w': torch.ones(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes({'truncate': data[:len(data) // 2],
                      'garbage': b'not a checkpoint' * 10,
                      'empty': b''}[damage])
    for load in (CheckpointLoader.load_checkpoint, ckpt.check_checkpoint):
        with pytest.raises(CheckpointError,
                           match=f'{path} is truncated or corrupted'):
            load(str(path))


def test_missing_file(tmp_path):
    for load in (CheckpointLoader.load_checkpoint, ckpt.check_checkpoint):
        with pytest.raises(CheckpointNotFoundError,
                           match='nope.pth does not exist'):
            load(str(tmp_path / 'nope.pth'))
