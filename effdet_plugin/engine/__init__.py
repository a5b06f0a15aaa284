"""Training / testing glue for tools/train.py and tools/test.py.

Importing it registers :class:`NonFiniteLossHook` (HOOKS) and :class:`BFloat16AmpOptimWrapper`
(OPTIM_WRAPPERS) in mmengine's root registries, visible from the ``mmdet`` scope, lets
``weights_only`` ``torch.load`` read mmengine checkpoints (see :mod:`.checkpoint_compat`) and
makes every weight load refuse NaN/inf and checkpoints of another architecture (see
:mod:`.weights_check`).
"""
from .amp import enable_amp
from .checkpoint_compat import mmengine_safe_globals, register_checkpoint_safe_globals
from .dist import setup_cpu_distributed
from .hooks import NonFiniteLossError, NonFiniteLossHook
from .optimizers import BFloat16AmpOptimWrapper
from .weights_check import (
                            NonFiniteWeightsError,
                            WeightsMismatchError,
                            apply_weights_check_cfg,
                            configure_weights_check,
                            install_weights_check,
)

register_checkpoint_safe_globals()
install_weights_check()

__all__ = [
    'BFloat16AmpOptimWrapper', 'NonFiniteLossError', 'NonFiniteLossHook', 'NonFiniteWeightsError',
    'WeightsMismatchError', 'apply_weights_check_cfg', 'configure_weights_check', 'enable_amp',
    'install_weights_check', 'mmengine_safe_globals', 'register_checkpoint_safe_globals',
    'setup_cpu_distributed'
]
