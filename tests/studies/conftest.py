"""The study tests read configs by their repo-relative paths, as the study tools are run."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo_cwd(monkeypatch) -> Path:
    """Run the test in the repository root."""
    monkeypatch.chdir(REPO)
    return REPO
