"""`hatch test` entry point: the whole suite on SQLite, then the Django tests on PostgreSQL.

With explicit arguments (a path, `-k ...`) only that pytest run happens, on SQLite unless
CQRS_TEST_DB says otherwise, so focused runs stay quick.
"""

from __future__ import annotations

import os
import subprocess
import sys

DEFAULT_PATHS = ["packages", "tests"]
POSTGRES_PATHS = ["packages/cqrs-django/tests"]


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
    return pytest([*options, *POSTGRES_PATHS], CQRS_TEST_DB="postgres")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
