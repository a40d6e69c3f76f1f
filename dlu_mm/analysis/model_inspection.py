"""Run an mmdet / mmseg model (built from its config) on one image with its
learned upsamplers captured, and place each upsampler's maps in the image.

* :func:`build_model` and :func:`load_checked`: the model of a config and
  its checkpoint, refused with :class:`CheckpointMismatchError` when the
  checkpoint's weights are not that model's. The file itself is read by
  :func:`read_state_dict`, the one place this package decides how a
  checkpoint is trusted (it goes through the loader ``tools/test.py``
  installs, :mod:`dlu_mm.engine.checkpoint`).
* :func:`run_on_image`: the config's test pipeline (annotations dropped)
  on one image file, the model's data preprocessor and ``predict`` forward,
  with every learned upsampler's first input and output captured
  (:func:`~dlu_mm.analysis.upsampler_inspection.capture_upsamplers`) and
  the RoIs of any RoI extractor (``*RoIExtractor``, mmdet) that ran just
  before an upsampler whose batch is those RoIs (a mask head).
* :class:`ImageRun`: the network input as an image, and per record the
  region of the input image each of its N inputs covers
  (:meth:`ImageRun.regions`), from which :meth:`ImageRun.crops` cuts the
  image or a boundary map.
"""
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .upsampler_inspection import (LEARNED_TYPES, UpsamplerRecord,
                                   capture_upsamplers, find_upsamplers,
                                   portable_mmcv_carafe, records_from_capture)
from .upsampler_statistics import image_edges, label_boundaries


class CheckpointMismatchError(ValueError):
    """A checkpoint whose weights do not fit the model of the config."""


# ------------------------------------------------------------- the model
def build_model(cfg) -> nn.Module:
    """``cfg.model`` built in the config's default scope, in eval mode on
    the CPU, without ``init_weights`` (no pretrained downloads; the
    checkpoint supplies every weight)."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', None) or 'mmengine')
    model = MODELS.build(cfg.model)
    return model.eval()


def read_state_dict(checkpoint: str, trust: bool = False
                    ) -> Dict[str, Tensor]:
    """The weights in ``checkpoint`` (an mmengine checkpoint or a bare
    state dict), read on the CPU with the checkpoint policy of
    ``tools/test.py`` (:func:`dlu_mm.engine.install_checkpoint_loader`:
    weights-only first; full unpickling only for files this project's
    tools wrote or when ``trust``). Raises ``FileNotFoundError`` or
    :class:`dlu_mm.engine.CheckpointError` naming the file."""
    from mmengine.runner import CheckpointLoader

    from ..engine import install_checkpoint_loader
    install_checkpoint_loader(trust_all=trust)
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state = loaded.get('state_dict', loaded) if isinstance(loaded,
                                                           dict) else None
    if not isinstance(state, dict) or not all(
            isinstance(v, Tensor) for v in state.values()):
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} holds no state dict (expected a dict '
            f"of tensors, or a dict with one under 'state_dict')")
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in state.items()}


def _examples(keys: List[str], limit: int = 4) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > limit
                    else '')


def check_state_dict_matches(model: nn.Module, state: Dict[str, Tensor],
                             checkpoint: str = 'the checkpoint') -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` has every
    key of ``model.state_dict()`` (BatchNorm's ``num_batches_tracked``
    excepted), no other key, and the same shapes. The message counts and
    names the keys, and says when the learned upsamplers' weights are all
    that is missing (a checkpoint trained with another ``upsample_cfg``)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state
               and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k} (checkpoint {tuple(state[k].shape)}, model '
              f'{tuple(own[k].shape)})' for k in own
              if k in state and state[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} of the model\'s {len(own)} keys are '
                     f'not in it ({_examples(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} of its keys are not in the model '
                     f'({_examples(unexpected)})')
    if shapes:
        parts.append(f'{len(shapes)} keys differ in shape '
                     f'({_examples(shapes, 2)})')
    prefixes = tuple(name + '.' for name, m in model.named_modules()
                     if isinstance(m, LEARNED_TYPES))
    hint = ''
    if (prefixes and not (unexpected or shapes)
            and all(k.startswith(prefixes) for k in missing)):
        hint = (' The learned upsamplers\' weights are missing: was it '
                'trained with another upsample_cfg type (e.g. nearest or '
                'bilinear)?')
    raise CheckpointMismatchError(
        f'checkpoint {checkpoint} does not match the model of the config: '
        + '; '.join(parts) + '.' + hint)


def load_checked(model: nn.Module, checkpoint: str,
                 trust: bool = False) -> None:
    """Load ``checkpoint`` into ``model`` after
    :func:`check_state_dict_matches`."""
    state = read_state_dict(checkpoint, trust=trust)
    check_state_dict_matches(model, state, checkpoint)
    model.load_state_dict(state, strict=False)


# ------------------------------------------------------- one image, run
def test_pipeline_cfg(cfg) -> list:
    """The test dataset's pipeline (through dataset wrappers; else
    ``cfg.test_pipeline``) without annotation loading."""
    node = cfg.get('test_dataloader', {}).get('dataset', None)
    pipeline = None
    while node is not None and pipeline is None:
        pipeline = node.get('pipeline', None)
        node = node.get('dataset', None) or (node.get('datasets') or
                                             [None])[0]
    pipeline = pipeline or cfg.get('test_pipeline', None)
    if not pipeline:
        raise ValueError('the config has no test pipeline (looked in '
                         'test_dataloader.dataset[.dataset].pipeline and '
                         'test_pipeline)')
    return [t for t in pipeline if 'Annotation' not in str(t.get('type'))]


@dataclass
class ImageRun:
    """The outcome of :func:`run_on_image`.

    * ``image``: (3, H, W) RGB in [0, 1], the network input (resized and
      padded as the test pipeline and data preprocessor did);
    * ``valid``: (h, w), the part of ``image`` that is the image (the rest
      is padding); ``original``: (H0, W0), the image file's size;
    * ``records``: the captured upsamplers (layers the model did not call
      are left out; see ``skipped``);
    * ``rois``: per record name whose inputs are RoIs, (R, 4) boxes
      (x1, y1, x2, y2) in ``image`` pixels.
    """
    image: Tensor
    valid: tuple
    original: tuple
    records: List[UpsamplerRecord]
    skipped: List[str]
    rois: Dict[str, Tensor] = field(default_factory=dict)

    def regions(self, record: UpsamplerRecord) -> Tensor:
        """(N, 4) boxes (x1, y1, x2, y2) in ``image`` pixels that the
        record's N output grids cover: the RoIs, or for a whole-image map
        of output size (sH, sW) the box (0, 0, t*sW, t*sH) with t the power
        of two nearest to H / sH (the map's stride; it may reach past the
        padded image when the backbone rounded sizes up)."""
        if record.name in self.rois:
            return self.rois[record.name]
        sh, sw = record.output.shape[2:]
        stride = 2 ** round(math.log2(self.image.shape[1] / sh))
        box = torch.tensor([0., 0., stride * sw, stride * sh])
        return box.expand(record.output.shape[0], 4)

    def crops(self, data: Tensor, record: UpsamplerRecord,
              size=None, mode: str = 'bilinear') -> Tensor:
        """(C, H, W) ``data`` at ``image``'s resolution cut to each of the
        record's regions -> (N, C, h, w), zero past ``data``'s edges;
        ``size`` (h, w) resamples each crop (``mode`` 'bilinear', or 'max'
        for adaptive max pooling, for boundary maps), default the first
        region's size in pixels."""
        boxes = self.regions(record)
        out = []
        for x1, y1, x2, y2 in boxes.tolist():
            x1, y1 = math.floor(x1), math.floor(y1)
            x2, y2 = max(math.ceil(x2), x1 + 1), max(math.ceil(y2), y1 + 1)
            padded = F.pad(data, (0, max(0, x2 - data.shape[2]), 0,
                                  max(0, y2 - data.shape[1])))
            crop = padded[:, max(y1, 0):y2, max(x1, 0):x2].float()
            if size is None:
                size = crop.shape[1:]
            if mode == 'max':
                crop = F.adaptive_max_pool2d(crop[None], tuple(size))[0]
            else:
                crop = F.interpolate(crop[None], size=tuple(size),
                                     mode='bilinear', align_corners=False)[0]
            out.append(crop)
        return torch.stack(out)

    def boundaries(self, record: UpsamplerRecord,
                   boundary_map: Tensor) -> Tensor:
        """(H, W) bool boundaries at ``image``'s resolution -> (N, sH, sW)
        bool, each of the record's output grids: a grid pixel is on a
        boundary if any image pixel it covers is."""
        crops = self.crops(boundary_map[None].float(), record,
                           size=record.output.shape[2:], mode='max')
        return crops[:, 0] > 0

    def image_edges(self) -> Tensor:
        """(H, W) bool: :func:`~dlu_mm.analysis.upsampler_statistics.
        image_edges` of the valid part of ``image`` (none in the
        padding)."""
        h, w = self.valid
        edges = torch.zeros(self.image.shape[1:], dtype=torch.bool)
        edges[:h, :w] = image_edges(self.image[:, :h, :w])
        return edges

    def label_boundaries(self, labels: Tensor) -> Tensor:
        """(H0, W0) label map of the original image -> (H, W) bool
        boundaries at ``image``'s resolution (resized as the image, nearest;
        none in the padding)."""
        if tuple(labels.shape) != tuple(self.original):
            raise ValueError(f'the label map is {tuple(labels.shape)} (H, W)'
                             f' but the image is {tuple(self.original)}; '
                             f'it must be the label map of this image')
        h, w = self.valid
        resized = F.interpolate(labels[None, None].float(), size=(h, w),
                                mode='nearest')[0, 0].long()
        full = torch.full(self.image.shape[1:], -1, dtype=torch.long)
        full[:h, :w] = resized
        return label_boundaries(full, ignore=-1)


def _display_image(model: nn.Module, inputs: Tensor) -> Tensor:
    """(3, H, W) network input -> RGB in [0, 1] (undoing the data
    preprocessor's normalisation; loaded images are BGR unless the
    preprocessor swapped the channels)."""
    pre = model.data_preprocessor
    image = inputs.float()
    if getattr(pre, '_enable_normalize', False):
        image = image * pre.std + pre.mean
    swapped = getattr(pre, '_channel_conversion',
                      getattr(pre, 'channel_conversion', False))
    if image.shape[0] == 3 and not swapped:
        image = image.flip(0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return (image / 255).clamp(0, 1)


def _capture_rois(model: nn.Module, log: list):
    """Forward hooks on every ``*RoIExtractor`` appending ('rois', boxes)
    to ``log``."""
    def hook(module, args, output):
        if len(args) > 1 and isinstance(args[1], Tensor):
            log.append(('rois', args[1][:, 1:5].detach().float()))
    return [m.register_forward_hook(hook) for m in model.modules()
            if type(m).__name__.endswith('RoIExtractor')]


@torch.no_grad()
def run_on_image(model: nn.Module, cfg, image_path: str) -> ImageRun:
    """Run ``model`` (from :func:`build_model`) on the image file
    ``image_path`` through ``cfg``'s test pipeline and return what its
    learned upsamplers saw (:class:`ImageRun`). Raises
    :class:`~dlu_mm.analysis.upsampler_inspection.NoLearnedUpsamplerError`
    before running anything if the model has none, ``FileNotFoundError``
    for a missing image."""
    from mmengine.dataset import Compose, pseudo_collate
    upsamplers = find_upsamplers(model)
    if not osp.isfile(image_path):
        raise FileNotFoundError(f'image {image_path} does not exist')
    pipeline = Compose(test_pipeline_cfg(cfg))
    data = pseudo_collate([pipeline(dict(img_path=image_path, img_id=0))])
    data = model.data_preprocessor(data, False)
    order: list = []
    handles = _capture_rois(model, order)
    names = {id(layer): name for name, layer in upsamplers}
    handles += [layer.register_forward_hook(
        lambda m, a, o: order.append(('upsampler', names[id(m)])))
        for _, layer in upsamplers]
    try:
        with portable_mmcv_carafe(model), \
                capture_upsamplers(upsamplers) as seen:
            model(**data, mode='predict')
    finally:
        for handle in handles:
            handle.remove()
    records = records_from_capture(upsamplers, seen)
    rois, last_rois, first_calls = {}, None, set()
    for kind, value in order:  # RoIs that an upsampler's batch consists of
        if kind == 'rois':
            last_rois = value
        elif value not in first_calls:
            first_calls.add(value)
            if (last_rois is not None
                    and seen[value].input.shape[0] == last_rois.shape[0]):
                rois[value] = last_rois
    inputs = data['inputs'][0]
    sample = data['data_samples'][0]
    valid = tuple(int(v) for v in sample.metainfo.get(
        'img_shape', inputs.shape[1:]))[:2]
    original = tuple(int(v) for v in sample.metainfo.get(
        'ori_shape', valid))[:2]
    return ImageRun(image=_display_image(model, inputs), valid=valid,
                    original=original,
                    records=records,
                    skipped=[n for n, _ in upsamplers if not seen[n].calls],
                    rois=rois)
