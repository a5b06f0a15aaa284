"""The mmcv source-build path of scripts/setup_env.sh, as a user without a wheelhouse takes it.

CI always finds the team's prebuilt wheel, so without these tests the path every other user takes
would never run. The fast check fetches mmcv's sdist, applies the C++20 patch and runs its metadata
step in the venv's setuptools; the slow one compiles mmcv into a temp cache and runs its nms.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'scripts' / 'setup_env.sh'


def _run_setup(mode: str, tmp_path: Path, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env['XDG_CACHE_HOME'] = str(tmp_path / 'cache')  # empty cache: no cached wheel, fresh logs
    env['EFFDET_WHEELHOUSE'] = ''
    env['VENV'] = str(Path(sys.prefix))  # the venv running these tests
    return subprocess.run(['bash', str(SCRIPT), mode], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_check_source_build_without_wheelhouse(tmp_path):
    proc = _run_setup('--check-source-build', tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'source-build check passed' in proc.stderr
    assert 'setuptools 6' in proc.stderr  # the metadata step ran with setuptools < 70
    assert 'a build on this machine would be: ' in proc.stderr
    logs = list((tmp_path / 'cache' / 'effdet_plugin' / 'logs').glob('mmcv-check-*.log'))
    assert len(logs) == 1
    # the check never leaves a wheel behind, and never touches the real cache
    assert not (tmp_path / 'cache' / 'effdet_plugin' / 'wheels').exists()


def test_failed_step_stops_with_one_message(tmp_path):
    """A failing step names itself, its log and the fix, and nothing after it runs."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / 'cache'), VENV=str(Path(sys.prefix)),
               EFFDET_WHEELHOUSE='',
               # pip cannot reach any index: the sdist download fails
               PIP_INDEX_URL='http://127.0.0.1:9/simple', PIP_NO_INDEX='1', PIP_FIND_LINKS='')
    proc = subprocess.run(['bash', str(SCRIPT), '--check-source-build'], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "step 'download mmcv sdist' failed" in proc.stderr, proc.stderr
    assert 'log: ' in proc.stderr and 'fix: ' in proc.stderr
    for later in ('tar:', 'sed:', 'No such file or directory', 'check passed'):
        assert later not in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(3900)  # the build itself is given 3600 s (11-20 min on 2 idle cores)
def test_full_source_build_runs_nms(tmp_path):
    """Compile mmcv 2.1.0 from the sdist into a temp cache and run mmcv.ops.nms from it."""
    proc = _run_setup('--full-source-build', tmp_path, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'full source build passed' in proc.stderr
    assert 'runs mmcv.ops.nms' in proc.stderr


def test_stamp_covers_every_requirements_file(tmp_path):
    """A second setup with nothing changed is a no-op; editing any requirements file (torch's
    pins included), setup.py or the script makes it install again."""
    root = tmp_path / 'repo'
    (root / 'scripts').mkdir(parents=True)
    shutil.copy(SCRIPT, root / 'scripts')
    shutil.copytree(ROOT / 'requirements', root / 'requirements')
    shutil.copy(ROOT / 'setup.py', root)
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    fake_python = venv / 'bin' / 'python'  # every install step "succeeds" without doing anything
    fake_python.write_text('#!/bin/sh\nexit 0\n')
    fake_python.chmod(0o755)
    env = dict(os.environ, VENV=str(venv), XDG_CACHE_HOME=str(tmp_path / 'cache'),
               EFFDET_WHEELHOUSE='')

    def installs() -> bool:
        proc = subprocess.run(['bash', str(root / 'scripts' / 'setup_env.sh')], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return 'up to date' not in proc.stderr

    assert installs()
    assert not installs()
    edited = sorted((root / 'requirements').glob('*.txt')) + [root / 'setup.py']
    assert 'torch.txt' in {p.name for p in edited}
    for path in edited:
        with open(path, 'a') as f:
            f.write('\n# edited\n')
        assert installs(), f'{path.name} changed but setup said up to date'
        assert not installs()
