"""Stop training at the first non-finite loss or weight, saying where and why it probably happened.

A diverging run can keep a finite loss while its BatchNorm statistics are already inf (lr 1e6:
loss 4.6e17, inf ``running_var``), so the loss alone is not enough: the weights, buffers and EMA
copies are checked before each validation (:class:`NonFiniteLossHook`) and before each
checkpoint is written (:class:`~.safe_checkpoint_hook.SafeCheckpointHook`), both through
:func:`check_finite_state`.
"""
import math
from typing import Dict, Mapping, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...checkpoint.weights_check import (
    NonFiniteWeightsError,
    describe_non_finite,
    non_finite_tensors,
)

LIKELY_CAUSES = (
    'Likely causes: (1) learning rate too high: lower optim_wrapper.optimizer.lr, lengthen the '
    'warmup or clip gradients (optim_wrapper.clip_grad=dict(max_norm=10)); (2) bad boxes or '
    'annotations: zero/negative width or height, boxes outside the image, wrong category ids; '
    '(3) fp16 overflow under --amp: train without --amp or in bfloat16.')


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NonFiniteLossHook` when a loss becomes NaN or infinite."""


def check_finite_state(state_dicts: Mapping[str, Mapping], what: str) -> None:
    """Raise :class:`NonFiniteWeightsError` naming every tensor that holds NaN/inf.

    Args:
        state_dicts (Mapping[str, Mapping]): State dicts (parameters and buffers) by a name
            used as the key prefix in the message, e.g. ``{'model': ..., 'ema': ...}``.
        what (str): Start of the message: what was about to happen.
    """
    bad = [(f'{prefix}:{key}', nan, inf, numel) for prefix, state in state_dicts.items()
           for key, nan, inf, numel in non_finite_tensors(state)]
    if bad:
        raise NonFiniteWeightsError(
            f'{what}: {describe_non_finite(bad)}. The training has diverged even if the loss '
            f'looked finite. Training stopped. {LIKELY_CAUSES}')


def model_states(runner) -> Dict[str, Mapping]:
    """State dicts of the runner's model and of every EMA copy held by a hook (``EMAHook``)."""
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    states = {'model': model.state_dict()}
    for hook in runner.hooks:
        ema_model = getattr(hook, 'ema_model', None)
        if ema_model is not None:
            states[f'{type(hook).__name__}.ema_model'] = ema_model.state_dict()
    return states


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` as soon as a training loss is NaN or infinite.

    Unlike mmdet's ``CheckInvalidLossHook`` (an ``assert`` every 50 iterations), it checks every
    iteration by default, names the iteration and the offending loss terms, and lists likely
    causes. It runs before the checkpoint hook, so no checkpoint with NaN weights is written.
    In distributed training the verdict is all-reduced, so every rank stops at the same
    iteration instead of the others hanging in the next gradient all-reduce.

    Before each validation it also checks the parameters and buffers (BatchNorm statistics)
    of the model and of its EMA copies, and raises :class:`NonFiniteWeightsError` naming the
    tensors: a finite loss does not prove finite weights.

    Args:
        interval (int): Check every ``interval`` training iterations. Each check reads the
            loss back to the host. Defaults to 1.
        check_weights (bool): Check parameters and buffers before each validation. Defaults
            to True.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1, check_weights: bool = True) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self.check_weights = check_weights

    def before_val_epoch(self, runner) -> None:
        """Refuse to validate (and keep training) with NaN/inf weights or buffers."""
        if self.check_weights:
            check_finite_state(model_states(runner),
                               f'Before validation at iteration {runner.iter}')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[Dict[str, torch.Tensor]] = None) -> None:
        """Check the losses logged for this iteration."""
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        losses = {k: v for k, v in outputs.items() if 'loss' in k}
        values = {k: float(v.detach().float().mean()) if torch.is_tensor(v) else float(v)
                  for k, v in losses.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        flag = torch.tensor(float(len(bad) > 0))
        if get_world_size() > 1:
            all_reduce(flag, op='sum')
        if flag.item() == 0:
            return
        iteration, epoch = runner.iter + 1, runner.epoch + 1
        where = f'iteration {iteration} (epoch {epoch}, batch {batch_idx + 1})'
        if bad:
            detail = ', '.join(f'{k}={values[k]}' for k in losses)
        else:
            detail = f'on another rank (this is rank {runner.rank})'
        message = f'Non-finite loss at {where}: {detail}. Training stopped. {LIKELY_CAUSES}'
        runner.logger.error(message)
        raise NonFiniteLossError(message)
