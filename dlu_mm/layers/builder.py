"""Build any registered upsample layer for a given width and scale.

Necks and decode heads hold one ``upsample_cfg`` (e.g. ``dict(type='dlu',
up_kernel=5)``) and need layers for ``channels`` features at scale ``s``.
:func:`build_upsampler` fills the per-type arguments the way mmdet's
``FPN_CARAFE`` does, for every type registered as an upsample layer:

* ``nearest`` / ``bilinear``: ``scale_factor``, ``mode``, ``align_corners``
  (``None`` for nearest, ``False`` otherwise, unless given);
* ``deconv``: ``in_channels = out_channels = channels``, ``kernel_size =
  upsample_kernel``, ``stride = s``, ``padding = (kernel - 1) // 2`` and the
  ``output_padding`` that makes the output exactly s times larger;
* ``pixel_shuffle``: ``in_channels``, ``out_channels``, ``scale_factor``
  (``upsample_kernel`` from the config);
* any other registered layer (``dlu``, ``carafe``, ``carafe_portable``, or a
  user's): whichever of ``channels`` / ``in_channels`` / ``out_channels`` /
  ``scale_factor`` its constructor takes.

Values the config sets itself must agree with the neck (``channels`` equal
to its width, ``scale_factor`` equal to the level ratio); a disagreement or
an unknown type raises ``ValueError`` at build time, naming the key.
"""
import inspect
from typing import Any, Dict, Iterator, List, Optional, Tuple

import mmcv.ops  # noqa: F401  (registers mmcv's own 'carafe' type)
import torch.nn as nn
from mmcv.cnn import build_upsample_layer
from mmengine.registry import MODELS, DefaultScope

# Types that mmcv registers without a ``scale_factor`` argument.
_NO_SCALE_ARG = ('deconv', )


def _registries() -> list:
    """The current default scope's MODELS registry (if any), then the root,
    the order in which ``build_upsample_layer`` looks a type up."""
    scope = DefaultScope.get_current_instance()
    child = MODELS._search_child(scope.scope_name) if scope else None
    return [child, MODELS] if child is not None else [MODELS]


def _lookup(name: str) -> Optional[type]:
    for registry in _registries():
        if name in registry.module_dict:
            return registry.module_dict[name]
    return None


def _params(cls) -> List[str]:
    try:
        return list(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return []


def registered_upsample_types() -> List[str]:
    """Names of registered layers that take a ``scale_factor`` (plus
    ``deconv``): the values ``upsample_cfg['type']`` accepts.

    Heads that happen to take a ``scale_factor`` (mmdet's
    ``FeatureRelayHead``) are not upsample layers and are left out."""
    names = set()
    for registry in _registries():
        for name, cls in registry.module_dict.items():
            if name in _NO_SCALE_ARG or (inspect.isclass(cls)
                                         and issubclass(cls, nn.Module)
                                         and not name.endswith('Head')
                                         and 'scale_factor' in _params(cls)):
                names.add(name)
    return sorted(names)


def check_upsample_cfg(upsample_cfg: Dict, owner: str = 'upsample_cfg'):
    """Fail early on a missing or unknown type, listing the accepted ones."""
    if not isinstance(upsample_cfg, dict) or 'type' not in upsample_cfg:
        raise ValueError(f"{owner} must be a dict with a 'type' key, got "
                         f'{upsample_cfg!r}')
    name = upsample_cfg['type']
    if not isinstance(name, str) or name not in registered_upsample_types():
        raise ValueError(
            f"{owner}['type']={name!r} is not a registered upsample layer; "
            f'registered upsample types: {registered_upsample_types()}')
    if name in ('deconv', 'pixel_shuffle') and not (
            isinstance(upsample_cfg.get('upsample_kernel'), int)
            and upsample_cfg['upsample_kernel'] > 0):
        raise ValueError(f"{owner} of type {name!r} needs a positive integer "
                         f"'upsample_kernel', got "
                         f"{upsample_cfg.get('upsample_kernel')!r}")


def iter_upsample_cfgs(node: Any, path: str = 'model'
                       ) -> Iterator[Tuple[str, Dict]]:
    """Walk a (model) config, parents before children, and yield
    ``(path, owner)`` for every dict ``owner`` whose ``upsample_cfg`` is a
    dict (e.g. ``('model.neck', neck_cfg)``); an ``upsample_cfg`` itself is
    not searched. ``owner`` is the config's own dict, so callers may edit
    ``owner['upsample_cfg']`` in place."""
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from iter_upsample_cfgs(item, f'{path}[{i}]')
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get('upsample_cfg'), dict):
        yield path, node
    for name, value in node.items():
        if name != 'upsample_cfg':
            yield from iter_upsample_cfgs(value, f'{path}.{name}')


def _agree(cfg: Dict, key: str, value, owner: str, what: str) -> None:
    if key in cfg and cfg[key] != value:
        raise ValueError(f"{owner}['{key}']={cfg[key]!r} does not match "
                         f'{what} ({value}); leave it out and it is filled in')
    cfg[key] = value


def upsampler_cfg(upsample_cfg: Dict,
                  channels: int,
                  scale_factor: int,
                  owner: str = 'upsample_cfg') -> Dict:
    """The complete config of one upsampler (see the module docstring)."""
    check_upsample_cfg(upsample_cfg, owner)
    cfg = dict(upsample_cfg)
    name = cfg['type']
    width = 'the feature width at this point'
    ratio = 'the scale ratio at this point'
    if name in ('nearest', 'bilinear'):
        _agree(cfg, 'scale_factor', scale_factor, owner, ratio)
        cfg.setdefault('align_corners', None if name == 'nearest' else False)
        cfg['mode'] = name
    elif name == 'deconv':
        kernel = cfg.pop('upsample_kernel')
        padding = (kernel - 1) // 2
        output_padding = scale_factor - kernel + 2 * padding
        if not 0 <= output_padding < scale_factor:
            raise ValueError(
                f"{owner}['upsample_kernel']={kernel} cannot upsample exactly "
                f'{scale_factor}x with a transposed conv of stride '
                f'{scale_factor}; use an odd kernel <= {scale_factor + 1}')
        _agree(cfg, 'in_channels', channels, owner, width)
        _agree(cfg, 'out_channels', channels, owner, width)
        cfg.update(kernel_size=kernel, stride=scale_factor, padding=padding,
                   output_padding=output_padding)
    else:
        params = _params(_lookup(name))
        for key in ('channels', 'in_channels', 'out_channels'):
            if key in params:
                _agree(cfg, key, channels, owner, width)
        if 'scale_factor' in params:
            _agree(cfg, 'scale_factor', scale_factor, owner, ratio)
    return cfg


def build_upsampler(upsample_cfg: Dict,
                    channels: int,
                    scale_factor: int,
                    owner: str = 'upsample_cfg') -> nn.Module:
    """Build the layer that upsamples ``channels`` features ``scale_factor``
    times as ``upsample_cfg`` says (any registered upsample type)."""
    return build_upsample_layer(
        upsampler_cfg(upsample_cfg, channels, scale_factor, owner))
