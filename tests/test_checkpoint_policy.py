"""Checkpoint loading on torch >= 2.6: weights-only with an allow-list,
full unpickling only for trusted files, clear errors for broken files."""
import os

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner import CheckpointLoader

from dlu_mm.engine import checkpoint as ckpt
from dlu_mm.engine.checkpoint import CheckpointError


class Unlisted:
    """A class outside the allow-list (as any arbitrary pickled object)."""


@pytest.fixture(autouse=True)
def _loader(monkeypatch):
    monkeypatch.delenv(ckpt.TRUST_ENV, raising=False)
    ckpt.install_checkpoint_loader()
    yield
    ckpt.install_checkpoint_loader()


def _mmengine_style(path):
    hub = MessageHub.get_instance('ckpt-test')
    hub.update_scalar('train/loss', 0.5)
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'iter': 4},
                'message_hub': hub.state_dict()}, path)
    return str(path)


def test_plain_weights_load_without_trust(tmp_path):
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.arange(3.)}, 'meta': {'epoch': 1}},
               path)
    out = CheckpointLoader.load_checkpoint(str(path))
    assert torch.equal(out['state_dict']['w'], torch.arange(3.))


def test_training_checkpoint_needs_trust(tmp_path):
    """mmengine's message hub pickles ``getattr``: never allow-listed, so a
    training checkpoint loads only when trusted (here: by its digest)."""
    path = _mmengine_style(tmp_path / 'a.pth')
    with pytest.raises(CheckpointError, match='refused'):
        CheckpointLoader.load_checkpoint(path)
    ckpt.write_digest(path)
    assert CheckpointLoader.load_checkpoint(path)['meta']['iter'] == 4


def test_foreign_pickle_is_refused_with_instructions(tmp_path):
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {}, 'extra': Unlisted()}, path)
    with pytest.raises(CheckpointError,
                       match=f'{path}.*refused.*--trust-checkpoint'):
        CheckpointLoader.load_checkpoint(str(path))


def test_trust_by_digest_opt_in_and_work_dir(tmp_path, monkeypatch):
    path = tmp_path / 'own.pth'
    torch.save({'state_dict': {}, 'extra': Unlisted()}, path)
    ckpt.write_digest(str(path))
    assert 'extra' in CheckpointLoader.load_checkpoint(str(path))
    with open(path, 'ab') as f:  # modified after the digest: no longer ours
        f.write(b'\0')
    with pytest.raises(CheckpointError):
        CheckpointLoader.load_checkpoint(str(path))
    ckpt.install_checkpoint_loader(trusted_dirs=[str(tmp_path)])
    os.remove(str(path) + ckpt.DIGEST_SUFFIX)
    torch.save({'state_dict': {}, 'extra': Unlisted()}, path)
    assert 'extra' in CheckpointLoader.load_checkpoint(str(path))
    ckpt.install_checkpoint_loader()
    monkeypatch.setenv(ckpt.TRUST_ENV, '1')
    assert 'extra' in CheckpointLoader.load_checkpoint(str(path))


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'empty'])
def test_broken_file_names_the_file(tmp_path, damage):
    path = tmp_path / 'broken.pth'
    _mmengine_style(path)
    data = path.read_bytes()
    path.write_bytes({'truncate': data[:len(data) // 2],
                      'garbage': b'not a checkpoint' * 10,
                      'empty': b''}[damage])
    with pytest.raises(CheckpointError,
                       match=f'{path} is (truncated or )?corrupted'):
        CheckpointLoader.load_checkpoint(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth does not exist'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))
