"""Training checkpoints that load with ``torch.load(weights_only=True)``.

mmengine's Runner saves the message hub as ``HistoryBuffer`` objects (whose
pickle needs ``getattr``) and numpy scalars in its runtime info; torch's
weights-only unpickler refuses both, so resuming would need full unpickling,
which can run arbitrary code. :class:`WeightsOnlyCheckpointHook` stores
them as plain data instead -- tensors, Python numbers, strings, lists,
tuples and dicts -- when a checkpoint is saved, and rebuilds the
``HistoryBuffer`` objects when one is loaded, before the Runner hands the
message hub its state. Values are kept exactly: a buffer's history is
stored as a tensor of the same dtype and comes back as the same numpy
array; a numpy scalar elsewhere comes back as the equal Python number.
"""
import copy
import warnings
from typing import Any, Iterator, List, Tuple

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.registry import HOOKS

# Marks a HistoryBuffer stored as plain data.
BUFFER_TAG = '__dlu_mm_history_buffer__'

_PLAIN_LEAVES = (type(None), bool, int, float, complex, str, bytes,
                 torch.Tensor, torch.dtype, torch.device, torch.Size)
_PLAIN_CONTAINERS = (dict, list, tuple, set, frozenset)


def to_plain(obj: Any) -> Any:
    """``obj`` with numpy arrays as tensors and numpy scalars as Python
    numbers, at any depth of dicts, lists and tuples. A container in which
    nothing changes is returned as is; one that changes is a shallow copy of
    the same type (an OrderedDict keeps its ``_metadata``). Anything else is
    returned unchanged (see :func:`unsafe_paths`)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        changed = {k: p for k, v in obj.items() if (p := to_plain(v)) is not v}
        if not changed:
            return obj
        out = copy.copy(obj)
        for key, value in changed.items():  # (Counter.update would add)
            out[key] = value
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        items = [to_plain(v) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(items)
    return obj


def unsafe_paths(obj: Any, path: str = 'checkpoint'
                 ) -> Iterator[Tuple[str, str]]:
    """``(path, type name)`` of every value that weights-only loading would
    refuse (anything but plain leaves and containers)."""
    if isinstance(obj, _PLAIN_CONTAINERS) and not hasattr(obj, '_fields'):
        items = (obj.items() if isinstance(obj, dict) else enumerate(obj))
        for key, value in items:
            yield from unsafe_paths(value, f'{path}[{key!r}]')
    elif not isinstance(obj, _PLAIN_LEAVES):
        yield path, type(obj).__qualname__


def buffer_to_plain(buffer: HistoryBuffer) -> dict:
    log, count = buffer.data
    return {BUFFER_TAG: True, 'log_history': torch.from_numpy(log.copy()),
            'count_history': torch.from_numpy(count.copy()),
            'max_length': buffer.max_length}


def buffer_from_plain(state: dict) -> HistoryBuffer:
    return HistoryBuffer(state['log_history'].numpy(),
                         state['count_history'].numpy(), state['max_length'])


def message_hub_to_plain(state: dict) -> dict:
    """A ``MessageHub.state_dict()`` as plain data."""
    state = dict(state)
    state['log_scalars'] = type(state['log_scalars'])(
        (key, buffer_to_plain(value) if isinstance(value, HistoryBuffer)
         else to_plain(value))
        for key, value in state['log_scalars'].items())
    state['runtime_info'] = to_plain(state['runtime_info'])
    return state


def message_hub_from_plain(state: dict) -> dict:
    """Inverse of :func:`message_hub_to_plain` (other states unchanged)."""
    state = dict(state)
    state['log_scalars'] = type(state['log_scalars'])(
        (key, buffer_from_plain(value)
         if isinstance(value, dict) and value.get(BUFFER_TAG) else value)
        for key, value in state['log_scalars'].items())
    return state


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Save checkpoints as plain data (loadable with ``weights_only=True``)
    and rebuild the message hub's buffers on load.

    Runs last before saving (priority LOWEST), after every hook that adds
    to the checkpoint; a value it cannot make plain (a user hook's object)
    is left in place with a warning that loading the file will need
    ``--trust-checkpoint``."""
    priority = 'LOWEST'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key, value in list(checkpoint.items()):
            checkpoint[key] = (message_hub_to_plain(value)
                               if key == 'message_hub' else to_plain(value))
        unsafe: List[Tuple[str, str]] = list(unsafe_paths(checkpoint))
        if unsafe:
            warnings.warn(
                'checkpoint values that weights-only loading refuses: '
                + ', '.join(f'{p} ({t})' for p, t in unsafe[:5])
                + '; loading this checkpoint will need --trust-checkpoint')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if isinstance(checkpoint.get('message_hub'), dict):
            checkpoint['message_hub'] = message_hub_from_plain(
                checkpoint['message_hub'])
