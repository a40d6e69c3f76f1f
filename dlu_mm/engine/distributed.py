"""Multi-process training on CPU (gloo). mmengine's ``init_dist`` for the
``pytorch`` launcher calls ``torch.cuda.set_device``, and its default model
wrapper pins ``device_ids`` to a GPU; on CPU the process group must exist
before the Runner and DDP must get ``device_ids=None``."""
import torch
import torch.distributed as dist


def setup_cpu_distributed(cfg, launcher: str) -> None:
    """For ``launcher != 'none'`` on a machine without CUDA: create the gloo
    process group from torchrun's environment and configure DDP for CPU."""
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ValueError(f"--launcher {launcher} on CPU is not supported; "
                         f"use --launcher pytorch (torchrun) for CPU runs")
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or
                   dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = \
        'gloo'
