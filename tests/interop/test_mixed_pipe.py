"""A pipe or a dump file that mixes a django-cqrs 3.1.0 service and ours works both ways.

django-cqrs 3.1.0 (from PyPI) is installed into a virtualenv of its own (cached between runs
under ~/.cache/cqrs-tests, rebuilt when missing) and runs a tiny project
written here (one master and one replica model, SQLite, the 3.x `TransportMock`). Our side is the
test project (`cqrs_testproject`) on its own SQLite file. Each command is a real process; the
text one side prints is fed unchanged to the other side's next stage, and the test checks what
comes out at the end and the rows left in each database.

The 3.x interpreter runs isolated (`python -I`, no PYTHON* variables), so it can never import our
packages; our side runs with this test run's interpreter, which has no django-cqrs 3.x. Without
network access to PyPI the test skips, or fails when CI is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cqrs_core.testing.plugin import service_unavailable

pytestmark = pytest.mark.slow

UPSTREAM = "django-cqrs==3.1.0"
DJANGO = "Django>=4.2,<6"
OUR_TESTS = Path(__file__).resolve().parents[2] / "packages" / "cqrs-django" / "tests"
OUR_SRC = OUR_TESTS.parent / "src"
TIMEOUT = 120
TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00"
"""3.x's line-1 timestamp: `str(datetime)`."""

UPDATED = "2026-01-02 03:04:05.678901+00:00"
"""`cqrs_updated` of every seeded row, the same on both sides, so that dumps can be compared."""

MANAGE_3X = """\
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `python -I` does not add it
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings3x")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""

SETTINGS_3X = """\
import os

SECRET_KEY = "interop-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "dj_cqrs", "app3x"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["CQRS_3X_DB"]}
}
CQRS = {"transport": "dj_cqrs.transport.mock.TransportMock", "queue": "q3x"}
"""

MODELS_3X = """\
from django.db import models

from dj_cqrs.mixins import MasterMixin, ReplicaMixin


class Author(MasterMixin):
    CQRS_ID = "author"

    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)


class AuthorRef(ReplicaMixin):
    CQRS_ID = "author"

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)
"""

# Masters 1, 2, 3 on both sides. Replicas: 1 up to date, 2 with another revision, 3 missing,
# 9 deleted on the master.
SEED = f'''
import datetime
from django.utils.dateparse import parse_datetime
from {{master}} import Author
from {{replica}} import AuthorRef
updated = parse_datetime("{UPDATED}")
Author.objects.bulk_create([
    Author(id=1, name="a1", email="a1@example.com"),
    Author(id=2, name="a2/b", birth_date=datetime.date(2020, 2, 2)),
    Author(id=3, name="a3 \\u00e9"),
])
Author.objects.update(cqrs_updated=updated)
AuthorRef.objects.bulk_create([
    AuthorRef(id=1, name="a1", email="a1@example.com", cqrs_revision=0, cqrs_updated=updated),
    AuthorRef(id=2, name="old", cqrs_revision={{stale}}, cqrs_updated=updated),
    AuthorRef(id=9, name="gone", cqrs_revision=0, cqrs_updated=updated),
])
'''

REPLICA_ROWS = """
import json
from {replica} import AuthorRef
rows = AuthorRef.objects.order_by("pk").values_list("pk", "name", "birth_date", "cqrs_revision")
print(json.dumps([[pk, name, str(birth) if birth else None, rev] for pk, name, birth, rev in rows]))
"""

MASTERS = [[1, "a1", None, 0], [2, "a2/b", "2020-02-02", 0], [3, "a3 \u00e9", None, 0]]


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that points Python or Django elsewhere."""
    drop = ("PYTHON", "DJANGO_", "CQRS_", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@dataclass
class Side:
    """One service: an interpreter, its `manage.py` and environment."""

    name: str
    command: list[str]
    env: dict[str, str]
    master: str
    """Module of the master model `Author`."""
    replica: str
    """Module of the replica model `AuthorRef`."""

    def run(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [*self.command, *args],
            input=stdin,
            capture_output=True,
            env=self.env,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, (self.name, args, result.stdout, result.stderr.decode())
        return result

    def shell(self, code: str) -> str:
        return self.run(
            "shell", "-v", "0", "-c", code.format(master=self.master, replica=self.replica)
        ).stdout.decode()

    def replica_rows(self) -> list[list[Any]]:
        return json.loads(self.shell(REPLICA_ROWS).strip().splitlines()[-1])


def _cache_dir() -> Path:
    """Where the 3.x virtualenv is kept between runs (`CQRS_TEST_CACHE` or ~/.cache/cqrs-tests)."""
    base = os.environ.get("CQRS_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cqrs-tests"
    )
    return Path(base)


def _venv_key() -> str:
    """The cached venv is valid for one upstream release, Django range and base interpreter."""
    import hashlib

    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    digest = hashlib.sha256(f"{UPSTREAM}|{DJANGO}|{base}|{sys.version}".encode()).hexdigest()
    return (
        f"{UPSTREAM.replace('==', '-')}-py{sys.version_info[0]}{sys.version_info[1]}-{digest[:12]}"
    )


def _probe_3x(python: Path, venv: Path, env: dict[str, str]) -> tuple[bool, str]:
    """Does `python` import django-cqrs 3.x from `venv`, and nothing of ours?"""
    try:
        probe = subprocess.run(
            [
                str(python),
                "-I",
                "-c",
                "import dj_cqrs, importlib.util as u; "
                "print(dj_cqrs.__file__); print(u.find_spec('cqrs_core'))",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    parts = probe.stdout.split()
    if probe.returncode != 0 or len(parts) != 2:
        return False, probe.stdout + probe.stderr
    where, core = parts
    return Path(where).is_relative_to(venv) and core == "None", probe.stdout


def _build_3x_venv(venv: Path, env: dict[str, str]) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install django-cqrs 3.1.0: pip install uv")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(
        [uv, "venv", "-q", "--python", sys.executable, str(venv)],
        env=env,
        check=True,
        timeout=TIMEOUT,
    )
    installed = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), UPSTREAM, DJANGO],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if installed.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        service_unavailable(f"PyPI ({UPSTREAM})", installed.stderr.strip()[-2000:])


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """A virtualenv with django-cqrs 3.1.0, cached between runs and rebuilt when missing or broken.

    Kept under `_cache_dir()`, keyed by the upstream version and the base interpreter; a lock
    file serialises concurrent test runs building it, and a marker is written only after the
    probe passed, so a half-built venv is never used.
    """
    import fcntl

    env = _clean_env()
    root = _cache_dir() / _venv_key()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / "venv"
    python = venv / "bin" / "python"
    marker = root / "ready"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and _probe_3x(python, venv, env)[0]:
            return python
        marker.unlink(missing_ok=True)
        _build_3x_venv(venv, env)
        ok, detail = _probe_3x(python, venv, env)
        assert ok, detail  # 3.x only
        marker.write_text(UPSTREAM + "\n")
    return python


@pytest.fixture(scope="session")
def project3x(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny 3.x project (manage.py, settings, one app), written once per session."""
    project = tmp_path_factory.mktemp("cqrs3x") / "project3x"
    (project / "app3x").mkdir(parents=True)
    (project / "manage.py").write_text(MANAGE_3X)
    (project / "settings3x.py").write_text(SETTINGS_3X)
    (project / "app3x" / "__init__.py").write_text("")
    (project / "app3x" / "models.py").write_text(MODELS_3X)
    return project


def _copy_side(side: Side, variable: str, template: str, db: Path) -> Side:
    """`side` on a copy of its migrated, seeded template database (closed: a plain file copy)."""
    shutil.copyfile(template, db)
    return Side(side.name, side.command, {**side.env, variable: str(db)}, side.master, side.replica)


@pytest.fixture(scope="module")
def upstream_template(
    upstream_python: Path, project3x: Path, tmp_path_factory: pytest.TempPathFactory
) -> Side:
    """The 3.x side migrated and seeded once per module; each test gets a copy of its database."""
    env = _clean_env()
    env["CQRS_3X_DB"] = str(tmp_path_factory.mktemp("upstream-template") / "upstream.sqlite3")
    command = [str(upstream_python), "-I", str(project3x / "manage.py")]
    side = Side("3.x", command, env, "app3x.models", "app3x.models")
    side.run("migrate", "--run-syncdb", "-v", "0")
    side.shell(SEED.replace("{stale}", "7"))
    return side


@pytest.fixture
def upstream(upstream_template: Side, tmp_path: Path) -> Side:
    template = upstream_template.env["CQRS_3X_DB"]
    return _copy_side(upstream_template, "CQRS_3X_DB", template, tmp_path / "upstream.sqlite3")


@pytest.fixture(scope="module")
def ours_template(tmp_path_factory: pytest.TempPathFactory) -> Side:
    """Our side migrated and seeded once per module; each test gets a copy of its database."""
    env = _clean_env()
    env.update(
        DJANGO_SETTINGS_MODULE="cqrs_testproject.settings",
        CQRS_TEST_DB="sqlite",
        CQRS_TEST_DB_NAME=str(tmp_path_factory.mktemp("ours-template") / "ours.sqlite3"),
        # The same test double as the 3.x side: a SYNC "sent" to a queue no process has bound
        # must not be refused (the memory broker of a lone process refuses it).
        CQRS_TEST_SETTINGS=json.dumps({"transport": "dj_cqrs.transport.mock.TransportMock"}),
    )
    command = [sys.executable, str(OUR_TESTS / "cqrs_testproject" / "manage.py")]
    side = Side(
        "ours",
        command,
        env,
        "cqrs_testproject.master_app.models",
        "cqrs_testproject.replica_app.models",
    )
    probe = side.run("shell", "-v", "0", "-c", "import dj_cqrs; print(dj_cqrs.__file__)")
    assert Path(probe.stdout.decode().strip()).is_relative_to(OUR_SRC), probe.stdout
    side.run("migrate", "--run-syncdb", "-v", "0")
    side.shell(SEED.replace("{stale}", "5"))
    return side


@pytest.fixture
def ours(ours_template: Side, tmp_path: Path) -> Side:
    template = ours_template.env["CQRS_TEST_DB_NAME"]
    return _copy_side(ours_template, "CQRS_TEST_DB_NAME", template, tmp_path / "ours.sqlite3")


def _lines(result: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    return result.stdout.decode(), result.stderr.decode()


def test_diff_pipeline_both_ways(upstream: Side, ours: Side) -> None:
    done = "Done!\n2 instance(s) synced.\n2 instance(s) processed.\n"

    # 3.x master -> our replica -> our sync (and 3.x's sync reading our replica's output)
    master3, _ = _lines(upstream.run("cqrs_diff_master", "-cid", "author"))
    assert re.fullmatch(rf"author,{TS}\n\[\[1,0\],\[2,0\],\[3,0\]\]\n", master3), master3
    header3 = master3.splitlines()[0]
    replica_out, replica_err = _lines(ours.run("cqrs_diff_replica", stdin=master3.encode()))
    assert replica_out == f"{header3},replica\n[2,3]\n"
    assert "PK to resync: {2, 3}" in replica_err.splitlines()
    sync_out, sync_err = _lines(ours.run("cqrs_diff_sync", stdin=replica_out.encode()))
    assert sync_out == done
    assert "author: 2 SYNC(s) sent to queue 'replica'." in sync_err
    assert _lines(upstream.run("cqrs_diff_sync", stdin=replica_out.encode()))[0] == done

    # our master -> 3.x replica -> 3.x sync (and our sync reading 3.x's replica output)
    master, _ = _lines(ours.run("cqrs_diff_master", "-cid", "author"))
    assert re.fullmatch(rf"author,{TS}\n\[\[1,0\],\[2,0\],\[3,0\]\]\n", master), master
    replica3_out, replica3_err = _lines(upstream.run("cqrs_diff_replica", stdin=master.encode()))
    assert replica3_out == f"{master.splitlines()[0]},q3x\n[2,3]\n", replica3_err
    assert _lines(upstream.run("cqrs_diff_sync", stdin=replica3_out.encode()))[0] == done
    sync_out, sync_err = _lines(ours.run("cqrs_diff_sync", stdin=replica3_out.encode()))
    assert sync_out == done
    assert "author: 2 SYNC(s) sent to queue 'q3x'." in sync_err


def test_deleted_diff_pipeline_both_ways(upstream: Side, ours: Side) -> None:
    # 3.x replica -> our master, our replica -> 3.x master (both before anything is deleted)
    listed3, _ = _lines(upstream.run("cqrs_deleted_diff_replica", "-cid", "author"))
    assert re.fullmatch(rf"author,{TS}\n\[1,2,9\]\n", listed3), listed3
    gone_for_3x, err = _lines(ours.run("cqrs_deleted_diff_master", stdin=listed3.encode()))
    assert gone_for_3x == f"{listed3.splitlines()[0]}\n[9]\n"
    assert "PK to delete: [9]" in err.splitlines()

    listed, _ = _lines(ours.run("cqrs_deleted_diff_replica", "-cid", "author"))
    assert re.fullmatch(rf"author,{TS}\n\[1,2,9\]\n", listed), listed
    gone_for_us, err = _lines(upstream.run("cqrs_deleted_diff_master", stdin=listed.encode()))
    assert gone_for_us == f"{listed.splitlines()[0]}\n[9]\n", err

    # each replica deletes what the other version's master said is gone
    assert _lines(upstream.run("cqrs_deleted_sync_replica", stdin=gone_for_3x.encode()))[0] == ""
    assert [row[0] for row in upstream.replica_rows()] == [1, 2]
    assert _lines(ours.run("cqrs_deleted_sync_replica", stdin=gone_for_us.encode()))[0] == ""
    assert [row[0] for row in ours.replica_rows()] == [1, 2]


def test_dump_files_both_ways(upstream: Side, ours: Side, tmp_path: Path) -> None:
    saved = "Done!\n3 instance(s) saved.\n3 instance(s) processed.\n"
    dump3 = tmp_path / "upstream.dump"
    assert _lines(upstream.run("cqrs_bulk_dump", "-c", "author", "-o", str(dump3)))[1] == saved
    dump = tmp_path / "ours.dump"
    assert _lines(ours.run("cqrs_bulk_dump", "-c", "author", "-o", str(dump)))[1] == saved
    assert dump.read_bytes() == dump3.read_bytes()  # same rows, same bytes

    loaded = "Done!\n3 instance(s) loaded.\n"
    out, err = _lines(ours.run("cqrs_bulk_load", "-i", str(dump3), "--clear", "true"))
    assert (out, err.splitlines()[-2:]) == ("", loaded.splitlines())  # ours adds a line before
    assert ours.replica_rows() == MASTERS
    assert _lines(upstream.run("cqrs_bulk_load", "-i", str(dump), "--clear", "1")) == ("", loaded)
    assert upstream.replica_rows() == MASTERS
