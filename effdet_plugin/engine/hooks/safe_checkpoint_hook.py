"""mmengine's CheckpointHook, made crash-safe: a kill at any moment leaves a resumable run.

mmengine 0.10.7's ``CheckpointHook`` deletes the oldest kept checkpoint (and the previous
``best_*.pth``) *before* writing the new one, writes it straight into its final name and
rewrites ``last_checkpoint`` in place: with ``max_keep_ckpts=1`` a kill during the write loses
every checkpoint and leaves ``last_checkpoint`` pointing at a missing or truncated file.
A full disk ended in a bare ``OSError: [Errno 28]`` naming no file.
"""
import os
import os.path as osp
from typing import Callable, List, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...checkpoint.atomic_io import DiskFullError, atomic_write, leftover_temp_files
from .non_finite_loss_hook import check_finite_state

LAST_CHECKPOINT = 'last_checkpoint'


class _RuntimeInfo:
    """The message hub's runtime info entries selected by ``selected(key)``, to put back."""

    def __init__(self, hub, selected: Callable[[str], bool]) -> None:
        self.hub, self.selected = hub, selected
        self.saved = {k: v for k, v in hub.runtime_info.items() if selected(k)}

    def restore(self) -> None:
        for key in [k for k in self.hub.runtime_info if self.selected(k)]:
            self.hub.runtime_info.pop(key)
        for key, value in self.saved.items():
            self.hub.update_info(key, value)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` (same arguments) that never loses a checkpoint.

    - Every checkpoint is written to a temporary file in the same directory, flushed, fsynced
      and renamed into place (the ``'local_atomic'`` file backend of :mod:`..atomic_io`).
    - ``last_checkpoint`` is rewritten, atomically as well, only once the new file is
      complete. It names the file relative to the work dir, so that a work dir (or the clone
      holding it) still resumes after a move: read it with :func:`latest_checkpoint`
      (mmengine's ``find_latest_checkpoint`` would take the name relative to the current
      directory). Outdated checkpoints (``max_keep_ckpts``) and the previous ``best_*.pth`` are
      deleted only after that.
    - A checkpoint whose weights or buffers (BatchNorm statistics, the EMA copy) hold NaN/inf
      is not written: :class:`~..weights_check.NonFiniteWeightsError` names the tensors and
      the checkpoints already written are kept.
    - A checkpoint that does not fit on the disk raises :class:`~..atomic_io.DiskFullError`
      naming the file, the space needed and left, the checkpoint kept and how to go on.
    - Temporary files left by a killed run are deleted when training starts.

    Args:
        *args: See :class:`~mmengine.hooks.CheckpointHook`.
        **kwargs: See :class:`~mmengine.hooks.CheckpointHook`. ``backend_args`` defaults to
            ``dict(backend='local_atomic')`` for local directories.
    """

    def __init__(self, *args, **kwargs) -> None:
        out_dir = kwargs.get('out_dir')
        local = out_dir is None or '://' not in str(out_dir)
        if local and kwargs.get('backend_args') is None and \
                kwargs.get('file_client_args') is None:
            kwargs['backend_args'] = dict(backend='local_atomic')
        super().__init__(*args, **kwargs)
        self._deferred: Optional[List[str]] = None

    def before_train(self, runner) -> None:
        """Set up like CheckpointHook, then delete temporary files of killed writers."""
        super().before_train(runner)
        if is_main_process() and osp.isdir(self.out_dir):
            for path in leftover_temp_files(self.out_dir):
                print_log(f'Deleting {path}: a checkpoint write interrupted by a crash.',
                          logger='current')
                os.remove(path)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write weights or buffers holding NaN/inf.

        Runs after the other hooks (VERY_LOW priority), so it sees what is really written,
        e.g. the EMA weights that ``EMAHook`` swaps into ``state_dict``.
        """
        states = {key: checkpoint[key] for key in ('state_dict', 'ema_state_dict')
                  if key in checkpoint}
        meta = checkpoint.get('meta', {})
        check_finite_state(
            states, f'Checkpoint of epoch {meta.get("epoch")}, iteration {meta.get("iter")} '
            f'not written, the checkpoints written before are kept{self._kept()}')

    def _kept(self) -> str:
        return f' (latest kept: {self.last_ckpt})' if self.last_ckpt else ''

    def _disk_full(self, error: DiskFullError) -> DiskFullError:
        """``error`` with what is kept and how to go on."""
        return DiskFullError(
            f'Checkpoint not written: {error}. The checkpoints written before are '
            f'kept{self._kept()}. Free space on that disk (or lower max_keep_ckpts), then '
            'continue the run with tools/train.py --resume, or train into another --work-dir',
            error.errno)

    def _remove(self, path: str) -> None:
        """Delete a checkpoint now, or at the end of the current save (see _save_*)."""
        if self._deferred is not None:
            self._deferred.append(path)
        elif self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints are directories
            self.file_backend.rmtree(path)

    def _remove_deferred(self, keep: List[Optional[str]]) -> None:
        deferred, self._deferred = self._deferred or [], None
        for path in deferred:
            if path not in keep:
                self._remove(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """CheckpointHook's logic, with the previous best deleted after the new one is written
        (CheckpointHook deletes it first)."""
        if not self.save_best or not hasattr(self, 'file_backend'):
            return  # no best to keep, or validation outside training (before_train not run)
        self._deferred = []
        saved_info = _RuntimeInfo(runner.message_hub, lambda key: key.startswith('best_'))
        saved_paths = (getattr(self, 'best_ckpt_path', None),
                       dict(getattr(self, 'best_ckpt_path_dict', {})))
        # CheckpointHook removes the old best through file_backend.remove/rmtree: route them
        # to the deferred list for the duration of the call.
        self.file_backend.remove = self.file_backend.rmtree = self._remove
        try:
            super()._save_best_checkpoint(runner, metrics)
        except BaseException as e:
            # a failed save deletes nothing, and the previous best stays the best
            self._deferred = None
            self.best_ckpt_path, self.best_ckpt_path_dict = saved_paths
            saved_info.restore()
            if isinstance(e, DiskFullError):
                raise self._disk_full(e) from e
            raise
        finally:
            del self.file_backend.remove, self.file_backend.rmtree
        best = [getattr(self, 'best_ckpt_path', None)] + list(
            getattr(self, 'best_ckpt_path_dict', {}).values())
        self._remove_deferred(best + [self.last_ckpt])

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """Write the checkpoint of ``step``, then ``last_checkpoint``, then delete outdated ones.

        The message hub records the new ``keep_ckpt_ids``/``last_ckpt`` before the write (the
        checkpoint carries them for resuming) and gets the old values back if it fails;
        ``self.last_ckpt`` changes only after the write.
        """
        hub = runner.message_hub
        saved_info = _RuntimeInfo(hub, lambda key: key in ('keep_ckpt_ids', 'last_ckpt'))
        saved_ids = list(getattr(self, 'keep_ckpt_ids', []))
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.file_backend.join_path(
                    self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft())))
            self.keep_ckpt_ids.append(step)
            hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        ckpt_path = self.file_backend.join_path(self.out_dir, ckpt_filename)
        hub.update_info('last_ckpt', ckpt_path)
        try:
            runner.save_checkpoint(
                self.out_dir, ckpt_filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except BaseException as e:
            if self.max_keep_ckpts > 0:
                self.keep_ckpt_ids.clear()
                self.keep_ckpt_ids.extend(saved_ids)
            saved_info.restore()
            if isinstance(e, DiskFullError):
                raise self._disk_full(e) from e
            raise
        self.last_ckpt = ckpt_path
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, LAST_CHECKPOINT),
                     _name_in(runner.work_dir, self.last_ckpt))
        for path in outdated:
            self._remove(path)


def _name_in(work_dir: str, path: str) -> str:
    """``path`` relative to ``work_dir`` when it lies inside it, else as it is."""
    if '://' in path:
        return path
    relative = osp.relpath(path, work_dir)
    return path if relative.startswith('..') else relative


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``<work_dir>/last_checkpoint`` names (a name relative to the work dir,
    as :class:`SafeCheckpointHook` writes it, or an absolute path, as mmengine's
    ``CheckpointHook`` does), or None when there is no such file."""
    path = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return osp.join(work_dir, f.read().strip())  # an absolute name stays as it is


def use_safe_checkpoint_hook(cfg) -> None:
    """Make ``default_hooks.checkpoint`` of a config a :class:`SafeCheckpointHook` where it is
    mmengine's ``CheckpointHook`` (same arguments), as tools/train.py does for every config."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook', CheckpointHook):
        hook['type'] = 'SafeCheckpointHook'
