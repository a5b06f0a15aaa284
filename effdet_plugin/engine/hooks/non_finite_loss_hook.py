"""Stop training at the first non-finite loss, saying where and why it probably happened."""
import math
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

LIKELY_CAUSES = (
    'Likely causes: (1) learning rate too high: lower optim_wrapper.optimizer.lr, lengthen the '
    'warmup or clip gradients (optim_wrapper.clip_grad=dict(max_norm=10)); (2) bad boxes or '
    'annotations: zero/negative width or height, boxes outside the image, wrong category ids; '
    '(3) fp16 overflow under --amp: train without --amp or in bfloat16.')


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NonFiniteLossHook` when a loss becomes NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` as soon as a training loss is NaN or infinite.

    Unlike mmdet's ``CheckInvalidLossHook`` (an ``assert`` every 50 iterations), it checks every
    iteration by default, names the iteration and the offending loss terms, and lists likely
    causes. It runs before the checkpoint hook, so no checkpoint with NaN weights is written.
    In distributed training the verdict is all-reduced, so every rank stops at the same
    iteration instead of the others hanging in the next gradient all-reduce.

    Args:
        interval (int): Check every ``interval`` training iterations. Each check reads the
            loss back to the host. Defaults to 1.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval

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
