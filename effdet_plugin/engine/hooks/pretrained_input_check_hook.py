"""Warn when a model normalises its input differently from what its pretrained weights expect
(the comparison: :mod:`effdet_plugin.checkpoint.preprocessing`)."""
import logging
from typing import Mapping, Optional

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...checkpoint import read_checkpoint
from ...checkpoint.loading import pretrained_inits
from ...checkpoint.preprocessing import input_mismatch_message


@HOOKS.register_module()
class PretrainedInputCheckHook(Hook):
    """Compare the model's ``data_preprocessor`` (and backbone padding) with the input the
    pretrained weights expect, as recorded in their checkpoint ``meta['preprocessing']`` by
    ``tools/convert_weights.py`` and ``tools/convert_effdet_weights.py`` (older conversions:
    derived from their source and arch).

    Checks every ``Pretrained`` ``init_cfg`` of the model when training starts, and every
    checkpoint loaded by the runner (``load_from``). A mismatch is logged as a warning that
    names the settings to change; checkpoints without such meta (mmengine training
    checkpoints) are not checked.
    """

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for name, _, init_cfg in pretrained_inits(model):
            path = init_cfg['checkpoint']
            try:
                meta = read_checkpoint(path).get('meta')
            except (FileNotFoundError, RuntimeError):
                continue  # init_weights has already reported it
            self._warn(model, meta, f'{name or "model"} (init_cfg checkpoint {path})')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        origin = f"load_from={getattr(runner, '_load_from', None)!r}"
        self._warn(model, checkpoint.get('meta'), origin)

    @staticmethod
    def _warn(model: nn.Module, meta: Optional[Mapping], origin: str) -> None:
        message = input_mismatch_message(model, meta, origin)
        if message:
            print_log(message, logger='current', level=logging.WARNING)
