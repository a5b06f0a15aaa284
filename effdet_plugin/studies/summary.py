"""The one summary/plot path of the studies: rows of a results file read back, mean and spread
over seeds, seed-paired differences to a baseline with t-based confidence intervals, markdown
tables, and the two plot kinds (a metric against a size or share with error bars; a metric
against the training iteration, one panel per group).
"""
import statistics
import textwrap
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

#: One point of a plotted series: x, mean, spread (error bar / band) and an optional label.
Point = Tuple[float, float, float, Optional[str]]


def parse_rows(rows: Iterable[Dict[str, str]],
               text: Sequence[str] = ()) -> List[Dict[str, object]]:
    """Results-file rows with numbers parsed: whole numbers as ``int``, others as ``float``,
    empty cells as None; columns in ``text`` (and cells that are no number) stay strings."""
    out = []
    for row in rows:
        parsed: Dict[str, object] = {}
        for key, value in row.items():
            parsed[key] = value if key in text else _number(value)
        out.append(parsed)
    return out


def _number(value: str):
    if value == '':
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def format_markdown(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows])


def fmt(value: Optional[float], digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; ``-`` for None and nan."""
    return '-' if value is None or value != value else f'{value:.{digits}f}'


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (nan for one value)."""
    return (statistics.fmean(values),
            statistics.stdev(values) if len(values) > 1 else float('nan'))


def mean_ci(values: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """Mean and the half-width of its t-based confidence interval (nan for one value)."""
    from scipy import stats

    mean, std = mean_std(values)
    if len(values) < 2:
        return mean, std
    return mean, float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * std / len(values)**0.5


def summarise(rows: Sequence[Dict[str, object]], by: Sequence[str], metrics: Sequence[str],
              keep: Optional[Sequence[str]] = None, seed: str = 'seed',
              baseline: Optional[Dict[str, object]] = None,
              paired: Optional[str] = None) -> List[Dict[str, object]]:
    """One summary per group of rows that agree on the ``by`` columns (first-seen order).

    Args:
        rows: Parsed result rows, one per run (and seed).
        by: Columns that make a group, e.g. ``('name', )`` or ``('fraction', 'mode')``.
        metrics: Columns averaged over the group; rows without a value are left out.
        keep: Columns copied from the group's first row; None: all of them.
        seed: The column that pairs runs of two groups.
        baseline: Values of some ``by`` columns naming the baseline group, e.g.
            ``dict(mode='scratch')``; each other group is compared with the baseline group
            that agrees with it on the remaining ``by`` columns.
        paired: The metric compared with the baseline; defaults to the first of ``metrics``.

    Returns:
        list[dict]: The kept columns, the ``by`` values, ``n`` (runs), and per metric its
        mean (under the metric's name) and ``<metric>_std`` (nan for one run); with a
        baseline, groups that have seeds in common with it add ``diff`` (mean seed-paired
        difference), ``diff_ci`` (half-width of its t-based 95% interval, nan for one pair)
        and ``pairs``.
    """
    groups: Dict[tuple, List[Dict[str, object]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    paired = paired or metrics[0]
    out = []
    for key, members in groups.items():
        first = members[0]
        summary = dict(first if keep is None else {k: first.get(k) for k in keep})
        summary.update(zip(by, key), n=len(members))
        for metric in metrics:
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            mean, std = mean_std(values) if values else (None, float('nan'))
            summary.update({metric: mean, f'{metric}_std': std})
        base_key = _baseline_key(by, key, baseline)
        if base_key is not None and base_key != key and base_key in groups:
            against = {m[seed]: m[paired] for m in groups[base_key]}
            diffs = [float(m[paired]) - float(against[m[seed]]) for m in members
                     if m[seed] in against]
            if diffs:
                summary['diff'], summary['diff_ci'] = mean_ci(diffs)
                summary['pairs'] = len(diffs)
        out.append(summary)
    return out


def _baseline_key(by: Sequence[str], key: tuple,
                  baseline: Optional[Dict[str, object]]) -> Optional[tuple]:
    if not baseline:
        return None
    return tuple(baseline.get(k, v) for k, v in zip(by, key))


def format_diff(summary: Dict[str, object]) -> str:
    """``+0.200 [-0.048, +0.448]`` (difference and its interval), ``-`` without one."""
    if 'diff' not in summary:
        return '-'
    diff, ci = summary['diff'], summary['diff_ci']
    if ci != ci:
        return f'{diff:+.3f} (1 pair: no CI)'
    return f'{diff:+.3f} [{diff - ci:+.3f}, {diff + ci:+.3f}]'


def plot_series(series: Dict[str, Sequence[Point]], out: str, xlabel: str, ylabel: str,
                title: str) -> str:
    """One line per series with error bars (a spread of nan draws none), each point
    annotated with its label when it has one; saved as a PNG at ``out``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, points in series.items():
        x, y, err, labels = zip(*points)
        ax.errorbar(x, y, yerr=[0.0 if e != e else e for e in err], marker='o', capsize=3,
                    label=str(name))
        for px, py, label in zip(x, y, labels):
            if label:
                ax.annotate(label, (px, py), fontsize=7, textcoords='offset points',
                            xytext=(3, 3))
    _finish(fig, ax, xlabel, ylabel, title)
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_panels(panels: Dict[str, Dict[str, Sequence[Point]]], out: str, xlabel: str,
                ylabel: str, title: str) -> str:
    """One panel per entry of ``panels`` (sharing the y axis), one line per series with a
    band of +- its spread, e.g. AP against the iteration per share of the data."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False,
                             sharey=True)
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for name, points in series.items():
            x, y, err, _ = zip(*points)
            err = [0.0 if e != e else e for e in err]
            ax.plot(x, y, marker='o', label=str(name))
            ax.fill_between(x, [a - e for a, e in zip(y, err)], [a + e for a, e in zip(y, err)],
                            alpha=0.2)
        _finish(fig, ax, xlabel, '', panel)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 90), fontsize=9)
    return _save(fig, out)


def pyplot():
    """matplotlib's pyplot on the headless Agg backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 90), fontsize=9)  # long titles: wrap, not cut
    ax.grid(alpha=0.3)


def _save(fig, out: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

