"""The scaling table (tools/analysis/scaling_table.py): exact parameter counts and a working
FLOPs table."""
from pathlib import Path

import pytest
import torch
import torchvision

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def tool():
    from effdet_plugin.studies.scaling import table
    return table


@pytest.mark.parametrize('arch', [f'b{i}' for i in range(8)])
def test_params_equal_torchvision_without_classifier(tool, arch):
    with torch.device('meta'):  # shapes only: no memory, no init
        tv = getattr(torchvision.models, f'efficientnet_{arch}')()
    expected = sum(p.numel() for name, p in tv.named_parameters()
                   if not name.startswith('classifier.'))
    assert tool.count_params(arch) == expected


def test_table_rows_and_markdown(tool, capsys):
    # one thread: a test process that ran torch with more can no longer fork tools
    assert tool.main(['--archs', 'b0', '--phis', '0', '1', '--markdown', '--threads', '1']) == 0
    out = capsys.readouterr().out
    print(out)
    lines = [line for line in out.splitlines() if line.startswith('|')]
    assert lines[0].startswith('| variant | depth d | width w | resolution r | input |')
    assert len(lines) == 2 + 3
    b0 = lines[2].split(' | ')
    assert b0[0] == '| b0' and b0[4] == '224' and b0[5] == '4.008'
    assert abs(float(b0[6]) - 0.39) < 0.02  # paper: 0.39B FLOPs (multiply-adds)
    phi1 = lines[4].split(' | ')
    assert phi1[0] == '| phi=1' and phi1[1:4] == ['1.200', '1.100', '1.150']
    ratio = float(phi1[7].rstrip(' |').rstrip('x'))
    assert 1.6 < ratio < 2.4  # the paper's "each unit of phi about doubles FLOPs"


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the tool itself is given 1200 s
def test_full_table(run_tool):
    proc = run_tool('tools/analysis/scaling_table.py', '--markdown', timeout=1200)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| b') or
            line.startswith('| phi=')]
    assert len(rows) == 16
    ratios = [float(r.split(' | ')[7].rstrip(' |').rstrip('x')) for r in rows
              if r.startswith('| phi=') and not r.startswith('| phi=0 ')]
    print(proc.stdout)
    assert all(1.5 < r < 2.5 for r in ratios), ratios
