"""Hooks that e2e tests put into the real tools (a test config names them
in ``custom_hooks`` and imports this module through ``custom_imports``, with
tests/ on PYTHONPATH) to record what happened inside a run:

* :class:`DtypeProbeHook` -- the dtypes that DLU's / CARAFE's convolutions,
  the reassembly ops and mmcv's ``nms`` / ``roi_align`` kernels actually
  ran with during the first training iteration;
* :class:`RankProbeHook` -- per process: rank, world size, the images of
  the first batch and the parameters after the first step;
* :class:`ValidateAtStartHook` -- the validation metrics of the model at
  initialisation, before the first step.

Each writes JSON (and tensors) that the test reads after the run.
"""
import json
import os
import os.path as osp
from collections import defaultdict

import torch
import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch.utils._python_dispatch import TorchDispatchMode

# reassembly layers whose convolutions are recorded (by class name, so that
# the probe does not depend on how the package lays out its modules)
UPSAMPLER_CLASSES = ('DLU', 'CARAFEPortable')
# mmcv kernels (in mmcv._ext) and the position of their data arguments
MMCV_KERNELS = {'nms': (0, 1), 'roi_align_forward': (0, 1)}


def _dtype(value) -> str:
    return str(value.dtype).replace('torch.', '')


class _OpRecorder(TorchDispatchMode):
    """Records the tensor dtypes of every ``dlu_mm::`` op that runs."""

    def __init__(self, record):
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if name.startswith('dlu_mm::'):
            self.record[name].append(
                [_dtype(a) for a in args if isinstance(a, torch.Tensor)])
        return func(*args, **(kwargs or {}))


@HOOKS.register_module()
class DtypeProbeHook(Hook):
    """Write ``{'convs': [[in, out], ...], 'dlu_mm::...': [[dtypes]],
    'nms': ..., 'roi_align_forward': ...}`` for the first iteration to
    ``out_file``."""

    def __init__(self, out_file):
        self.out_file = out_file
        self.done = False

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.done:
            return
        import mmcv._ext as ext
        self.record = defaultdict(list)
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        upsamplers = [layer for layer in model.modules()
                      if type(layer).__name__ in UPSAMPLER_CLASSES]
        self.handles = [
            conv.register_forward_hook(
                lambda m, i, o: self.record['convs'].append(
                    [_dtype(i[0]), _dtype(o)]))
            for layer in upsamplers
            for conv in layer.modules() if isinstance(conv, nn.Conv2d)]
        # the encoders may run as one functional conv (DLU stacks its two):
        # the dtypes of what predict_kernels returns show theirs
        for layer in upsamplers:
            layer.predict_kernels = self._recording(layer.predict_kernels)
        self.upsamplers = upsamplers
        self.originals = {}
        for name, positions in MMCV_KERNELS.items():
            original = self.originals[name] = getattr(ext, name)

            def recording(*args, _name=name, _original=original,
                          _positions=positions, **kwargs):
                self.record[_name].append([_dtype(args[p])
                                           for p in _positions])
                return _original(*args, **kwargs)

            setattr(ext, name, recording)
        self.mode = _OpRecorder(self.record)
        self.mode.__enter__()

    def _recording(self, predict_kernels):
        def recording(x):
            prediction = predict_kernels(x)
            self.record['predictions'].append(
                [_dtype(x)] + [_dtype(t) for t in prediction
                               if isinstance(t, torch.Tensor)])
            return prediction
        return recording

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.done:
            return
        import mmcv._ext as ext
        self.mode.__exit__(None, None, None)
        for handle in self.handles:
            handle.remove()
        for layer in self.upsamplers:
            del layer.predict_kernels  # the class's method again
        for name, original in self.originals.items():
            setattr(ext, name, original)
        with open(self.out_file, 'w') as f:
            json.dump(self.record, f)
        self.done = True


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Write ``rank{r}.json`` (rank, world size, image ids of the first
    batch) and ``rank{r}.pt`` (all parameters after the first step, one
    flat tensor) to ``out_dir``."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.done = False

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if not self.done:
            self.img_ids = [sample.img_id
                            for sample in data_batch['data_samples']]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.done:
            return
        rank, world_size = get_dist_info()
        os.makedirs(self.out_dir, exist_ok=True)
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        params = torch.cat([p.detach().flatten()
                            for p in model.parameters()])
        torch.save(params, osp.join(self.out_dir, f'rank{rank}.pt'))
        with open(osp.join(self.out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(dict(rank=rank, world_size=world_size,
                           wrapped=is_model_wrapper(runner.model),
                           img_ids=self.img_ids), f)
        self.done = True


@HOOKS.register_module()
class ValidateAtStartHook(Hook):
    """Run the val loop once before the first step (the model as
    initialised) and write its metrics to ``out_file``."""
    priority = 'LOWEST'

    def __init__(self, out_file):
        self.out_file = out_file

    def before_train(self, runner):
        metrics = runner.val_loop.run()
        with open(self.out_file, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f)
