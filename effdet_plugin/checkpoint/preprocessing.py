"""Does a model feed its pretrained weights the input they were trained on? The input
normalisation and padding recorded in a checkpoint's ``meta`` by the converters, compared with
a model's data preprocessor and backbone (used by
:class:`effdet_plugin.engine.hooks.PretrainedInputCheckHook`)."""
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn

from .efficientnet import expected_preprocessing
from .layouts import SOURCES


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
