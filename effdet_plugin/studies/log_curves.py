"""Loss and metric curves of training runs from mmengine's scalar logs, in one PNG (runs
overlaid, e.g. the variants of a study).

mmengine's ``LocalVisBackend`` writes ``<work_dir>/<timestamp>/vis_data/scalars.json``: one
JSON object per line, training lines carrying ``iter`` (global iteration in ``step``),
validation lines carrying the metrics (``step`` is the epoch for epoch-based loops, else the
iteration).

Examples::

    python tools/analysis/plot_curves.py work_dirs/effdet_d0_coco            # latest run
    python tools/analysis/plot_curves.py run_a/ run_b/ --legend a b --out cmp.png
    python tools/analysis/plot_curves.py scalars.json --keys loss loss_cls --smooth 20
"""
import argparse
import glob
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

from .summary import pyplot

Records = List[Dict[str, float]]
# Headline metrics plotted by default: coco/bbox_mAP, coco/segm_mAP, pascal_voc/mAP, ...
DEFAULT_METRIC = re.compile(r'(^|/)(\w+_)?mAP$')
NOT_METRICS = {'step', 'epoch', 'iter', 'time', 'data_time', 'memory', 'lr'}


def find_scalars_file(path: str) -> str:
    """Resolve a json file, a ``<timestamp>`` dir or a work dir (its latest run) to a log."""
    if osp.isfile(path):
        return path
    for pattern in ('scalars.json', 'vis_data/scalars.json', '*/vis_data/scalars.json'):
        found = sorted(glob.glob(osp.join(path, pattern)))
        if found:
            return found[-1]  # timestamped dirs sort chronologically
    raise FileNotFoundError(f'no vis_data/scalars.json under {path}')


def load_scalars(path: str) -> Tuple[Records, Records]:
    """Split a scalars log into (training records, validation records)."""
    train, val = [], []
    with open(find_scalars_file(path)) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                (train if 'iter' in record else val).append(record)
    return train, val


def _smooth(values: Sequence[float], window: int) -> List[float]:
    """Trailing moving average, so that the curve does not look into the future."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _series(records: Records, key: str) -> Tuple[List[float], List[float]]:
    points = [(r['step'], r[key]) for r in records if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def select_keys(runs: Sequence[Tuple[Records, Records]],
                keys: Optional[Sequence[str]] = None,
                metrics: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """Training keys (default: all losses) and validation keys (default: headline mAPs,
    or every metric when there is none) to plot."""
    if keys is None:
        keys = sorted({k for train, _ in runs for r in train for k in r if 'loss' in k})
    if metrics is None:
        found = sorted({k for _, val in runs for r in val for k in r} - NOT_METRICS)
        metrics = [k for k in found if DEFAULT_METRIC.search(k)] or found
    return list(keys), list(metrics)


def plot_curves(logs: Sequence[str],
                out: str,
                keys: Optional[Sequence[str]] = None,
                metrics: Optional[Sequence[str]] = None,
                legend: Optional[Sequence[str]] = None,
                smooth: int = 1,
                title: Optional[str] = None) -> str:
    """Draw training losses (left) and validation metrics (right) of ``logs`` into ``out``.

    Args:
        logs (Sequence[str]): Scalar logs, run dirs or work dirs; several are overlaid.
        out (str): Output PNG path.
        keys (Sequence[str], optional): Training keys. Defaults to every key containing
            ``loss``.
        metrics (Sequence[str], optional): Validation keys. Defaults to headline mAPs
            (``coco/bbox_mAP``, ...), or every metric if there is none.
        legend (Sequence[str], optional): One name per log. Defaults to the log paths.
        smooth (int): Moving-average window for training curves. Defaults to 1 (raw).
        title (str, optional): Figure title. Defaults to None.

    Returns:
        str: ``out``.
    """
    legend = list(legend) if legend else list(logs)
    if len(legend) != len(logs):
        raise ValueError(f'{len(logs)} logs but {len(legend)} legend entries')
    if smooth < 1:
        raise ValueError(f'smooth must be >= 1, got {smooth}')
    runs = [load_scalars(log) for log in logs]
    keys, metrics = select_keys(runs, keys, metrics)
    if not keys and not metrics:
        raise ValueError(f'nothing to plot in {list(logs)}')

    plt = pyplot()  # headless: never needs a display
    from matplotlib.ticker import MaxNLocator

    panels = [p for p in (('train', keys), ('val', metrics)) if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (split, split_keys) in zip(axes[0], panels):
        for (train, val), name in zip(runs, legend):
            records = train if split == 'train' else val
            for key in split_keys:
                steps, values = _series(records, key)
                if not steps:
                    continue
                label = key if len(runs) == 1 else f'{name}: {key}'
                if split == 'train':
                    ax.plot(steps, _smooth(values, smooth), label=label, linewidth=1)
                else:
                    ax.plot(steps, values, marker='o', label=label)
        by_epoch = any('epoch' in r for train, _ in runs for r in train[:1])
        ax.set_xlabel('iteration' if split == 'train' or not by_epoch else 'epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel('loss' if split == 'train' else 'metric')
        ax.set_title('training losses' if split == 'train' else 'validation metrics')
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot loss / metric curves to a PNG')
    parser.add_argument('logs', nargs='+', help='scalars.json files, run dirs or work dirs')
    parser.add_argument('--keys', nargs='+', help='training keys (default: all losses)')
    parser.add_argument('--metrics', nargs='+', help='validation keys (default: mAPs)')
    parser.add_argument('--legend', nargs='+', help='one name per log')
    parser.add_argument('--smooth', type=int, default=1, help='moving-average window')
    parser.add_argument('--title', help='figure title')
    parser.add_argument('--out', default='curves.png', help='output PNG')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    out = plot_curves(args.logs, args.out, args.keys, args.metrics, args.legend, args.smooth,
                      args.title)
    print(f'saved {out}')

