"""What mmengine's Runner plugs in: hooks and optimizer wrappers, registered on import.

For now importing it also installs the weights check into mmengine's loader and allow-lists the
mmengine checkpoint types for ``weights_only`` loads (see :mod:`effdet_plugin.checkpoint`).
"""
from ..checkpoint.compat import register_checkpoint_safe_globals
from ..checkpoint.weights_check import install_weights_check
from .hooks import NonFiniteLossError, NonFiniteLossHook
from .optimizers import BFloat16AmpOptimWrapper

register_checkpoint_safe_globals()
install_weights_check()

__all__ = ['BFloat16AmpOptimWrapper', 'NonFiniteLossError', 'NonFiniteLossHook']
