"""Training / testing glue for tools/train.py and tools/test.py.

Importing it registers :class:`NonFiniteLossHook` (HOOKS) and :class:`BFloat16AmpOptimWrapper`
(OPTIM_WRAPPERS) in mmengine's root registries, visible from the ``mmdet`` scope, and lets
``weights_only`` ``torch.load`` read mmengine checkpoints (see :mod:`.checkpoint_compat`).
"""
from .amp import enable_amp
from .checkpoint_compat import mmengine_safe_globals, register_checkpoint_safe_globals
from .dataset_check import DatasetNotFoundError, check_dataset_paths
from .dist import setup_cpu_distributed
from .hooks import NonFiniteLossError, NonFiniteLossHook
from .optimizers import BFloat16AmpOptimWrapper

register_checkpoint_safe_globals()

__all__ = [
    'BFloat16AmpOptimWrapper', 'DatasetNotFoundError', 'NonFiniteLossError', 'NonFiniteLossHook',
    'check_dataset_paths', 'enable_amp', 'mmengine_safe_globals',
    'register_checkpoint_safe_globals', 'setup_cpu_distributed'
]
