"""Child processes of the demo: each in its own process group, all stopped on the way out.

Children get their own session, so a Ctrl-C in the terminal reaches only the runner, which
then stops them in order (SIGTERM to the whole group, SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and shows the relevant output."""


class Child:
    """A running `manage.py` command whose output goes to a log file."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_line(self, needle: str, timeout: float) -> None:
        """Wait until the log contains `needle`; fail if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log.read_text(errors="replace"):
                return
            if not self.alive():
                raise DemoError(
                    f"{self.name} exited with code {self.process.returncode}:\n{self.output()}"
                )
            time.sleep(0.05)
        raise DemoError(f"{self.name} not ready after {timeout:.0f} s:\n{self.output()}")


class Processes:
    """Starts children and guarantees they are gone when `stop_all` returns."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env = dict(env)
        self.logs = logs
        self.children: list[Child] = []

    def start(self, name: str, project: Path, args: Sequence[str]) -> Child:
        log = self.logs / f"{name.replace(' ', '-')}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=project,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def run(
        self,
        name: str,
        project: Path,
        args: Sequence[str],
        echo: IO[str] | None = None,
        indent: str = "",
    ) -> str:
        """Run a command to completion; with `echo`, copy its output there as it comes."""
        child = self.start(name, project, args)
        seen = 0
        while True:
            done = not child.alive()
            if echo is not None:
                text = child.log.read_text(errors="replace")
                lines = text[seen:].splitlines(keepends=True)
                complete = [line for line in lines if line.endswith("\n")] if not done else lines
                for line in complete:
                    echo.write(indent + line if line.strip() else line)
                    seen += len(line)
                echo.flush()
            if done:
                break
            time.sleep(0.05)
        self.children.remove(child)
        if child.process.returncode != 0:
            raise DemoError(
                f"{name} failed with code {child.process.returncode}:\n{child.output(60)}"
            )
        return child.log.read_text(errors="replace")

    def stop_all(self, grace: float = 8.0) -> None:
        """SIGTERM every child's process group (newest first), then SIGKILL what is left."""
        children, self.children = list(reversed(self.children)), []
        for child in children:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.05))
            except subprocess.TimeoutExpired:
                pass
        for child in children:
            _signal_group(child.process, signal.SIGKILL)  # also reaps grandchildren left behind
            try:
                child.process.wait(2)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # start_new_session: the group id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens on it on loopback, else a free port chosen by the OS."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DemoError("no free TCP port on 127.0.0.1")


def wait_for_port(port: int, child: Child, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise DemoError(f"{child.name} exited:\n{child.output()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DemoError(f"{child.name} does not listen on port {port}:\n{child.output()}")
