from .iteration_seed_hook import IterationSeedHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .pretrained_input_check_hook import PretrainedInputCheckHook, input_mismatch_message
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = [
    'IterationSeedHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'PretrainedInputCheckHook',
    'SafeCheckpointHook', 'input_mismatch_message'
]
