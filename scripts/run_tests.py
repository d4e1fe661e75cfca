"""`hatch test` entry point: the whole suite on SQLite, then the Django tests on PostgreSQL,
then on MariaDB/MySQL.

With explicit arguments (a path, `-k ...`) only that pytest run happens, on SQLite unless
CQRS_TEST_DB says otherwise, so focused runs stay quick. Without the MySQL driver (installed
with `CQRS_NO_MYSQLCLIENT=1 hatch test`) the MariaDB phase is skipped, except in CI.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

DEFAULT_PATHS = ["packages", "tests"]
POSTGRES_PATHS = ["packages/cqrs-django/tests"]
MYSQL_PATHS = POSTGRES_PATHS


def pytest(args: list[str], **env: str) -> int:
    command = [sys.executable, "-m", "pytest", *args]
    print("+", " ".join(f"{k}={v}" for k, v in env.items()), " ".join(command), flush=True)
    return subprocess.call(command, env={**os.environ, **env})


def main(argv: list[str]) -> int:
    targets = [arg for arg in argv if os.path.exists(arg.split("::")[0])]
    options = [arg for arg in argv if arg not in targets]
    if targets and targets != DEFAULT_PATHS:
        return pytest(argv)
    code = pytest([*options, *DEFAULT_PATHS])
    if code != 0:
        return code
    code = pytest([*options, *POSTGRES_PATHS], CQRS_TEST_DB="postgres")
    if code != 0:
        return code
    if importlib.util.find_spec("MySQLdb") is None:
        print("MySQL driver (mysqlclient) not installed: MariaDB phase skipped.", flush=True)
        return 1 if os.environ.get("CI") else 0
    return pytest([*options, *MYSQL_PATHS], CQRS_TEST_DB="mysql")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
