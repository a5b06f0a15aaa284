"""Model size (tools/analysis/get_flops.py): D0 params and FLOPs against the paper, and the
table output."""
from pathlib import Path

import pytest
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def tool():
    from effdet_plugin.studies import flops
    return flops


def test_d0_matches_the_paper(tool):
    """Paper: 3.9M parameters, 2.54B FLOPs (multiply-adds) at 512x512."""
    result = tool.count(Config.fromfile(str(REPO / 'configs/effdet_b0_coco.py')))
    assert result['variant'] == 'd0' and result['shape'] == (512, 512)
    assert result['params'] == pytest.approx(3.9e6, rel=0.01)
    assert result['flops'] == pytest.approx(2.54e9, rel=0.05)
    # what the count is made of: convs dominate; BN and upsampling are counted, pooling not
    ops = result['by_operator']
    assert ops['conv'] / result['flops'] > 0.95 and ops['batch_norm'] > 0
    assert 'aten::max_pool2d' in result['uncounted']
    assert set(result['by_module']) >= {'backbone', 'neck', 'bbox_head'}
    assert sum(result['by_module'].values()) == result['flops']


def test_cli_row_and_shape(tool, capsys):
    cfg = str(REPO / 'configs/effdet_b0_coco.py')
    assert tool.main([cfg, '--markdown', '--shape', '128', '128',
                      '--cfg-options', 'model.bbox_head.num_classes=90']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == '| ' + ' | '.join(tool.HEADER) + ' |'
    cells = [c.strip() for c in lines[2].strip('|').split('|')]
    assert cells[:2] == ['D0', '128x128']
    assert cells[2] == '3.880'  # effdet's tf_efficientdet_d0 has 3,880,067 parameters
    assert cells[3] == '-' and cells[6] == '-'  # no paper figure at a non-official size
    assert 0.1 < float(cells[5]) < 0.25  # ~1/16 of the 512x512 count


def test_needs_config_or_all(tool):
    with pytest.raises(SystemExit):
        tool.parse_args([])
