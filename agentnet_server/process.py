"""A server as a child process, for the test harness and for `agentnet bench`.

`serve_args` builds the `python -m agentnet_server serve` command line; `ServerProcess` starts
any command that takes `--ready-file F` and writes `{"grpc": "host:port", "http": ...}` there once
it listens (the agentnet server and the bench's raw forwarder both do), waits for that file, and
stops the process with SIGTERM (SIGKILL after a timeout).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any


def serve_args(certs: pathlib.Path, db: str, grpc_addr: str = "127.0.0.1:0", **flags: Any) -> list[str]:
    """`python -m agentnet_server serve` with these settings; each flag `name=value` becomes `--name value`."""
    args = [sys.executable, "-m", "agentnet_server", "serve", "--certs", str(certs), "--db", db]
    args += ["--grpc-addr", grpc_addr]
    for key, value in flags.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


class ServerProcess:
    """One child process writing its output to `log`; `start` returns the ready file's contents."""

    def __init__(self, log: pathlib.Path, workdir: pathlib.Path, name: str = "server") -> None:
        self.name = name
        self.log = log
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, args: list[str], ready: pathlib.Path, timeout: float = 60.0) -> dict[str, Any]:
        self.spawn(args, ready)
        return self.wait_ready(ready, timeout)

    def spawn(self, args: list[str], ready: pathlib.Path) -> None:
        """Start the process and return at once (`wait_ready` waits for it to listen)."""
        ready.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*args, "--ready-file", str(ready)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def wait_ready(self, ready: pathlib.Path, timeout: float = 60.0) -> dict[str, Any]:
        """The ready file's contents once the process wrote it; an error with the log's tail if it
        exits first or does not get there within `timeout`."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not become ready:\n{self.tail()}")
            time.sleep(0.02)
        info: dict[str, Any] = json.loads(ready.read_text())
        return info

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM) without waiting; `stop` then waits for it."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (a graceful stop), then SIGKILL after `timeout`; the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
