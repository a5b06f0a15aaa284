"""Tables and plots of a transfer evaluation, through the studies' summary path: one row per
run, mean +- std per (fraction, iteration, starting point) with the seed-paired difference to
``scratch``, AP against the iteration and against the share of the training images."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from .. import summary as stats

# (metric key, column title), in table order; a column appears when any run reports it.
COLUMNS = (('coco/bbox_mAP', 'bbox AP'), ('coco/bbox_mAP_50', 'bbox AP50'),
           ('coco/segm_mAP', 'segm AP'), ('coco/segm_mAP_50', 'segm AP50'),
           ('semseg/mIoU', 'mIoU'))
RUN_KEY = ('mode', 'fraction', 'seed')
#: Columns of runs.csv that hold text.
TEXT_COLUMNS = ('mode', 'weights', 'label', 'ann_file', 'commit')


def _metric_columns(rows: Sequence[dict]) -> List[Tuple[str, str]]:
    return [(key, title) for key, title in COLUMNS if any(r.get(key) is not None for r in rows)]


def final_evaluations(rows: Sequence[dict], weights: str) -> List[dict]:
    """Per run, its last evaluation of ``weights``."""
    last: Dict[tuple, dict] = {}
    for row in rows:
        if row['weights'] == weights:
            key = tuple(row[k] for k in RUN_KEY)
            if key not in last or row['iter'] >= last[key]['iter']:
                last[key] = row
    return list(last.values())


def runs_table(rows: Sequence[dict], weights: str) -> str:
    """One row per run (its last evaluation), with the commit and thread count that made it
    (blank for runs recorded before those columns existed)."""
    final = final_evaluations(rows, weights)
    columns = _metric_columns(final)
    return stats.format_markdown(
        ['fraction', 'train images', 'mode', 'seed', 'iters'] + [t for _, t in columns] +
        ['train s', 'commit', 'threads'],
        [[f"{r['fraction']:g}", r['train_images'], r['mode'], r['seed'], r['iter']] +
         [stats.fmt(r.get(k)) for k, _ in columns] +
         [f"{r['train_s']:.0f}", r.get('commit') or '-', r.get('threads') or '-']
         for r in final])


def summarise(rows: Sequence[dict], metric: str, weights: str,
              table_iters: Optional[Sequence[int]] = None) -> List[dict]:
    """Per (fraction, iteration, mode): n, mean and std of ``metric`` (and the other table
    metrics), and the seed-paired difference to ``scratch`` with its 95% CI."""
    rows = [r for r in rows if r['weights'] == weights]
    evaluated = sorted({r['iter'] for r in rows})
    iters = [i for i in (table_iters or evaluated[-1:]) if i in evaluated]
    columns = [k for k, _ in _metric_columns(rows)]
    rows = sorted((r for r in rows if r['iter'] in iters),
                  key=lambda r: (r['fraction'], iters.index(r['iter'])))
    return stats.summarise(rows, ('fraction', 'iter', 'mode'), columns, keep=('label', ),
                           baseline=dict(mode='scratch'), paired=metric)


def summary_table(summary: Sequence[dict], metric: str, metric_title: str) -> str:
    columns = [(k, t) for k, t in COLUMNS if any(s.get(k) is not None for s in summary)]
    return stats.format_markdown(
        ['fraction', 'iters', 'mode', 'what is trained', 'seeds'] +
        [f'{t} mean ± std' for _, t in columns] + [f'Δ {metric_title} vs scratch [95% CI]'],
        [[f"{s['fraction']:g}", s['iter'], s['mode'], s['label'], s['n']] +
         [f"{stats.fmt(s[k])} ± {stats.fmt(s[f'{k}_std'])}" for k, _ in columns] +
         [stats.format_diff(s)] for s in summary])


def plot(rows: Sequence[dict], metric: str, metric_title: str, weights: str,
         out_dir: str) -> List[str]:
    """``ap_vs_iters.png`` (mean +- std over seeds, one panel per fraction) and
    ``ap_vs_fraction.png`` (last evaluation, error bars +- std over seeds)."""
    rows = [r for r in rows if r['weights'] == weights and r.get(metric) is not None]
    panels: Dict[str, Dict[str, list]] = {}
    for s in stats.summarise(sorted(rows, key=lambda r: (r['fraction'], r['iter'])),
                             ('fraction', 'mode', 'iter'), [metric]):
        panel = panels.setdefault(f"{s['fraction']:.0%} of the training images", {})
        panel.setdefault(s['mode'], []).append((s['iter'], s[metric], s[f'{metric}_std'], None))
    which = f'({weights.upper()} weights)'
    curves = stats.plot_panels(panels, osp.join(out_dir, 'ap_vs_iters.png'), 'iteration',
                               f'{metric_title} {which}', 'mean ± std over seeds')
    series: Dict[str, list] = {}
    final = sorted(final_evaluations(rows, weights), key=lambda r: r['fraction'])
    for s in stats.summarise(final, ('mode', 'fraction'), [metric]):
        series.setdefault(s['mode'], []).append(
            (s['fraction'], s[metric], s[f'{metric}_std'], None))
    label_efficiency = stats.plot_series(
        series, osp.join(out_dir, 'ap_vs_fraction.png'), 'share of the training images',
        f'{metric_title}, last iteration {which}', 'error bars: ± std over seeds')
    return [curves, label_efficiency]
