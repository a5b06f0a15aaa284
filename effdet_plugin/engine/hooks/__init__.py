from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .pretrained_input_check_hook import PretrainedInputCheckHook, input_mismatch_message

__all__ = [
    'NonFiniteLossError', 'NonFiniteLossHook', 'PretrainedInputCheckHook', 'input_mismatch_message'
]
