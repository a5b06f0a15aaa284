"""The checked load path: read a checkpoint, check what it would put into a model, then load.

mmengine's own loaders (``load_checkpoint``, the Runner's ``load_from`` / ``resume``, a
``Pretrained`` ``init_cfg``, ``EMAHook``) copy whatever fits and warn about the rest. Ours
read through :func:`read_checkpoint_file` (weights-only, mmengine's types allow-listed during
the read, one readable error for a missing, empty or truncated file) and run
:func:`check_checkpoint` before anything is copied. mmengine's functions are called, never
replaced: code that does not ask for these loaders gets mmengine's behaviour.
:class:`effdet_plugin.engine.CheckedRunner` routes the Runner's loads here; tools/infer.py
loads through :func:`load_checkpoint`.
"""
import re
from collections import OrderedDict
from typing import Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint_to_model
from torch import nn

from .checkpoint_io import read_checkpoint
from .compat import mmengine_globals_allowed
from .weights_check import WeightsCheckSettings, check_state_dict

#: mmengine's default key revision (DataParallel / DDP prefix).
REVISE_KEYS = ((r'^module\.', ''), )


def read_checkpoint_file(filename: str,
                         map_location: Union[str, Callable, None] = 'cpu') -> dict:
    """Read a local checkpoint with :func:`read_checkpoint`, or one behind a URL /
    ``open-mmlab://`` style prefix with mmengine's loader (the allow-list active)."""
    if '://' in str(filename):
        with mmengine_globals_allowed():
            return CheckpointLoader.load_checkpoint(str(filename), map_location)
    return read_checkpoint(str(filename), map_location)


def model_state_dict(checkpoint: Mapping,
                     revise_keys: Sequence[Tuple[str, str]] = REVISE_KEYS) -> 'OrderedDict':
    """The weights mmengine's ``_load_checkpoint_to_model`` would load: ``state_dict`` (or
    the checkpoint itself) with ``revise_keys`` applied."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    for pattern, replacement in revise_keys:
        state_dict = OrderedDict((re.sub(pattern, replacement, k), v)
                                 for k, v in state_dict.items())
    return state_dict


def check_checkpoint(model: nn.Module,
                     checkpoint: Mapping,
                     source: str,
                     settings: Optional[WeightsCheckSettings] = None,
                     revise_keys: Sequence[Tuple[str, str]] = REVISE_KEYS) -> None:
    """Check every field of ``checkpoint`` that a load puts into ``model`` or its EMA copy.

    ``state_dict`` goes into the model (and, when there is no ``ema_state_dict``, into the
    EMA copy); ``ema_state_dict`` (``module.``-prefixed weights and a step counter) into the
    EMA copy, or the model when a run resumes. On resume ``EMAHook`` swaps the two before loading, so both are checked in
    full, whichever ends where.

    Raises:
        NonFiniteWeightsError: A field holds NaN/inf.
        WeightsMismatchError: A field does not fit ``model`` (see
            :func:`~.weights_check.check_state_dict`).
    """
    check_state_dict(model, model_state_dict(checkpoint, revise_keys), str(source), settings)
    ema = checkpoint.get('ema_state_dict')
    if isinstance(ema, Mapping):
        ema_weights = OrderedDict((k[len('module.'):], v) for k, v in ema.items()
                                  if k.startswith('module.'))
        check_state_dict(model, ema_weights, f'{source} (ema_state_dict)', settings)


def load_checkpoint(model: nn.Module,
                    filename: str,
                    settings: Optional[WeightsCheckSettings] = None,
                    map_location: Union[str, Callable, None] = 'cpu',
                    strict: bool = False,
                    revise_keys: Sequence[Tuple[str, str]] = REVISE_KEYS) -> dict:
    """:func:`mmengine.runner.load_checkpoint` after :func:`check_checkpoint`.

    Args:
        model (nn.Module): The model to load into.
        filename (str): A local file or a URL.
        settings (WeightsCheckSettings, optional): Defaults to ``WeightsCheckSettings()``.
        map_location (str | Callable, optional): As for ``torch.load``. Defaults to 'cpu'.
        strict (bool): As for mmengine. Defaults to False.
        revise_keys (Sequence[tuple]): As for mmengine. Defaults to stripping ``module.``.

    Returns:
        dict: The checkpoint.
    """
    checkpoint = read_checkpoint_file(filename, map_location)
    check_checkpoint(model, checkpoint, filename, settings, revise_keys)
    return _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=list(revise_keys))


def pretrained_inits(model: nn.Module) -> Iterator[Tuple[str, nn.Module, dict]]:
    """(module name, module, init_cfg) of every ``Pretrained`` ``init_cfg`` in ``model``."""
    for name, module in model.named_modules():
        init_cfg = getattr(module, 'init_cfg', None)
        for cfg in init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]:
            if isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained' and \
                    cfg.get('checkpoint'):
                yield name, module, dict(cfg)


def _with_prefix(state_dict: Mapping, prefix: Optional[str]) -> Mapping:
    """The part of ``state_dict`` under ``prefix`` (as mmengine's ``PretrainedInit``)."""
    if not prefix:
        return state_dict
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


def check_pretrained_inits(model: nn.Module,
                           settings: Optional[WeightsCheckSettings] = None) -> List[str]:
    """Check the checkpoint of every ``Pretrained`` ``init_cfg`` of ``model`` against the
    module it initialises, before ``init_weights`` loads it.

    Returns:
        list: The checkpoints checked.
    """
    checked = []
    for name, module, cfg in pretrained_inits(model):
        checkpoint = read_checkpoint_file(cfg['checkpoint'], 'cpu')
        prefix = cfg.get('prefix')  # mmengine revises keys only without a prefix
        state_dict = _with_prefix(model_state_dict(checkpoint, () if prefix else REVISE_KEYS),
                                  prefix)
        check_state_dict(module, state_dict,
                         f"{cfg['checkpoint']} (init_cfg of {name or 'the model'})", settings)
        checked.append(cfg['checkpoint'])
    return checked
