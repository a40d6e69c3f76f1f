"""Export a model config with mmdeploy's ``torch2onnx`` and check the graph
with ONNX Runtime against PyTorch.

:func:`export_with_mmdeploy` is mmdeploy's own pipeline
(``mmdeploy.apis.torch2onnx``, what its ``tools/deploy.py`` runs first)
with this package's rewriters registered. :func:`check_with_onnxruntime`
feeds one preprocessed input tensor (N, 3, H, W) of any size to the graph
and to PyTorch and returns the max abs error per graph output:

* detectors (mmdet): the reference is the model's forward under mmdeploy's
  ``RewriterContext`` run eagerly, i.e. the computation mmdeploy exports
  (its post-processing and NMS included) with DLU on its own kernels and
  mmcv's ``nms`` / ``roi_align``. ``dets`` (N, K, 5) is reported as
  ``dets[boxes]`` and ``dets[scores]``; ``labels`` must be equal, so the
  detections must come out in the same order;
* segmentors (mmseg): the reference is the unchanged mmseg model
  (``extract_feat`` then ``decode_head.predict``, no rewriter active), the
  logits a user gets in PyTorch.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config

from ..onnx_check import Errors, max_abs_errors, onnx_op_counts, ort_session
from . import bridges, rewriters  # noqa: F401  (register with mmdeploy)


def load_configs(deploy_cfg: Union[str, Config],
                 model_cfg: Union[str, Config]) -> Tuple[Config, Config]:
    """Both configs as mmdeploy loads them; ``FileNotFoundError`` naming
    the argument for a path that does not exist."""
    from mmdeploy.utils import load_config
    for name, value in (('deploy_cfg', deploy_cfg), ('model_cfg', model_cfg)):
        if isinstance(value, str) and not osp.isfile(value):
            raise FileNotFoundError(f'{name}: no such config file: {value}')
    return load_config(deploy_cfg, model_cfg)


def export_with_mmdeploy(model_cfg: Union[str, Config],
                         deploy_cfg: Union[str, Config],
                         work_dir: str,
                         image: np.ndarray,
                         checkpoint: Optional[str] = None) -> str:
    """``mmdeploy.apis.torch2onnx`` of ``model_cfg`` with ``checkpoint``
    (constructor weights without one) on ``image`` (H, W, 3) uint8 BGR,
    which goes through the config's test pipeline and data preprocessor as
    in mmdeploy; returns the path of the ``.onnx`` file (the deploy
    config's ``save_file``) in ``work_dir``."""
    from mmdeploy.apis import torch2onnx
    from mmdeploy.utils import get_ir_config
    deploy_cfg, model_cfg = load_configs(deploy_cfg, model_cfg)
    save_file = get_ir_config(deploy_cfg).get('save_file', 'end2end.onnx')
    torch2onnx(image, work_dir, save_file, deploy_cfg, model_cfg,
               checkpoint, 'cpu')
    return osp.join(work_dir, save_file)


def build_reference_model(model_cfg: Union[str, Config],
                          deploy_cfg: Union[str, Config],
                          checkpoint: Optional[str] = None):
    """The PyTorch model mmdeploy exports (its task processor's
    ``build_pytorch_model``: eval mode, on the CPU)."""
    from mmdeploy.apis import build_task_processor
    deploy_cfg, model_cfg = load_configs(deploy_cfg, model_cfg)
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    return task.build_pytorch_model(checkpoint)


def _data_samples(codebase: str, shape: Sequence[int]):
    n, _, h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1.0, 1.0))
    if codebase == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta) for _ in range(n)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta) for _ in range(n)]


def pytorch_outputs(model, deploy_cfg: Config, inputs: torch.Tensor
                    ) -> Tuple[torch.Tensor, ...]:
    """The reference outputs for ``inputs`` (see the module docstring)."""
    from mmdeploy.core import RewriterContext, patch_model
    from mmdeploy.utils import IR, get_backend, get_codebase, get_ir_config
    codebase = get_codebase(deploy_cfg).value
    samples = _data_samples(codebase, inputs.shape)
    with torch.no_grad():
        if codebase == 'mmseg':
            feats = model.extract_feat(inputs)
            return (model.decode_head.predict(
                feats, [s.metainfo for s in samples], model.test_cfg), )
        ir_cfg = get_ir_config(deploy_cfg)
        backend = get_backend(deploy_cfg).value
        ir = IR.get(ir_cfg['type'])
        patched = patch_model(model, cfg=deploy_cfg, backend=backend, ir=ir)
        with RewriterContext(cfg=deploy_cfg, backend=backend, ir=ir,
                             opset=ir_cfg.get('opset_version', 11)):
            outs = patched(inputs, samples, mode='predict')
    return tuple(outs) if isinstance(outs, (tuple, list)) else (outs, )


def check_with_onnxruntime(onnx_path: str, model, deploy_cfg: Config,
                           shape: Sequence[int], seed: int = 0,
                           session=None) -> Errors:
    """Run the graph at ``onnx_path`` (or ``session``) with plain ONNX
    Runtime and ``model`` in PyTorch on one N(0, 1) input of ``shape``
    (N, 3, H, W); returns ``{output: (max abs error, max |reference|)}``.
    ``AssertionError`` naming the output when shapes or integer outputs
    (``labels``) differ."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(*shape, generator=generator)
    reference = pytorch_outputs(model, deploy_cfg, inputs)
    session = session or ort_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    got = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    if len(got) != len(reference):
        raise AssertionError(f'{onnx_path}: {len(got)} outputs {names}, '
                             f'PyTorch gave {len(reference)}')
    where = f'at input {tuple(shape)}'
    errors = {}
    for name, a, b in zip(names, got, reference):
        b = b.detach().cpu().numpy()
        if name == 'dets' and b.ndim == 3 and b.shape[-1] == 5 and \
                a.shape == b.shape:  # x1 y1 x2 y2 score
            pairs = [('dets[boxes]', a[..., :4], b[..., :4]),
                     ('dets[scores]', a[..., 4], b[..., 4])]
        else:
            pairs = [(name, a, b)]
        for label, x, y in pairs:
            try:
                errors.update(max_abs_errors([label], [x], [y]))
            except AssertionError as err:
                raise AssertionError(f'{err} ({where})') from None
    return errors


def export_and_check(model_cfg: Union[str, Config],
                     deploy_cfg: Union[str, Config],
                     work_dir: str,
                     checkpoint: Optional[str] = None,
                     image: Optional[np.ndarray] = None,
                     check_shapes: Sequence[Sequence[int]] = (),
                     seed: int = 0) -> dict:
    """Export with :func:`export_with_mmdeploy`, check that the graph is
    plain ONNX, then compare it with PyTorch at the export size (the
    preprocessed ``image``'s (1, 3, H, W)) and at each of ``check_shapes``
    (N, 3, H, W).

    ``image`` defaults to a random 256x256 BGR image (``seed``). Without a
    ``checkpoint`` the model's constructor weights (built after
    ``torch.manual_seed(seed)``) are saved to ``work_dir/
    constructor_weights.pth`` and exported, so that the graph and the
    reference hold the same weights.

    Returns ``dict(onnx=path, ops={op_type: count}, export_shape=(1, 3, H,
    W), errors={shape: {output: (max abs error, max |reference|)}})``.
    """
    from mmdeploy.apis import build_task_processor
    for i, s in enumerate(check_shapes):
        if len(s) != 4 or s[1] != 3 or min(s) < 1:
            raise ValueError(f'check_shapes[{i}] must be (N, 3, H, W) with '
                             f'positive sizes, got {tuple(s)}')
    deploy_cfg, model_cfg = load_configs(deploy_cfg, model_cfg)
    if image is None:
        image = np.random.RandomState(seed).randint(
            0, 256, (256, 256, 3)).astype(np.uint8)
    os.makedirs(work_dir, exist_ok=True)
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    if checkpoint is None:
        torch.manual_seed(seed)
        checkpoint = osp.join(work_dir, 'constructor_weights.pth')
        torch.save({'state_dict': task.build_pytorch_model().state_dict()},
                   checkpoint)
    onnx_path = export_with_mmdeploy(model_cfg, deploy_cfg, work_dir, image,
                                     checkpoint)
    ops = onnx_op_counts(onnx_path)
    model = task.build_pytorch_model(checkpoint)
    _, inputs = task.create_input(image, None,
                                  data_preprocessor=model.data_preprocessor)
    if isinstance(inputs, (list, tuple)):
        inputs = inputs[0]
    export_shape = tuple(inputs.shape)
    session = ort_session(onnx_path)
    errors = {shape: check_with_onnxruntime(onnx_path, model, deploy_cfg,
                                            shape, seed, session)
              for shape in [export_shape, *map(tuple, check_shapes)]}
    return dict(onnx=onnx_path, ops=ops, export_shape=export_shape,
                errors=errors)
