"""`hatch test` entry point: the whole suite on SQLite, then the Django tests on PostgreSQL,
then on MariaDB/MySQL.

With explicit arguments (a path, `-k ...`) only that pytest run happens, on SQLite unless
CQRS_TEST_DB says otherwise, so focused runs stay quick. Without the MySQL driver (installed
with `CQRS_NO_MYSQLCLIENT=1 hatch test`) the MariaDB phase is skipped, except in CI.

The full run is split into shards, each a separate pytest process exactly like a focused run
(its own database, run id, RabbitMQ vhost, Tansu broker and broker names), and up to
CQRS_TEST_JOBS of them (default 3) run at once: most of the suite waits on subprocesses and
brokers, not on the CPU. Each shard's output is printed whole when it ends, then a total.
CQRS_TEST_JOBS=1 runs the shards one after the other, as a single-phase-at-a-time run did.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATHS = ["packages", "tests"]
POSTGRES_PATHS = ["packages/cqrs-django/tests"]
MYSQL_PATHS = POSTGRES_PATHS
DJANGO_TESTS = "packages/cqrs-django/tests"
FINAL_LINE = re.compile(r"^=+ .* in [\d.]+s")
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")
NO_TESTS = 5  # pytest's exit code when a shard selected nothing (e.g. with `-k`)


def pytest(args: list[str], **env: str) -> int:
    command = [sys.executable, "-m", "pytest", *args]
    print("+", " ".join(f"{k}={v}" for k, v in env.items()), " ".join(command), flush=True)
    return subprocess.call(command, env={**os.environ, **env})


@dataclass
class Shard:
    name: str
    paths: list[str]
    env: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    started: float = 0.0
    code: int | None = None


E2E_FAULTS = "tests/integration/test_e2e_faults.py"
"""The longest module (a consumer subprocess killed and restarted per case): a shard of its own."""


def shards() -> list[Shard]:
    """The SQLite run split by package and folder (longest first), then PostgreSQL and MySQL.

    Together the SQLite shards cover `packages` and `tests` exactly: every `packages/*/tests`
    folder and every entry of `tests/` is in one shard.
    """
    root = Path.cwd()
    package_tests = sorted(
        str(path.relative_to(root)) for path in root.glob("packages/*/tests") if path.is_dir()
    )
    brokers = [path for path in package_tests if path != DJANGO_TESTS]
    cross = sorted(str(path.relative_to(root)) for path in (root / "tests").iterdir())
    cross = [path for path in cross if not Path(path).name.startswith((".", "_"))]
    integration = [path for path in cross if Path(path).name == "integration"]
    others = [path for path in cross if path not in integration]
    faults = [E2E_FAULTS] if integration and (root / E2E_FAULTS).exists() else []
    # Longest first, so that the shards started last are short ones.
    found = [
        Shard(f"sqlite: {E2E_FAULTS}", faults),
        Shard(
            "sqlite: tests/integration (the rest)",
            integration,
            options=[f"--ignore={path}" for path in faults],
        ),
        Shard("sqlite: tests (other)", others),
        Shard("sqlite: broker packages", brokers),
        Shard(f"sqlite: {DJANGO_TESTS}", [DJANGO_TESTS] if DJANGO_TESTS in package_tests else []),
        Shard(
            "postgres: " + " ".join(POSTGRES_PATHS), POSTGRES_PATHS, {"CQRS_TEST_DB": "postgres"}
        ),
    ]
    if importlib.util.find_spec("MySQLdb") is not None:
        found.append(
            Shard("mysql: " + " ".join(MYSQL_PATHS), MYSQL_PATHS, {"CQRS_TEST_DB": "mysql"})
        )
    return [shard for shard in found if shard.paths]


def summary_counts(text: str) -> dict[str, int]:
    # pytest's last line ("==== 3 passed, 1 skipped in 2.01s ===="); broker clients' log lines
    # ("127.0.0.1:36017 failed: ... in state CONNECT") must not be read as counts.
    lines = [line for line in text.splitlines() if FINAL_LINE.match(line) and SUMMARY.search(line)]
    if not lines:
        return {}
    counts: dict[str, int] = {}
    for number, word in SUMMARY.findall(lines[-1]):
        word = "errors" if word.startswith("error") else word
        counts[word] = counts.get(word, 0) + int(number)
    return counts


def run_shards(options: list[str], jobs: int) -> int:
    todo = shards()
    run_id = uuid.uuid4().hex[:8]
    base_env = {k: v for k, v in os.environ.items() if k != "CQRS_TEST_RUN_ID"}
    running: list[Shard] = []
    done: list[Shard] = []
    folder = Path(tempfile.mkdtemp(prefix="cqrs-test-shards-"))
    started = time.monotonic()
    print(f"{len(todo)} test shards, up to {jobs} at once; logs in {folder}", flush=True)
    try:
        while todo or running:
            while todo and len(running) < jobs:
                shard = todo.pop(0)
                index = len(done) + len(running)
                shard.log = folder / f"shard{index}.log"
                env = {
                    **base_env,
                    **shard.env,
                    "CQRS_TEST_RUN_ID": f"{run_id}s{index}",
                    "PYTHONUNBUFFERED": "1",
                }
                command = [sys.executable, "-m", "pytest", *options, *shard.options, *shard.paths]
                with open(shard.log, "wb") as log:
                    log.write(
                        (
                            "+ "
                            + " ".join(f"{k}={v}" for k, v in shard.env.items())
                            + " "
                            + " ".join(command)
                            + "\n"
                        ).encode()
                    )
                    log.flush()
                    shard.process = subprocess.Popen(
                        command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                    )
                shard.started = time.monotonic()
                running.append(shard)
                print(f"-- started [{shard.name}]", flush=True)
            time.sleep(0.5)
            for shard in list(running):
                assert shard.process is not None and shard.log is not None
                code = shard.process.poll()
                if code is None:
                    continue
                shard.code = code
                running.remove(shard)
                done.append(shard)
                seconds = time.monotonic() - shard.started
                print(f"\n{'=' * 30} [{shard.name}] exit {code} after {seconds:.0f} s", flush=True)
                sys.stdout.write(shard.log.read_text(errors="replace"))
                sys.stdout.flush()
    except KeyboardInterrupt:
        for shard in running:
            if shard.process is not None:
                shard.process.terminate()
        for shard in running:
            if shard.process is not None:
                shard.process.wait()
        raise
    return report(done, time.monotonic() - started)


def report(done: list[Shard], seconds: float) -> int:
    totals: dict[str, int] = {}
    print(f"\n{'=' * 30} shards ({seconds:.0f} s in all)", flush=True)
    for shard in done:
        assert shard.log is not None
        counts = summary_counts(shard.log.read_text(errors="replace"))
        for word, number in counts.items():
            totals[word] = totals.get(word, 0) + number
        shown = ", ".join(f"{n} {w}" for w, n in counts.items()) or "no summary"
        print(f"  exit {shard.code}  {shard.name}: {shown}", flush=True)
    codes = [shard.code for shard in done]
    failed = [code for code in codes if code not in (0, NO_TESTS)]
    extra = "".join(
        f", {totals[w]} {w}" for w in ("skipped", "errors", "xfailed", "xpassed") if totals.get(w)
    )
    print(f"total: {totals.get('passed', 0)} passed, {totals.get('failed', 0)} failed{extra}")
    if failed:
        return failed[0]
    if codes and all(code == NO_TESTS for code in codes):
        return NO_TESTS
    return 0


def main(argv: list[str]) -> int:
    targets = [arg for arg in argv if os.path.exists(arg.split("::")[0])]
    options = [arg for arg in argv if arg not in targets]
    if targets and targets != DEFAULT_PATHS:
        return pytest(argv)
    has_mysql = importlib.util.find_spec("MySQLdb") is not None
    if os.environ.get("CQRS_TEST_DB_NAME"):
        # One database named by the caller: shards would share it, so run the phases in turn.
        code = pytest([*options, *DEFAULT_PATHS])
        if code != 0:
            return code
        code = pytest([*options, *POSTGRES_PATHS], CQRS_TEST_DB="postgres")
        if code != 0 or not has_mysql:
            return code or mysql_missing()
        return pytest([*options, *MYSQL_PATHS], CQRS_TEST_DB="mysql")
    jobs = max(1, int(os.environ.get("CQRS_TEST_JOBS", "3")))
    code = run_shards(options, jobs)
    return code or (0 if has_mysql else mysql_missing())


def mysql_missing() -> int:
    print("MySQL driver (mysqlclient) not installed: MariaDB phase skipped.", flush=True)
    return 1 if os.environ.get("CI") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
