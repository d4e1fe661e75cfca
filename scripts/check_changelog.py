"""Fail when a package's code changed since its last release tag without a version bump and changelog.

Why: each distribution is released on its own, tagged `<distribution>-v<version>`. If code under
`packages/<dist>/src/` differs from that tag, the next release of that package must carry a new
version (in `src/<import>/__about__.py`) and a CHANGELOG.md entry for it; otherwise two different
wheels would share one version number. A package that has never been tagged passes (first release).

    python scripts/check_changelog.py               # this checkout
    python scripts/check_changelog.py --repo PATH   # another checkout (used by the tests)

Changes are compared against the working tree, so uncommitted and untracked files count too.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Package:
    dist: str
    folder: Path  # relative to the repository root
    about: Path  # relative to the repository root


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=False, capture_output=True, text=True
    )


def discover(repo: Path) -> list[Package]:
    """Every `packages/*/pyproject.toml` with a static version file (`[tool.hatch.version] path`)."""
    found = []
    for pyproject in sorted((repo / "packages").glob("*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        name = data.get("project", {}).get("name")
        version_path = data.get("tool", {}).get("hatch", {}).get("version", {}).get("path")
        if not name or not version_path:
            continue
        folder = pyproject.parent.relative_to(repo)
        found.append(Package(name, folder, folder / version_path))
    return found


def read_version(path: Path) -> str | None:
    if not path.is_file():
        return None
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", path.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def version_key(version: str) -> tuple[int, ...] | None:
    """(1, 2, 3) for '1.2.3'; None for anything fancier (then only 'differs' is required)."""
    return (
        tuple(int(p) for p in version.split(".")) if re.fullmatch(r"\d+(\.\d+)*", version) else None
    )


def has_entry(changelog: Path, version: str) -> bool:
    """A heading for `version`: '## 1.2.3', '## [1.2.3] - 2025-01-01', '## v1.2.3 (unreleased)'."""
    if not changelog.is_file():
        return False
    pattern = rf"^#+\s*\[?v?{re.escape(version)}\]?(?=\s|$|\()"
    return re.search(pattern, changelog.read_text(), re.MULTILINE) is not None


def last_tag(repo: Path, dist: str) -> str | None:
    proc = git(repo, "describe", "--tags", "--abbrev=0", "--match", f"{dist}-v*", "HEAD")
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def changed_files(repo: Path, tag: str, path: Path) -> list[str]:
    """Files under `path` that differ from `tag` in the working tree, plus untracked ones."""
    diff = git(repo, "diff", "--name-only", tag, "--", str(path))
    if diff.returncode != 0:
        raise SystemExit(f"git diff against {tag} failed: {diff.stderr.strip()}")
    untracked = git(repo, "ls-files", "--others", "--exclude-standard", "--", str(path))
    return sorted(set(diff.stdout.split()) | set(untracked.stdout.split()))


def check(repo: Path, pkg: Package) -> tuple[bool, str]:
    """(ok, one line saying why)."""
    version = read_version(repo / pkg.about)
    if version is None:
        return False, f'no __version__ in {pkg.about}: add __version__ = "X.Y.Z"'
    tag = last_tag(repo, pkg.dist)
    if tag is None:
        return True, f"{version}: no {pkg.dist}-v* tag yet (first release)"
    tagged = tag[len(pkg.dist) + 2 :]
    src = pkg.folder / "src"
    changed = changed_files(repo, tag, src)
    if not changed:
        return True, f"{version}: src/ unchanged since {tag}"
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    problems = []
    new_key, old_key = version_key(version), version_key(tagged)
    if version == tagged or (new_key and old_key and new_key < old_key):
        problems.append(
            f"bump the version (still {version}, last tag {tag}): run `hatch version patch` "
            f"(or minor/major) in {pkg.folder}"
        )
    changelog = pkg.folder / "CHANGELOG.md"
    target = "<new version>" if version == tagged else version
    if version == tagged or not has_entry(repo / changelog, version):
        problems.append(f"add a '## {target}' entry to {changelog} describing the change")
    if problems:
        return False, f"src/ changed since {tag} ({shown}): " + "; ".join(problems)
    return True, f"{version}: changed since {tag}, bumped and in CHANGELOG.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="repository root (default: this checkout)"
    )
    args = parser.parse_args(argv)
    repo = args.repo.resolve()

    if git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        print(
            "error: shallow clone: tags and history are missing; run `git fetch --tags --unshallow`",
            file=sys.stderr,
        )
        return 2
    packages = discover(repo)
    if not packages:
        print(
            f"error: no packages/*/pyproject.toml with [tool.hatch.version] path under {repo}",
            file=sys.stderr,
        )
        return 2
    failed = 0
    width = max(len(p.dist) for p in packages)
    for pkg in packages:
        ok, why = check(repo, pkg)
        failed += not ok
        print(f"{pkg.dist:<{width}}  {'ok  ' if ok else 'FAIL'}  {why}")
    if failed:
        print(
            f"\n{failed} package(s) changed without a release bump; see RELEASING.md.",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
