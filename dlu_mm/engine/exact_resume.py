"""Resume that continues exactly where the interrupted run was.

mmengine saves weights, optimizer, schedulers and the iteration, but not
the random number generators. A resumed run therefore draws different
proposals in the RPN / RoI samplers and different flips, and ends at
different weights than an uninterrupted run with the same seed.

:class:`RNGStateHook` stores the Python, NumPy and torch (CPU and CUDA)
generator states in every checkpoint, as plain data that loads
weights-only, and takes them back on resume.
:class:`ExactResumeIterBasedTrainLoop` (``tools/train.py`` uses it in place
of ``IterBasedTrainLoop``) restores them after mmengine has skipped the
batches already trained on -- the point where the interrupted run saved
them -- so data order, augmentation and sampling replay exactly. For
epoch-based loops (which resume at an epoch boundary, skipping nothing) the
hook restores them before training starts.
"""
import random
from typing import Iterator, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import IterBasedTrainLoop

_PENDING = '_dlu_mm_rng_state'  # runner attribute: state to restore


def capture_rng_state() -> dict:
    """The Python, NumPy and torch (CPU, CUDA) generator states as plain
    data (tuples of ints, a dict, tensors), so that a checkpoint holding
    them loads with ``torch.load(weights_only=True)``."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state['state'] = dict(
        numpy_state['state'],
        key=torch.from_numpy(numpy_state['state']['key'].astype(np.int64)))
    return dict(
        python=random.getstate(), numpy=numpy_state,
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else None)


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state['python'])
    numpy_state = state['numpy']
    key = numpy_state['state']['key']
    numpy_state = dict(numpy_state, state=dict(
        numpy_state['state'],
        key=np.asarray(key.numpy() if isinstance(key, torch.Tensor) else key,
                       dtype=np.uint32)))
    np.random.set_state(numpy_state)
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the RNG states with each checkpoint; restore them on resume."""
    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = capture_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        setattr(runner, _PENDING, checkpoint.get('rng_state'))

    def before_train(self, runner) -> None:
        if not isinstance(runner.train_loop, ExactResumeIterBasedTrainLoop):
            state = getattr(runner, _PENDING, None)
            if state is not None:
                restore_rng_state(state)
                setattr(runner, _PENDING, None)


class _RestoreAfter:
    """Iterator wrapper: after ``skip`` items, restore ``state`` once."""

    def __init__(self, iterator: Iterator, skip: int, state: dict):
        self._iterator, self._skip, self._state = iterator, skip, state

    def __next__(self):
        if self._skip == 0 and self._state is not None:
            restore_rng_state(self._state)
            self._state = None
        self._skip -= 1
        return next(self._iterator)

    def __iter__(self):
        return self


@LOOPS.register_module()
class ExactResumeIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` that restores the checkpoint's RNG state after
    skipping the already-trained batches on resume (see module docstring)."""

    def run(self) -> torch.nn.Module:
        state: Optional[dict] = getattr(self.runner, _PENDING, None)
        if self._iter > 0 and state is not None:
            self.dataloader_iterator = _RestoreAfter(self.dataloader_iterator,
                                                     self._iter, state)
            setattr(self.runner, _PENDING, None)
        return super().run()
