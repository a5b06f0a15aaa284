"""Many training runs from one config: schedule rescaling, train + evaluate, measurements,
resumable result files and a progress bar with ETA.

Used by the analysis tools that train a family of models (tools/analysis/scaling_search.py,
scaling_sweep.py); each run is one mmengine ``Runner`` built from a modified copy of the config.
"""
import copy
import csv
import json
import os
import os.path as osp
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
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


class LastMetricsHook(Hook):
    """Keep the metrics of the latest validation (the train loop's, at its last iteration)."""
    priority = 'LOWEST'

    def __init__(self) -> None:
        self.metrics: Optional[Dict[str, float]] = None

    def after_val_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        self.metrics = dict(metrics or {})


class ProgressHook(Hook):
    """Advance a tqdm bar by one per training iteration (one bar over many runs)."""
    priority = 'VERY_LOW'

    def __init__(self, bar) -> None:
        self.bar = bar

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.bar.update(1)


def run_config(cfg: Config, work_dir: str, seed: int, hooks: Sequence[Hook] = (),
               quiet: bool = True) -> Tuple[torch.nn.Module, Dict[str, float], float]:
    """Train ``cfg`` in ``work_dir`` with ``seed``; evaluate it once, at the end.

    Returns:
        tuple: the trained model, the validation metrics (EMA weights when the config has an
        EMAHook) and the training time in seconds.
    """
    from mmengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    # a unique name per run keeps mmengine's global logger/visualizer instances apart
    cfg.experiment_name = f'{osp.basename(work_dir)}_{time.strftime("%Y%m%d_%H%M%S")}_{seed}'
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=seed)
    if quiet:
        cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    last = LastMetricsHook()
    for hook in [*hooks, last]:
        runner.register_hook(hook)
    start = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - start
    # mmengine's loop validates at its last iteration; evaluate here only if it did not
    metrics = last.metrics if last.metrics is not None else runner.val()
    return runner.model, {k: float(v) for k, v in metrics.items()}, train_s


def measure(model: torch.nn.Module, shape: Sequence[int], latency_time: float = 1.0,
            part: str = 'backbone') -> Dict[str, float]:
    """Parameters, FLOPs (mmengine's counter, one multiply-add = one FLOP) of the network
    forward on one ``(H, W)`` image, the FLOPs of ``model.<part>``, and the median latency
    (ms) of that forward, timed by ``torch.utils.benchmark`` for ``latency_time`` seconds
    (0 skips it)."""
    from torch.utils import benchmark

    model = model.eval()
    inputs = torch.zeros(1, 3, *shape)
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (inputs, ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops = analyzer.total()
        part_flops = analyzer.by_module().get(part, 0)
    result = dict(params=sum(p.numel() for p in model.parameters()), flops=flops,
                  **{f'{part}_flops': part_flops})
    if latency_time > 0:
        with torch.inference_mode():
            for _ in range(2):  # warm-up: allocator and first-call costs
                model(inputs)
            timer = benchmark.Timer(stmt='model(inputs)', globals=dict(model=model, inputs=inputs))
            result['latency_ms'] = 1e3 * timer.blocked_autorange(min_run_time=latency_time).median
    return result


def time_interleaved(models: Dict[object, Tuple[torch.nn.Module, Sequence[int]]],
                     rounds: int = 5, round_time: float = 0.3) -> Dict[object, float]:
    """Median latency (ms) of each model's batch-1 forward on a zero ``(H, W)`` image, timed
    in ``rounds`` interleaved rounds (every model once per round, ``round_time`` seconds
    each), so that a slow spell of the machine touches all models alike rather than one."""
    import statistics

    from torch.utils import benchmark

    timers = {}
    with torch.inference_mode():
        for key, (model, shape) in models.items():
            inputs = torch.zeros(1, 3, *shape)
            model.eval()
            for _ in range(2):  # warm-up: allocator and first-call costs
                model(inputs)
            timers[key] = benchmark.Timer(stmt='model(inputs)',
                                          globals=dict(model=model, inputs=inputs))
        samples: Dict[object, List[float]] = {key: [] for key in models}
        for _ in range(rounds):
            for key, timer in timers.items():
                samples[key].append(timer.blocked_autorange(min_run_time=round_time).median)
    return {key: 1e3 * statistics.median(times) for key, times in samples.items()}


class ResultsFile:
    """A CSV of finished runs that a rerun continues: a run is done once its row is written.

    The folder also holds ``settings.json``; a rerun with other settings (another config,
    schedule, ...) into the same folder is refused rather than mixed.

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
                    f'{there} there, {now} now); use another --out folder, or delete it to '
                    'start over.')
        else:
            with open(settings_file, 'w') as f:
                json.dump(settings, f, indent=1)
        self.rows: List[Dict[str, str]] = []
        if osp.isfile(self.path):
            with open(self.path, newline='') as f:
                self.rows = [r for r in csv.DictReader(f) if None not in r.values()]

    def _key(self, row: dict) -> Tuple[str, ...]:
        return tuple(str(row[k]) for k in self.key)

    def done(self, **key) -> bool:
        return self._key(key) in {self._key(r) for r in self.rows}

    def append(self, row: Dict[str, object]) -> None:
        """Add a finished run; the whole file is rewritten (new columns allowed), atomically."""
        self.rows.append({k: '' if v is None else str(v) for k, v in row.items()})
        self._write()

    def update(self, column: str, value_of: Callable[[Dict[str, str]], object]) -> None:
        """Set ``column`` of every row to ``value_of(row)`` (rows where it returns None keep
        theirs); the file is rewritten atomically."""
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


def numeric_rows(rows: Iterable[Dict[str, str]]) -> List[Dict[str, object]]:
    """CSV rows with numbers parsed (empty cells -> None)."""
    out = []
    for row in rows:
        parsed: Dict[str, object] = {}
        for k, v in row.items():
            try:
                parsed[k] = float(v) if v != '' else None
            except ValueError:
                parsed[k] = v
        out.append(parsed)
    return out


def format_markdown(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows])


def summarise(rows: Sequence[Dict[str, object]], metric: str,
              group: str = 'name') -> List[Dict[str, object]]:
    """Mean/std of ``metric`` and mean latency over the seeds of each ``group`` value, in
    first-seen order; other columns from the first row of the group."""
    import statistics

    groups: Dict[object, List[Dict[str, object]]] = {}
    for row in rows:
        groups.setdefault(row[group], []).append(row)
    out = []
    for members in groups.values():
        values = [float(m.get(metric) or 0.0) for m in members]
        latencies = [float(m['latency_ms']) for m in members if m.get('latency_ms') is not None]
        out.append(dict(members[0], ap=statistics.fmean(values),
                        ap_std=statistics.stdev(values) if len(values) > 1 else 0.0,
                        seeds=len(values), gflops=float(members[0]['flops']) / 1e9,
                        latency_ms=statistics.fmean(latencies) if latencies else None))
    return out


def tqdm_bar(total: int, desc: str):
    """A tqdm bar (iterations of all pending runs) with rate and ETA."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='it', dynamic_ncols=True, smoothing=0.1)
