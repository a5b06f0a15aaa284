"""Objects small for the model's anchors are found before training, with the upscale factor
that fixes it: the IoU geometry, the shares per class, and the check on generated 8-20 px
shapes through tools/analysis/check_dataset.py."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from effdet_plugin.cli import check_dataset
from effdet_plugin.datasets.checks import anchors
from tests.data_helpers import shape_flags, write_shapes, write_small_shapes

DEMO = 'configs/demo/effdet_lite0_nuclei.py'
REPO = Path(__file__).resolve().parents[2]
# EfficientDet-Lite0's stride-8 level alone: 24 px square anchors centred at 4 + 8k
LITE0_P3 = anchors.AnchorSpec((anchors.AnchorLevel(8.0, 4.0, ((24.0, 24.0), )), ), pos_iou_thr=0.5)
# and its 48 px stride-16 level
TWO_LEVELS = anchors.AnchorSpec(
    LITE0_P3.levels + (anchors.AnchorLevel(16.0, 8.0, ((48.0, 48.0), )), ), 0.5)


def _squares(centers, side):
    centers = np.asarray(centers, dtype=float)
    return np.concatenate([centers - side / 2, centers + side / 2], axis=1)


def test_best_iou_is_the_nearest_grid_anchor():
    # 17 px box centred on an anchor centre: 17^2 / 24^2; shifted by half a cell in x: lower
    boxes = _squares([[36, 36], [40, 36]], 17)
    ious = anchors.best_anchor_iou(boxes, LITE0_P3)
    assert ious[0] == pytest.approx(289 / 576)
    inter = 16.5 * 17  # box x [31.5, 48.5], nearest anchors x [24, 48] or [32, 56]
    assert ious[1] == pytest.approx(inter / (289 + 576 - inter))
    # a box equal to an anchor: IoU 1; an empty input: no IoUs
    assert anchors.best_anchor_iou(_squares([[12, 20]], 24), LITE0_P3)[0] == pytest.approx(1.0)
    assert anchors.best_anchor_iou(np.zeros((0, 4)), LITE0_P3).shape == (0, )


def test_shares_per_class_and_the_factor():
    rng = np.random.RandomState(0)
    centers = rng.uniform(20, 200, (200, 2))
    small = _squares(centers[:100], 11)  # IoU <= 0.21: never matched
    fine = _squares(centers[100:], 26)  # matched wherever it lies
    boxes = np.concatenate([small, fine])
    fit = anchors.anchor_fit(boxes, [0] * 100 + [1] * 100, ['dot', 'blob'], TWO_LEVELS)
    assert fit.objects == 200 and fit.unmatched == pytest.approx(0.5)
    assert fit.per_class == {'dot': (100, 1.0), 'blob': (100, 0.0)}

    # the factor: the smallest candidate after which at most 10% stay unmatched
    def share(factor):
        return (anchors.best_anchor_iou(boxes * factor, TWO_LEVELS) < 0.5).mean()

    assert fit.too_small and fit.factor == 2.0 and share(2.0) <= 0.1
    assert all(share(f) > 0.1 for f in anchors.CANDIDATE_FACTORS if f < 2.0)
    assert fit.unmatched_after == pytest.approx(share(2.0))
    warning, = anchors.anchor_warnings(fit)
    assert '50% of 200 training objects' in warning and 'dot 100%, blob 0%' in warning
    assert '--img-scale-factor 2 ' in warning and 'stride 8, anchors 24-24 px' in warning
    # measured on data already upscaled 1.5x: the flag names the total factor
    assert '--img-scale-factor 3 ' in anchors.anchor_warnings(fit, 1.5)[0]
    assert 'dot 100% of 100' in anchors.format_anchor_fit(fit)
    # objects that fit: no factor, no warning
    fit = anchors.anchor_fit(fine, [1] * 100, ['dot', 'blob'], TWO_LEVELS)
    assert not fit.too_small and fit.factor is None and anchors.anchor_warnings(fit) == []


@pytest.fixture(scope='module')
def small_shapes(tmp_path_factory):
    return write_small_shapes(tmp_path_factory.mktemp('small_shapes'))


def _check(root, *extra, capsys):
    code = check_dataset.main([DEMO, *shape_flags(root, '--classes', 'from-json'),
                               '--samples', '6', '--splits', 'train', 'val', *extra])
    return code, capsys.readouterr().out


def test_warning_fires_on_small_objects_and_names_the_factor(small_shapes, capsys):
    code, out = _check(small_shapes, '--strict', capsys=capsys)
    assert code == 1
    assert 'bbox_head smallest level: stride 8, anchors 24-38 px' in out
    warning = next(line for line in out.splitlines() if 'objects are small' in line)
    share = int(re.search(r'small for the model: (\d+)% of', warning).group(1))
    assert share > 50, warning
    assert re.search(r'disc \d+%, square \d+%', warning), warning
    factor = float(re.search(r'--img-scale-factor ([\d.]+) ', warning).group(1))
    assert factor == 2.0, warning
    # following it: the same check passes
    code, out = _check(small_shapes, '--strict', '--img-scale-factor', str(factor),
                       capsys=capsys)
    assert code == 0 and 'objects are small' not in out, out
    assert 'the anchors match the training objects' in out


def test_no_warning_on_objects_the_anchors_fit(tmp_path, capsys):
    code, out = _check(write_shapes(tmp_path / 'shapes'), '--strict', capsys=capsys)
    assert code == 0 and 'training objects no anchor matches: 0%' in out, out


def test_train_logs_the_warning_before_building_the_model(small_shapes, tmp_path):
    """tools/train.py's steps, in a fresh process as train.py runs them (no registry scope set
    yet): the warning on the console first, then in the run's log."""
    script = f"""
import sys
from mmengine.logging import MMLogger
import effdet_plugin
from effdet_plugin.cli.runner import load_config
from effdet_plugin.cli.size_check import log_to_files, warn_if_objects_small
from tests.data_helpers import data_args, shape_flags
cfg = load_config({DEMO!r}, data_args=data_args(*shape_flags({str(small_shapes)!r},
                                                              '--classes', 'from-json')))
small = warn_if_objects_small(cfg, samples=6)
assert len(small) == 1, small
log_to_files(MMLogger.get_instance('run', log_file={str(tmp_path / 'run.log')!r}), small)
"""
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert 'WARNING: objects are small for the model' in console
    assert '--img-scale-factor 2 ' in console
    log = (tmp_path / 'run.log').read_text()
    assert 'objects are small for the model' in log and '--img-scale-factor 2 ' in log
