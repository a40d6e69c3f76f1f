"""Checks run on a config before the Runner is built, so that a mistake
fails in seconds with a message naming the config key, not deep into model
construction or after the first epoch."""
import os.path as osp
from typing import Any

from ..layers.builder import check_upsample_cfg, iter_upsample_cfgs


class ConfigError(ValueError):
    """A config value that cannot work; the message names its key."""


def _width_of(module_cfg: dict):
    """The feature width a module's upsamplers work at."""
    for key in ('out_channels', 'conv_out_channels', 'channels'):
        if isinstance(module_cfg.get(key), int):
            return key, module_cfg[key]
    return None, None


def check_upsample_cfgs(node: Any, path: str = 'model') -> None:
    """Every ``upsample_cfg`` in the model: a registered type, and
    ``channels`` / ``scale_factor`` (when given) consistent with the module
    (an FPN neck, recognised by ``num_outs``, upsamples by 2 per level)."""
    for owner_path, owner in iter_upsample_cfgs(node, path):
        up = owner['upsample_cfg']
        key = f'{owner_path}.upsample_cfg'
        try:
            check_upsample_cfg(up, key)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        width_key, width = _width_of(owner)
        if 'channels' in up and width is not None and up['channels'] != width:
            raise ConfigError(
                f"{key}.channels={up['channels']} does not match "
                f'{owner_path}.{width_key}={width}; remove it (it is filled '
                f'in)')
        if 'num_outs' in owner and up.get('scale_factor', 2) != 2:
            raise ConfigError(
                f"{key}.scale_factor={up['scale_factor']} does not match the "
                f'FPN level ratio (2); remove it (it is filled in)')


def check_dataset_paths(dataset: Any, path: str) -> None:
    """``data_root``, ``ann_file`` and ``data_prefix`` entries exist
    (wrapped datasets such as RepeatDataset are followed)."""
    if not isinstance(dataset, dict):
        return
    if 'dataset' in dataset:
        check_dataset_paths(dataset['dataset'], f'{path}.dataset')
    for i, item in enumerate(dataset.get('datasets') or []):
        check_dataset_paths(item, f'{path}.datasets[{i}]')
    root = dataset.get('data_root') or ''
    if root and not osp.isdir(root):
        raise ConfigError(f'{path}.data_root={root!r} does not exist '
                          f'(override it with --cfg-options {path}.data_root='
                          f'... or the environment variable the config names)')
    ann = dataset.get('ann_file')
    if ann and not osp.isfile(osp.join(root, ann)):
        raise ConfigError(f'{path}.ann_file={ann!r} does not exist under '
                          f'data_root {root!r}')
    for name, prefix in (dataset.get('data_prefix') or {}).items():
        if prefix and not osp.isdir(osp.join(root, prefix)):
            raise ConfigError(f'{path}.data_prefix.{name}={prefix!r} does not '
                              f'exist under data_root {root!r}')


def check_evaluator_paths(evaluator: Any, path: str) -> None:
    """Every local ``ann_file`` an evaluator names exists (mmdet's
    CocoMetric reads it when built); ``evaluator`` is a dict or a list of
    them, as mmengine's Runner accepts."""
    items = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        key = path if len(items) == 1 and not isinstance(
            evaluator, (list, tuple)) else f'{path}[{i}]'
        if isinstance(item.get('metrics'), (list, tuple)):  # Evaluator cfg
            check_evaluator_paths(item['metrics'], f'{key}.metrics')
        ann = item.get('ann_file')
        if isinstance(ann, str) and ann and '://' not in ann \
                and not osp.isfile(ann):
            raise ConfigError(f'{key}.ann_file={ann!r} does not exist '
                              f'(override it with --cfg-options '
                              f'{key}.ann_file=...)')


# What each tool runs: (loader, evaluator, loop config that enables them).
_STAGES = {
    'train': [('train_dataloader', None, None),
              ('val_dataloader', 'val_evaluator', 'val_cfg')],
    'test': [('test_dataloader', 'test_evaluator', None)],
}


def check_config(cfg, mode: str = 'train') -> None:
    """Checks before a Runner is built for ``mode``: the model's upsamplers,
    and the data of what the run will use -- for ``'train'`` the train loop
    and (if ``val_cfg`` is set) the val loop and its evaluator, for
    ``'test'`` the test loop and its evaluator. Raises :class:`ConfigError`
    naming the config key."""
    if mode not in _STAGES:
        raise ValueError(f"mode must be one of {list(_STAGES)}, got {mode!r}")
    check_upsample_cfgs(cfg.get('model'))
    for loader, evaluator, enabled_by in _STAGES[mode]:
        if enabled_by is not None and not cfg.get(enabled_by):
            continue
        if cfg.get(loader):
            check_dataset_paths(cfg[loader].get('dataset'),
                                f'{loader}.dataset')
        if evaluator is not None and cfg.get(evaluator):
            check_evaluator_paths(cfg[evaluator], evaluator)
