"""Training-log curves (tools/analysis/plot_curves.py) on a fake mmengine scalars log."""
import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from effdet_plugin.studies import log_curves as plot_curves


def write_fake_log(run_dir: Path, epochs: int = 3, iters_per_epoch: int = 5) -> Path:
    """Lines as mmengine's LocalVisBackend writes them for an epoch-based run."""
    vis = run_dir / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines, step = [], 0
    for epoch in range(1, epochs + 1):
        for it in range(iters_per_epoch):
            step += 1
            loss_cls, loss_bbox = 1.0 / step, 0.5 / math.sqrt(step)
            lines.append(dict(lr=0.01, data_time=0.01, loss=loss_cls + loss_bbox,
                              loss_cls=loss_cls, loss_bbox=loss_bbox, time=0.1, epoch=epoch,
                              iter=step, memory=100, step=step))
        lines.append({'coco/bbox_mAP': 0.1 * epoch, 'coco/bbox_mAP_50': 0.2 * epoch,
                      'coco/bbox_mAP_s': 0.05 * epoch, 'data_time': 0.01, 'time': 0.05,
                      'step': epoch})
    path = vis / 'scalars.json'
    path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
    return path


def test_load_and_select(tmp_path):
    log = write_fake_log(tmp_path)
    train, val = plot_curves.load_scalars(str(tmp_path))  # a work dir resolves to its log
    assert len(train) == 15 and len(val) == 3
    keys, metrics = plot_curves.select_keys([(train, val)])
    assert keys == ['loss', 'loss_bbox', 'loss_cls']
    assert metrics == ['coco/bbox_mAP']  # the headline metric, not every AP variant
    assert plot_curves.find_scalars_file(str(log)) == str(log)
    assert plot_curves._smooth([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]


def test_plot_writes_png(tmp_path):
    write_fake_log(tmp_path / 'a')
    write_fake_log(tmp_path / 'b')
    out = tmp_path / 'curves.png'
    plot_curves.plot_curves([str(tmp_path / 'a'), str(tmp_path / 'b')], str(out),
                            legend=['a', 'b'], smooth=3, title='fake')
    image = mpimg.imread(out)
    assert image.shape[0] == 450 and image.shape[1] == 1300  # two panels at 100 dpi
    assert image[..., :3].std() > 0.05  # not blank
    with pytest.raises(ValueError, match='legend'):
        plot_curves.plot_curves([str(tmp_path / 'a')], str(out), legend=['a', 'b'])


def test_cli(tmp_path, run_tool):
    write_fake_log(tmp_path)
    out = tmp_path / 'cli.png'
    proc = run_tool('tools/analysis/plot_curves.py', tmp_path, '--keys', 'loss', '--out', out)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 1000
