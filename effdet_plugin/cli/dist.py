"""``--launcher pytorch`` without CUDA: gloo process group and CPU DDP.

mmengine 0.10.7's pytorch launcher always calls ``torch.cuda.set_device`` and the Runner wraps
the model with ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only machine. Initialising the
process group ourselves (the Runner then skips its own ``init_dist``) and passing
``device_ids=None`` to DDP through ``model_wrapper_cfg`` is enough; nothing in mmengine is
patched.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

_TORCHRUN_ENV = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare ``cfg`` (in place) and the process group for distributed training on CPU.

    Does nothing when ``launcher`` is ``'none'`` or CUDA is available: mmengine handles those.

    Args:
        cfg (Config): Full config; ``env_cfg.dist_cfg`` and ``model_wrapper_cfg`` are updated.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        bool: Whether a CPU (gloo) process group is now in use.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} needs CUDA with mmengine 0.10.7. On CPU-only machines use '
            '--launcher pytorch through torchrun (tools/dist_train.sh).')
    missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch expects the torchrun environment; missing '
                           f'{missing}. Start with tools/dist_train.sh or torchrun.')
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **({} if timeout is None else dict(timeout=timedelta(seconds=timeout))))
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper_type = wrapper['type']
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        # CPU modules take no device ids; the Runner would otherwise pass [LOCAL_RANK].
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True



def finish_distributed() -> None:
    """End a distributed run cleanly: wait for every rank, then close the process group.

    A rank that exits while another still evaluates (rank 0 computes the COCO metric alone)
    tears down gloo under its peers, and torchrun reports the run failed; after a barrier every
    rank leaves together. Does nothing outside a distributed run.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
