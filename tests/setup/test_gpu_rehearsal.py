"""The GPU check rehearsed on the CPU: benchmarks/gpu/make_bundle.sh, then
benchmarks/gpu/check.sh --rehearse in a Python 3.12 stand-in of the GPU image with the network
cut, so that the bundle cannot lack a package and the script cannot assume a path or network.
Needs PyPI (the image stand-in and the bundle are fetched) and python3.12; about 15 min."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_bundle_and_rehearsed_check(tmp_path):
    python312 = os.environ.get('PYTHON312', 'python3.12')
    # a pyenv shim is on PATH whether or not its version is installed: run it
    if shutil.which(python312) is None or subprocess.run(
            [python312, '--version'], capture_output=True).returncode != 0:
        pytest.skip(f'no working {python312} to stand in for the GPU image (set PYTHON312)')
    bundle = tmp_path / 'bundle'
    made = subprocess.run(['bash', 'benchmarks/gpu/make_bundle.sh', str(bundle)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert '(limit 60 MiB)' in made.stdout
    env = dict(os.environ, OUT=str(tmp_path / 'out'), EFFDET_CHECK_TARGET=str(tmp_path / 't'))
    check = subprocess.run(['bash', 'benchmarks/gpu/check.sh', str(bundle), '--rehearse'],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    report = json.loads((tmp_path / 'out' / 'gpu_report.json').read_text())
    assert report['header']['python'].startswith('3.12')
    assert [r['part'] for r in report['rows'] if not r['ok']] == []
    assert len(report['rows']) == 5
