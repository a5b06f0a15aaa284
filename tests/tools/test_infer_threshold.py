"""tools/infer.py draws the boxes the documentation speaks of: its default score threshold is
the one docs/demo.md and docs/own_data.md quote (score >= 0.5)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_default_score_threshold_is_the_documented_one(run_tool):
    proc = run_tool('tools/infer.py', '--help')
    assert proc.returncode == 0, proc.stderr[-3000:]
    default = re.search(r'--score-thr SCORE_THR\s.*?\(default: ([\d.]+)\)', proc.stdout,
                        re.S).group(1)
    assert default == '0.5'
    assert f'score >= {default}' in (REPO / 'docs' / 'demo.md').read_text()
    assert f'detections above {default}' in (REPO / 'docs' / 'own_data.md').read_text()
