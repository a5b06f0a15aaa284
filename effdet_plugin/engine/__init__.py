"""What mmengine's Runner plugs in: the checked Runner, hooks and optimizer wrappers, registered
on import (importing changes nothing in mmengine or torch). Imported by cli/ and tools/."""
from .hooks import NonFiniteLossError, NonFiniteLossHook
from .optimizers import BFloat16AmpOptimWrapper
from .runner import CheckedRunner

__all__ = ['BFloat16AmpOptimWrapper', 'CheckedRunner', 'NonFiniteLossError', 'NonFiniteLossHook']
