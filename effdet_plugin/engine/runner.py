"""``CheckedRunner``: mmengine's Runner whose every weight load goes through the weights check.

Selected with ``runner_type = 'CheckedRunner'`` (tools/train.py and tools/test.py set it for
every config that names no runner of its own; it is then in the dumped config). Compared with
mmengine's Runner:

- ``load_from``, ``--resume`` and tools/test.py's checkpoint are read by
  :func:`~effdet_plugin.checkpoint.loading.read_checkpoint_file` (weights-only, mmengine's
  types allow-listed for that read only) and checked by
  :func:`~effdet_plugin.checkpoint.loading.check_checkpoint` before the hooks
  (``EMAHook`` copies ``state_dict`` / ``ema_state_dict`` into its EMA model) or the model
  get them: NaN/inf, or a checkpoint that does not fit, stops the load with one message.
- A ``Pretrained`` ``init_cfg`` is checked against the module it initialises before
  ``init_weights`` loads it (mmengine's ``PretrainedInit`` then loads it, allow-list active).
- A resumed optimizer state must fit the parameters.
- A resume is checked before the Runner is built (:meth:`from_cfg`): weights, EMA weights
  and optimizer state against the model and optimizer of the config. A resume that does not
  fit stops before the Runner creates its log dir or overwrites the dumped config.

Thresholds: the config's ``weights_check = dict(min_loaded=0.9, finite=True)``
(:class:`~effdet_plugin.checkpoint.weights_check.WeightsCheckSettings`).
"""
import copy
from typing import Callable, Optional, Union

from mmengine.config import Config
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RUNNERS, DefaultScope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model
from torch import nn

from ..checkpoint.compat import mmengine_globals_allowed
from ..checkpoint.loading import (
    REVISE_KEYS,
    check_checkpoint,
    check_pretrained_inits,
    read_checkpoint_file,
)
from ..checkpoint.weights_check import (
    WeightsCheckSettings,
    WeightsMismatchError,
    check_optimizer_state,
    optimizer_mismatch_message,
    unwrap_model,
)
from .hooks.safe_checkpoint_hook import latest_checkpoint


def resume_checkpoint_path(cfg: Config) -> Optional[str]:
    """The checkpoint a config with ``resume=True`` resumes from, as mmengine picks it: its
    ``load_from``, else the work dir's ``last_checkpoint`` (None: training starts anew)."""
    if not cfg.get('resume'):
        return None
    return cfg.get('load_from') or latest_checkpoint(cfg.work_dir)


def _optimizer_for(model: nn.Module, optim_wrapper_cfg: dict):
    """The torch optimizer ``optim_wrapper_cfg`` builds for ``model`` (its constructor and
    ``paramwise_cfg`` decide the parameter groups), in a plain ``OptimWrapper``: mixed
    precision wrappers need a device. None for configs with several optimizers."""
    cfg = copy.deepcopy(dict(optim_wrapper_cfg))
    if 'optimizer' not in cfg:
        return None
    constructor = dict(type=cfg.pop('constructor', 'DefaultOptimWrapperConstructor'),
                       optim_wrapper_cfg=dict(type='OptimWrapper', optimizer=cfg['optimizer']),
                       paramwise_cfg=cfg.pop('paramwise_cfg', None))
    return OPTIM_WRAPPER_CONSTRUCTORS.build(constructor)(model).optimizer


def check_resume(cfg: Config, settings: WeightsCheckSettings) -> Optional[str]:
    """Check the checkpoint a config resumes from against a model and optimizer built from
    the config, on the CPU, before any Runner exists.

    Returns:
        str, optional: The checkpoint checked (None when there is none to resume from).

    Raises:
        CheckpointReadError, NonFiniteWeightsError, WeightsMismatchError: See
            :mod:`effdet_plugin.checkpoint`.
    """
    filename = resume_checkpoint_path(cfg)
    if filename is None:
        return None
    checkpoint = read_checkpoint_file(filename)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None and isinstance(model_cfg, dict):
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(model_cfg)
        check_checkpoint(model, checkpoint, filename, settings)
        optimizer = _optimizer_for(model, cfg.optim_wrapper) \
            if 'optimizer' in checkpoint and cfg.get('optim_wrapper') else None
    if optimizer is not None:
        try:
            optimizer.load_state_dict(checkpoint['optimizer'])
        except (ValueError, KeyError) as e:  # parameter groups of other sizes
            raise WeightsMismatchError(optimizer_mismatch_message(
                filename, model, f'its parameter groups differ ({e})')) from e
        check_optimizer_state(optimizer, model, filename)
    return filename


@RUNNERS.register_module()
class CheckedRunner(Runner):
    """:class:`~mmengine.runner.Runner` (same arguments) that checks every checkpoint it
    loads; see the module docstring."""

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'CheckedRunner':
        """Check the resume checkpoint (if any), then build the Runner as mmengine does."""
        check_resume(cfg, WeightsCheckSettings.from_cfg(cfg))
        return super().from_cfg(cfg)

    @property
    def weights_check(self) -> WeightsCheckSettings:
        """The thresholds of the config's ``weights_check``."""
        return WeightsCheckSettings.from_cfg(self.cfg)

    def _init_model_weights(self) -> None:
        """Check every ``Pretrained`` ``init_cfg`` checkpoint, then initialise as mmengine."""
        check_pretrained_inits(unwrap_model(self.model), self.weights_check)
        with mmengine_globals_allowed():
            super()._init_model_weights()

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = list(REVISE_KEYS)) -> dict:
        """mmengine's ``Runner.load_checkpoint``, reading and checking the checkpoint before
        the ``after_load_checkpoint`` hooks and the model get it."""
        checkpoint = read_checkpoint_file(filename, map_location)
        check_checkpoint(self.model, checkpoint, filename, self.weights_check, revise_keys)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        _load_checkpoint_to_model(unwrap_model(self.model), checkpoint, strict,
                                  revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def load_or_resume(self) -> None:
        """mmengine's, with an auto-resume (``resume=True``, no ``load_from``) reading the work
        dir's ``last_checkpoint`` as :class:`~.hooks.SafeCheckpointHook` writes it: relative to
        the work dir (mmengine would take it relative to the current directory)."""
        if self._resume and self._load_from is None and not self._has_loaded:
            self._load_from = latest_checkpoint(self.work_dir)
        super().load_or_resume()

    def resume(self, filename: str, *args, **kwargs) -> None:
        """mmengine's ``Runner.resume``, then check that the optimizer state fits."""
        super().resume(filename, *args, **kwargs)
        wrappers = self.optim_wrapper.values() if isinstance(
            self.optim_wrapper, OptimWrapperDict) else [self.optim_wrapper]
        for wrapper in wrappers:
            if hasattr(wrapper, 'optimizer'):
                check_optimizer_state(wrapper.optimizer, self.model, filename)
