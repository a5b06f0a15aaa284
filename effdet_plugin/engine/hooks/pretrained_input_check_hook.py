"""Warn when a model normalises its input differently from what its pretrained weights expect."""
import logging
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ...checkpoint import SOURCES, expected_preprocessing, read_checkpoint
from ...checkpoint.loading import pretrained_inits


def checkpoint_preprocessing(meta: Optional[Mapping]) -> dict:
    """The input normalisation and padding a checkpoint's ``meta`` says its weights expect.

    The converters (``tools/convert_weights.py``, ``tools/convert_effdet_weights.py``) write
    ``meta['preprocessing']``; older EfficientNet conversions only their ``source``, ``arch``
    and ``backbone_cfg``, from which it is derived. Anything else (a detector trained with
    mmengine, no meta): empty dict.
    """
    meta = meta or {}
    if meta.get('preprocessing'):
        return dict(meta['preprocessing'])
    if meta.get('source') in SOURCES and meta.get('arch'):
        padding = (meta.get('backbone_cfg') or {}).get('padding')
        tf_ported = None if padding is None else padding == 'tf_same'
        return expected_preprocessing(meta['source'], meta['arch'], tf_ported)
    return {}


def _as_list(values) -> list:
    return [round(float(v), 4) for v in torch.as_tensor(values).flatten()]


def preprocessing_mismatch(expected: Mapping, data_preprocessor: nn.Module,
                           backbone: Optional[nn.Module] = None) -> Dict[str, tuple]:
    """Settings of a model that differ from what its pretrained weights expect.

    Args:
        expected (Mapping): ``mean``, ``std``, ``to_rgb`` and ``padding`` (any subset), e.g.
            from :func:`checkpoint_preprocessing`.
        data_preprocessor (nn.Module): The model's (mmdet ``DetDataPreprocessor``-like)
            preprocessor, with ``mean``/``std`` buffers and ``_channel_conversion``.
        backbone (nn.Module, optional): Backbone whose ``padding`` attribute is compared.

    Returns:
        dict: Config key (``'model.data_preprocessor.mean'``, ...) to (expected, actual), for
        every setting that differs; empty when they agree.
    """
    normalizes = getattr(data_preprocessor, '_enable_normalize', False)
    actual = dict(
        mean=_as_list(data_preprocessor.mean) if normalizes else None,
        std=_as_list(data_preprocessor.std) if normalizes else None,
        bgr_to_rgb=bool(getattr(data_preprocessor, '_channel_conversion', False)))
    wanted = dict(mean=expected.get('mean'), std=expected.get('std'),
                  bgr_to_rgb=expected.get('to_rgb'))
    diffs = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if key in ('mean', 'std'):
            value = _as_list(value)
            same = actual[key] is not None and len(actual[key]) in (1, len(value)) and all(
                abs(a - b) < 1e-3 for a, b in zip(actual[key] * len(value), value))
        else:
            same = actual[key] == value
        if not same:
            diffs[f'model.data_preprocessor.{key}'] = (value, actual[key])
    padding = getattr(backbone, 'padding', None)
    if expected.get('padding') and padding is not None and padding != expected['padding']:
        diffs['model.backbone.padding'] = (expected['padding'], padding)
    return diffs


def input_mismatch_message(model: nn.Module, meta: Optional[Mapping], origin: str) -> str:
    """What to change so that ``model`` feeds the weights described by ``meta`` the input
    they were trained on; '' when it already does (or ``meta`` does not say)."""
    expected = checkpoint_preprocessing(meta)
    data_preprocessor = getattr(model, 'data_preprocessor', None)
    if not expected or data_preprocessor is None:
        return ''
    diffs = preprocessing_mismatch(expected, data_preprocessor, getattr(model, 'backbone', None))
    if not diffs:
        return ''
    found = ', '.join(f'{key.rsplit(".", 1)[-1]}={actual}' for key, (_, actual) in diffs.items())
    to_set = ' '.join(f'{key}={value}'.replace(' ', '') for key, (value, _) in diffs.items())
    return (f'The pretrained weights of {origin} were trained with input mean='
            f'{expected.get("mean")}, std={expected.get("std")}, RGB={expected.get("to_rgb")}, '
            f'padding={expected.get("padding")!r}, but this model has {found}: the network '
            f'sees other inputs than it learnt on. Set in the config (or --cfg-options): '
            f'{to_set}')


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
