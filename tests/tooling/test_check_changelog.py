from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_changelog.py"

PYPROJECT = """\
[project]
name = "{dist}"
dynamic = ["version"]

[tool.hatch.version]
path = "src/{mod}/__about__.py"
"""


def git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def add_package(repo: Path, dist: str, version: str) -> Path:
    mod = dist.replace("-", "_")
    folder = repo / "packages" / dist
    (folder / "src" / mod).mkdir(parents=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, mod=mod))
    (folder / "src" / mod / "__about__.py").write_text(f'__version__ = "{version}"\n')
    (folder / "src" / mod / "core.py").write_text("VALUE = 1\n")
    (folder / "CHANGELOG.md").write_text(f"# Changelog\n\n## {version}\n- First release.\n")
    return folder


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--repo", str(repo)],
        check=False,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    add_package(tmp_path, "fake-core", "0.1.0")
    add_package(tmp_path, "fake-plugin", "1.0.0")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "initial")
    return tmp_path


def test_untagged_packages_pass_as_first_release(repo: Path) -> None:
    (repo / "packages/fake-core/src/fake_core/core.py").write_text("VALUE = 2\n")
    result = check(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "first release" in result.stdout


def test_code_change_requires_version_bump_and_changelog(repo: Path) -> None:
    git(repo, "tag", "fake-core-v0.1.0")
    git(repo, "tag", "-a", "fake-plugin-v1.0.0", "-m", "release")  # annotated tags work too
    assert check(repo).returncode == 0

    core = repo / "packages/fake-core"
    (core / "src/fake_core/core.py").write_text("VALUE = 2\n")
    git(repo, "commit", "-qam", "change core")
    result = check(repo)
    assert result.returncode == 1
    failing = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(failing) == 1 and failing[0].startswith("fake-core"), result.stdout
    assert "hatch version" in failing[0] and "CHANGELOG.md" in failing[0]
    assert "fake-core-v0.1.0" in failing[0]

    # A bump alone is not enough: the changelog must describe the new version.
    (core / "src/fake_core/__about__.py").write_text('__version__ = "0.1.1"\n')
    result = check(repo)
    assert result.returncode == 1
    assert "'## 0.1.1' entry" in result.stdout

    changelog = core / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace("# Changelog\n", "# Changelog\n\n## 0.1.1\n- Fix.\n")
    )
    result = check(repo)
    assert result.returncode == 0, result.stdout + result.stderr


def test_untracked_new_module_counts_as_a_change(repo: Path) -> None:
    git(repo, "tag", "fake-plugin-v1.0.0")
    (repo / "packages/fake-plugin/src/fake_plugin/extra.py").write_text("X = 1\n")
    result = check(repo)
    assert result.returncode == 1
    assert "extra.py" in result.stdout


def test_version_lower_than_tag_fails(repo: Path) -> None:
    git(repo, "tag", "fake-plugin-v1.0.0")
    plugin = repo / "packages/fake-plugin"
    (plugin / "src/fake_plugin/core.py").write_text("VALUE = 3\n")
    (plugin / "src/fake_plugin/__about__.py").write_text('__version__ = "0.9.0"\n')
    (plugin / "CHANGELOG.md").write_text("# Changelog\n\n## 0.9.0\n- Oops.\n")
    result = check(repo)
    assert result.returncode == 1
    assert "bump the version" in result.stdout
