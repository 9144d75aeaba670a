"""`pantau up` as a user runs it: the stack comes up, answers, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cli.stack import port_open, wait_port
from shared.config import load
from tests.conftest import write_config
from tests.utils import wait_for


def _pids_in_group(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    out.append(int(d.name))
            except ProcessLookupError:
                pass
    return out


def test_up_serves_and_ctrl_c_leaves_no_process_or_port(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "pantau.yaml")
    cfg = load(cfg_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--config", str(cfg_path), "--workdir", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_port("127.0.0.1", cfg.ingest.port, 60, proc, "pantau up")
        assert httpx.get(f"http://127.0.0.1:{cfg.ingest.port}/healthz").status_code == 200
        children = {p for p in _all_descendants(proc.pid)}
        assert len(children) >= 4  # broker, redis, gateway, validator
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out.decode()
    assert b"stopped" in out
    # The Redis URL is printed without its (generated) password.
    password = (tmp_path / "work" / "redis.password").read_text().strip()
    assert password.encode() not in out and b":***@127.0.0.1" in out, out.decode()
    assert b"mode: durable" in out  # --config without --ephemeral keeps what it acknowledged
    still = [p for p in children if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
    assert still == [], f"processes left running: {still}"
    for port in (cfg.ingest.port, cfg.ingest.metrics_port, int(cfg.kafka.bootstrap_servers.rsplit(":", 1)[1])):
        assert not port_open("127.0.0.1", port), f"port {port} still bound"


def test_sigkill_of_up_alone_leaves_no_process_or_port(tmp_path: Path) -> None:
    """A power-cut of the supervisor only (kill -9 of `pantau up`): the kernel takes its children
    with it, so the next `pantau up` finds its ports free."""
    cfg_path = write_config(tmp_path / "pantau.yaml")
    cfg = load(cfg_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--config", str(cfg_path), "--workdir", str(tmp_path / "work")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    children: list[int] = []
    try:
        wait_port("127.0.0.1", cfg.ingest.port, 90, proc, "pantau up")
        children = _all_descendants(proc.pid)
        assert len(children) >= 4
        proc.kill()  # SIGKILL to `pantau up` alone, not to its process group
        proc.wait()
        wait_for(f"every process of {children} gone after SIGKILL of pantau up",
                 lambda: not [p for p in children if _state(p) != "Z"], 30)
    finally:
        for p in children:
            if _state(p) != "Z":
                os.kill(p, signal.SIGKILL)
    ports = (cfg.ingest.port, cfg.ingest.metrics_port, int(cfg.kafka.bootstrap_servers.rsplit(":", 1)[1]),
             int(cfg.redis.url.rsplit(":", 1)[1].split("/")[0]))
    wait_for(f"every port of {ports} released", lambda: not any(port_open("127.0.0.1", p) for p in ports), 10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return "Z"


def _all_descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(Path(f"/proc/{d.name}/stat").read_text().split(") ", 1)[1].split()[1])
            except (FileNotFoundError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def test_an_ephemeral_run_refuses_a_durable_workdir(tmp_path: Path) -> None:
    """An ephemeral broker beside a durable Redis would disagree about what was accepted."""
    from cli.stack import EmbeddedStack

    cfg_path = write_config(tmp_path / "pantau.yaml")
    durable = EmbeddedStack(cfg_path, tmp_path / "work", (), durable=True)
    durable.start_infra()
    durable.stop()
    r = subprocess.run([sys.executable, "-m", "cli.main", "up", "--ephemeral", "--config", str(cfg_path),
                        "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    said = " ".join(r.stderr.split())  # rich wraps stderr to the terminal width
    assert "durable stack's data" in said and "Run without --ephemeral" in said, said
    assert (tmp_path / "work" / "broker").is_dir(), "the durable data was touched"


def test_a_durable_run_starts_empty_over_what_an_ephemeral_one_left(tmp_path: Path) -> None:
    from cli.stack import EmbeddedStack

    cfg_path = write_config(tmp_path / "pantau.yaml")
    eph = EmbeddedStack(cfg_path, tmp_path / "work", (), durable=False)
    eph.start_infra()
    eph.stop()
    assert any((tmp_path / "work" / "redis").iterdir())
    durable = EmbeddedStack(cfg_path, tmp_path / "work", (), durable=True)
    durable.claim_workdir()
    assert not (tmp_path / "work" / "redis").exists()
    assert any("started empty" in n for n in durable.notes), durable.notes


def test_bad_config_stops_with_the_key_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - id: x\n    api_key: k\n    regions: ['99.99']\n")
    r = subprocess.run([sys.executable, "-m", "cli.main", "up", "--config", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "sources[0].regions" in r.stderr and "99.99" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_a_weak_signing_secret_stops_up_before_anything_starts(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "pantau.yaml", 'channels:\n  - {id: hook, type: webhook, '
                            'url: "http://127.0.0.1:9/", secret: "change-me-webhook-secret-0123456789"}\n')
    cfg_path.write_text(cfg_path.read_text().replace("notify:\n", 'notify:\n  link_secret: ""\n', 1))
    text = cfg_path.read_text()
    r = subprocess.run([sys.executable, "-m", "cli.main", "up", "--config", str(cfg_path),
                        "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "notify.link_secret: is empty" in r.stderr and "channels[0].secret: is a placeholder" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "work").exists(), "nothing may start (not even the workdir) with a weak secret"
    assert "change-me-webhook-secret" not in r.stderr + r.stdout and "notify:" in text


def test_each_service_refuses_a_weak_signing_secret_at_start(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "pantau.yaml")
    cfg_path.write_text(cfg_path.read_text().replace("notify:\n", 'notify:\n  link_secret: "too-short-Q7f3"\n', 1))
    for module in (["services.notify"], ["services.ingest", "gateway"]):
        r = subprocess.run([sys.executable, "-m", *module], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PANTAU_CONFIG": str(cfg_path)})
        assert r.returncode == 2, (module, r.stderr)
        assert "notify.link_secret: must be at least 32 bytes" in r.stderr and "too-short-Q7f3" not in r.stderr
