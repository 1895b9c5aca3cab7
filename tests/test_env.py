"""bench/env.py: the commit and dirtiness a result or a report records."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.env import git_commit


def _repo(tmp_path: Path) -> Path:
    """A git repository with one code file and one committed report file."""
    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "reports" / "README.md").write_text("old snapshot\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


def test_a_rebuilt_report_does_not_make_the_code_dirty(tmp_path):
    repo = _repo(tmp_path)
    (repo / "reports" / "README.md").write_text("new snapshot\n")
    assert git_commit(repo)["dirty"] is True  # for a run, any tracked change counts
    clean = git_commit(repo, outputs=repo / "reports")
    assert clean["dirty"] is False and len(str(clean["commit"])) == 40


def test_a_code_change_stays_dirty_beside_the_report_folder(tmp_path):
    repo = _repo(tmp_path)
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo, outputs=repo / "reports")["dirty"] is True


def test_a_report_folder_outside_the_checkout_is_ignored(tmp_path):
    repo = _repo(tmp_path)
    found = git_commit(repo, outputs=tmp_path / "elsewhere")
    assert found["dirty"] is False and found["commit"] is not None  # git refuses outer paths; not asked
