"""The one experiment runner of the studies: train a config variant with a seed and an
iteration budget, keep every evaluation, and record finished runs in a results file that a
rerun continues, with one progress bar (rate and ETA) over all pending runs.

A study describes its runs as :class:`Job` s (the results-file key of the run and a label) and
gives :func:`run_jobs` a function that trains one job (usually through :func:`train`) and
returns its result rows; everything else (skipping finished runs, progress, atomic writes,
splitting the runs over processes with ``--shard``) is here.
"""
import argparse
import copy
import csv
import fcntl
import json
import numbers
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook


def rescale_schedule(cfg: Config, iters: int) -> None:
    """Run ``iters`` iterations: the iteration-based LR schedule keeps its proportions
    (warm-up, cosine end); evaluation and the checkpoint happen once, at the end."""
    train_cfg = cfg.train_cfg
    if train_cfg.get('type') != 'IterBasedTrainLoop' or 'max_iters' not in train_cfg:
        raise ValueError('these runs need an iteration-based config (train_cfg.type='
                         f"'IterBasedTrainLoop'), got train_cfg={dict(train_cfg)}")
    if iters < 1:
        raise ValueError(f'--iters must be >= 1, got {iters}')
    old = train_cfg.max_iters

    def at(value: int) -> int:
        return iters if value >= old else min(iters - 1, max(1, round(value * iters / old)))

    schedulers = cfg.get('param_scheduler') or []
    for sched in [schedulers] if isinstance(schedulers, dict) else schedulers:
        if sched.get('by_epoch', True):
            raise ValueError(f'only iteration-based param schedulers can be rescaled: {sched}')
        begin = at(sched['begin']) if sched.get('begin', 0) > 0 else 0
        sched.update(begin=begin, end=max(at(sched.get('end', old)), begin + 1))
        if 'T_max' in sched:
            sched['T_max'] = sched['end'] - begin
    train_cfg.update(max_iters=iters, val_interval=iters)  # one evaluation, at the end
    if cfg.get('default_hooks', {}).get('checkpoint') is not None:
        cfg.default_hooks.checkpoint.update(interval=iters, save_best=None)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and shows every option's default."""


def study_parser(doc: str, config_help: str) -> argparse.ArgumentParser:
    """A study's parser: its module ``doc`` as description (first paragraph) and epilog, every
    default shown, and the positional ``config``."""
    parser = argparse.ArgumentParser(
        description=doc.split('\n\n')[0], formatter_class=_Formatter,
        epilog='\n\n'.join(doc.split('\n\n')[1:]))
    parser.add_argument('config', help=config_help)
    return parser


def add_study_args(parser: argparse.ArgumentParser, work_dir: str) -> None:
    """The options every study has: ``--work-dir`` (default ``work_dir``), ``--report-only``,
    ``--verbose``, ``--cfg-options`` and the data flags of the tools."""
    from mmengine.config import DictAction

    from ..cli.data_options import add_data_args
    parser.add_argument('--work-dir', default=work_dir,
                        help='one sub-folder per run, plus runs.csv, tables and plots')
    parser.add_argument('--report-only', action='store_true',
                        help='no training: tables and plots of the runs already in runs.csv '
                        '(e.g. of an interrupted study)')
    parser.add_argument('--verbose', action='store_true',
                        help="print mmengine's training logs (always in each run's folder)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides applied to the config before every run')
    parser.add_argument('--shard', type=_shard, metavar='I/N',
                        help='train only every N-th planned run, starting at run I (0-based), '
                        'so that N processes (e.g. one thread each) share one study and one '
                        '--work-dir; the last one to finish writes the full tables, or run '
                        '--report-only after all')
    add_data_args(parser)


def _shard(text: str) -> Tuple[int, int]:
    """``'I/N'`` -> ``(I, N)``, with ``0 <= I < N``."""
    try:
        index, count = (int(part) for part in text.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--shard wants I/N such as 0/2, got {text!r}')
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(
            f'--shard {text}: I must lie in 0..N-1 (the shards of 2 processes are 0/2 and 1/2)')
    return index, count


def load_study_config(path: str, cfg_options: Optional[dict] = None,
                      work_dir: Optional[str] = None, data_args=None) -> Config:
    """Register mmdet's and the plugin's modules, then read the config as the tools do
    (:func:`effdet_plugin.cli.load_config`: ``--cfg-options``, data flags, work dir)."""
    from mmdet.utils import register_all_modules

    from ..cli import load_config
    register_all_modules()
    return load_config(path, cfg_options, work_dir, data_args=data_args)


def _numbers(metrics: Optional[dict]) -> Dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, numbers.Real)}


class CurveHook(Hook):
    """Records every validation during training as ``(iteration, metrics)``."""
    priority = 'LOWEST'

    def __init__(self) -> None:
        self.points: List[Tuple[int, Dict[str, float]]] = []

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self.points.append((runner.iter, _numbers(metrics)))


class ProgressHook(Hook):
    """Advance a tqdm bar by one per training iteration (one bar over many runs)."""
    priority = 'VERY_LOW'

    def __init__(self, bar) -> None:
        self.bar = bar

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.bar.update(1)


@dataclass
class Trained:
    """What :func:`train` returns.

    Attributes:
        runner: The mmengine Runner (its model holds the trained weights).
        curve (list): ``(iteration, metrics)`` of every validation, in order; the last one
            scores the final weights (EMA weights when the config has an ``EMAHook``).
        train_s (float): Training time in seconds.
        ema (bool): Whether an ``EMAHook`` swapped averaged weights in for the validations.
    """
    runner: object
    curve: List[Tuple[int, Dict[str, float]]]
    train_s: float
    ema: bool = False

    @property
    def model(self) -> torch.nn.Module:
        return self.runner.model

    @property
    def metrics(self) -> Dict[str, float]:
        """The metrics of the last validation."""
        return dict(self.curve[-1][1])


def train(cfg: Config, work_dir: str, seed: int, bar=None, quiet: bool = True) -> Trained:
    """Train ``cfg`` in ``work_dir`` with ``seed`` through the tools' runner builder
    (:func:`effdet_plugin.cli.build_runner`: the config's weight checks apply); the final
    weights are always evaluated (mmengine's loop validates at its last iteration, else here).
    """
    from ..cli import build_runner

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    # a unique name per run keeps mmengine's global logger/visualizer instances apart
    cfg.experiment_name = (f'{osp.basename(work_dir)}_{time.strftime("%Y%m%d_%H%M%S")}_'
                           f'{time.perf_counter_ns()}')
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    if quiet:
        cfg.log_level = 'WARNING'
    runner = build_runner(cfg)
    curve = CurveHook()
    runner.register_hook(curve)
    if bar is not None:
        runner.register_hook(ProgressHook(bar))
    start = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - start
    if not curve.points or curve.points[-1][0] != runner.iter:
        runner.val()  # recorded by the curve hook
    ema = any(type(h).__name__ == 'EMAHook' for h in runner.hooks)
    return Trained(runner, curve.points, train_s, ema)


@torch.no_grad()
def evaluate_current_weights(runner) -> Dict[str, float]:
    """Score the weights the model holds now, without the validation hooks (so an
    ``EMAHook`` does not swap its averaged weights in): the raw weights of an EMA run."""
    loop = runner.val_loop
    runner.model.eval()
    for data_batch in loop.dataloader:
        loop.evaluator.process(data_samples=runner.model.val_step(data_batch),
                               data_batch=data_batch)
    return _numbers(loop.evaluator.evaluate(len(loop.dataloader.dataset)))


class ResultsFile:
    """A CSV of finished runs that a rerun continues: a run is done once its rows are written.

    The folder also holds ``settings.json``; a rerun with other settings (another config,
    schedule, ...) into the same folder is refused rather than mixed. Several processes may
    add runs to one file at once (``--shard``): every write holds a lock on ``<name>.lock``
    and first reads back what the others wrote.

    Args:
        out_dir (str): Output folder (created).
        name (str): CSV file name, e.g. ``'sweep.csv'``.
        key (Sequence[str]): Columns identifying a run, e.g. ``('name', 'seed')``.
        settings (dict): What makes results comparable; JSON-serialisable.
    """

    def __init__(self, out_dir: str, name: str, key: Sequence[str], settings: dict) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.path = osp.join(out_dir, name)
        self.key = tuple(key)
        settings_file = osp.join(out_dir, 'settings.json')
        settings = json.loads(json.dumps(settings))  # tuples -> lists, as they are stored
        if osp.isfile(settings_file):
            with open(settings_file) as f:
                stored = json.load(f)
            changed = sorted(k for k in set(stored) | set(settings)
                             if stored.get(k) != settings.get(k))
            if changed:
                there = [stored.get(k) for k in changed]
                now = [settings.get(k) for k in changed]
                raise ValueError(
                    f'{out_dir} holds results made with other settings ({", ".join(changed)}: '
                    f'{there} there, {now} now); use another output folder, or delete it to '
                    'start over.')
        else:
            with open(settings_file, 'w') as f:
                json.dump(settings, f, indent=1)
        self.rows: List[Dict[str, str]] = self._read()

    def _read(self) -> List[Dict[str, str]]:
        if not osp.isfile(self.path):
            return []
        with open(self.path, newline='') as f:
            return [r for r in csv.DictReader(f) if None not in r.values()]

    def reload(self) -> None:
        """Read the file again, with the runs other processes added since."""
        self.rows = self._read()

    def _locked(self):
        """An exclusive lock on the results file, across processes (released on close)."""
        lock = open(f'{self.path}.lock', 'w')
        fcntl.flock(lock, fcntl.LOCK_EX)
        return lock

    def _key(self, row: dict) -> Tuple[str, ...]:
        return tuple(str(row[k]) for k in self.key)

    def done(self, **key) -> bool:
        return self._key(key) in {self._key(r) for r in self.rows}

    def append(self, *rows: Dict[str, object]) -> None:
        """Add the rows of a finished run; the whole file is rewritten (new columns
        allowed), atomically, so a run is in the file with all its rows or not at all. Rows
        other processes wrote meanwhile are kept."""
        with self._locked():
            self.reload()
            self.rows += [{k: '' if v is None else str(v) for k, v in row.items()}
                          for row in rows]
            self._write()

    def update(self, column: str, value_of: Callable[[Dict[str, str]], object]) -> None:
        """Set ``column`` of every row to ``value_of(row)`` (rows where it returns None keep
        theirs); the file is rewritten atomically."""
        with self._locked():
            self.reload()
            for row in self.rows:
                value = value_of(row)
                if value is not None:
                    row[column] = str(value)
            self._write()

    def _write(self) -> None:
        columns: List[str] = []
        for r in self.rows:
            columns += [c for c in r if c not in columns]
        tmp = f'{self.path}.tmp'
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, columns, restval='')
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


@dataclass
class Job:
    """One run of a study.

    Args:
        key (dict): The run's values of the results file's key columns (seed included).
        label (str): What the progress line says about the run.
        iters (int): Iterations it trains (0: nothing to train, e.g. a copied result).
        spec: Whatever the study's run function needs (a config, a point, ...).
    """
    key: Dict[str, object]
    label: str
    iters: int
    spec: object = field(default=None, repr=False)


def run_jobs(jobs: Sequence[Job], results: ResultsFile,
             run: Callable[[Job, object], List[Dict[str, object]]],
             name: str = 'study', detail: str = '',
             shard: Optional[Tuple[int, int]] = None) -> None:
    """Run every job whose key is not in ``results`` yet: ``run(job, bar)`` trains it
    (advancing ``bar`` once per iteration, e.g. with :class:`ProgressHook`) and returns its
    rows, which are added to ``results`` together. One bar over all pending iterations shows
    the rate and the ETA; a first line (``name``: runs, finished ones, iterations,
    ``detail``) and one line per run say what happens.

    ``shard=(i, n)``: only the jobs at positions i, i + n, i + 2n, ... of ``jobs`` (the full
    plan, so that the split does not depend on what is finished); ``results`` is read again
    at the end, with what the other shards finished."""
    mine = list(jobs) if shard is None else list(jobs)[shard[0]::shard[1]]
    results.reload()  # with what other processes finished since it was opened
    pending = [job for job in mine if not results.done(**job.key)]
    iters = sorted({job.iters for job in jobs if job.iters})
    each = f', {iters[0]} iterations each' if len(iters) == 1 else ''
    part = '' if shard is None else f'; shard {shard[0]}/{shard[1]}: {len(mine)} of them'
    print(f'{name}: {len(jobs)} runs{part} ({len(mine) - len(pending)} already in '
          f'{results.path}: not retrained){each}{detail}', flush=True)
    if not pending:
        results.reload()
        return
    bar = _progress_bar(sum(job.iters for job in pending), name)
    try:
        for k, job in enumerate(pending, 1):
            bar.write(f'[{k}/{len(pending)}] {job.label}')
            bar.set_postfix_str(job.label[:40])
            results.append(*run(job, bar))
    finally:
        bar.close()
    results.reload()


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='it', dynamic_ncols=True, smoothing=0.1)


def provenance() -> Dict[str, object]:
    """What produced a result, for its row: the git commit of the code (``+dirty`` with
    uncommitted changes; ``unknown`` outside a git checkout) and torch's CPU thread count."""
    import subprocess

    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=root, text=True, capture_output=True, check=True).stdout
        commit += '+dirty' if dirty.strip() else ''
    except (OSError, subprocess.CalledProcessError):
        commit = 'unknown'
    return dict(commit=commit, threads=torch.get_num_threads())
