"""Channels-last memory format for inference (tools/test.py, tools/infer.py, benchmarks) and,
opt-in, for training (tools/train.py --channels-last).

Measured on a 2-core CPU (``benchmarks/deploy_latency.py``, docs/deploy.md), channels-last
took our D0 forward from 0.74x to 0.55x of effdet's time and Lite0's from 0.51x to 0.41x, with
the same detections, so it is the default for inference; ``--no-channels-last`` opts out.
A training step (``benchmarks/train_step.py``, batch 2, SGD) took 0.77x of effdet's
``DetBenchTrain`` time in channels-last for both D0 and Lite0, against 0.81x / 1.00x in the
default format.
"""
import argparse
from typing import Dict

import torch
import torch.nn as nn
from mmengine.logging import print_log

_HOOK_FLAG = '_effdet_channels_last_hook'


def add_memory_format_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-channels-last`` (sets ``args.channels_last`` to False)."""
    parser.add_argument(
        '--no-channels-last', dest='channels_last', action='store_false',
        help='run the model in the default contiguous (NCHW) memory format instead of '
        'channels-last (faster on CPU, same detections)')


def _inputs_channels_last(module: nn.Module, args: tuple, output: Dict) -> Dict:
    """Forward hook of a data preprocessor: its image batch leaves in channels-last."""
    inputs = output.get('inputs') if isinstance(output, dict) else None
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        output['inputs'] = inputs.contiguous(memory_format=torch.channels_last)
    return output


def set_memory_format(model: nn.Module, channels_last: bool = True,
                      purpose: str = 'inference') -> str:
    """Put ``model``'s 4-D weights and its data preprocessor's image batch in channels-last
    (any device), or leave them as they are, and log which format ``purpose`` uses.

    Call it after the model is built; checkpoints loaded later keep the format (a parameter
    keeps its layout when a state dict is copied into it). Model wrappers (DDP, the TTA model)
    are converted with the model they wrap.

    Args:
        model (nn.Module): A built detector, possibly wrapped.
        channels_last (bool): Use channels-last. False only logs the default format.
            Defaults to True.
        purpose (str): What the log line names (``'inference'`` or ``'training'``; for
            training call it before the optimizer is built or resumed: parameters are
            converted in place, so optimizer state built afterwards matches them).
            Defaults to 'inference'.

    Returns:
        str: ``'channels_last'`` or ``'contiguous'``.
    """
    if not channels_last:
        print_log(f'{purpose} memory format: contiguous (NCHW)', logger='current')
        return 'contiguous'
    model.to(memory_format=torch.channels_last)
    inner = model
    while hasattr(inner, 'module'):  # DDP / TTA wrappers hold the detector in .module
        inner = inner.module
    preprocessor = getattr(inner, 'data_preprocessor', None)
    if preprocessor is not None and not getattr(preprocessor, _HOOK_FLAG, False):
        preprocessor.register_forward_hook(_inputs_channels_last)
        setattr(preprocessor, _HOOK_FLAG, True)
    print_log(f'{purpose} memory format: channels-last', logger='current')
    return 'channels_last'
