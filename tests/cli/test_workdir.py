"""The embedded stack's workdir is private (0700), another user's is refused, and its Redis
answers only with the generated password (kept 0600 in the workdir, never on a command line)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import redis

from cli.stack import EmbeddedStack
from cli.workdir import PASSWORD_FILE, WorkdirError, redis_password, secure_workdir
from tests.conftest import write_config
from tests.utils import local_redis


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_new_workdir_is_0700_and_a_loose_one_is_tightened(tmp_path: Path) -> None:
    assert mode(secure_workdir(tmp_path / "new" / "work")) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    assert mode(secure_workdir(loose)) == 0o700


def test_a_workdir_another_user_owns_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "pantau-planted"
    planted.mkdir(mode=0o700)
    other = 65534 if os.getuid() != 65534 else 65533
    os.chown(planted, other, -1)
    with pytest.raises(WorkdirError, match=f"belongs to another user \\(uid {other}\\)"):
        secure_workdir(planted)
    with pytest.raises(WorkdirError, match="belongs to another user"):
        EmbeddedStack(write_config(tmp_path / "pantau.yaml"), planted, ())
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(WorkdirError, match="not a directory"):
        secure_workdir(link)


def test_the_redis_password_is_generated_once_into_a_0600_file(tmp_path: Path) -> None:
    work = secure_workdir(tmp_path / "w")
    first = redis_password(work)
    assert len(first) >= 32 and mode(work / PASSWORD_FILE) == 0o600
    assert redis_password(work) == first


def test_the_embedded_redis_refuses_a_client_without_the_password(tmp_path: Path) -> None:
    stack = EmbeddedStack(write_config(tmp_path / "pantau.yaml"), tmp_path / "work", ())
    password = (tmp_path / "work" / PASSWORD_FILE).read_text().strip()
    assert f":{password}@" in stack.config.redis.url
    host, port = stack.redis_addr
    child = stack.start_redis()
    try:
        ps = subprocess.run(["ps", "-o", "args=", "-p", str(child.proc.pid)], capture_output=True, text=True).stdout
        assert password not in ps and ps.strip()
        with redis.Redis(host=host, port=port) as r, pytest.raises(redis.AuthenticationError):
            r.ping()
        with redis.Redis(host=host, port=port, password="a-guess-0123456789") as r, \
                pytest.raises(redis.AuthenticationError):
            r.ping()
        with redis.Redis.from_url(stack.config.redis.url) as r:
            assert r.ping()
        assert mode(tmp_path / "work" / "redis" / "auth.conf") == 0o600
    finally:
        child.stop()


def test_a_redis_without_password_still_runs_for_tests_that_want_one(tmp_path: Path) -> None:
    with local_redis(tmp_path) as url, redis.Redis.from_url(url) as r:
        assert r.ping()


def test_up_refuses_another_users_workdir_without_a_traceback(tmp_path: Path) -> None:
    import sys

    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, -1)
    r = subprocess.run([sys.executable, "-m", "cli.main", "up", "--config", str(write_config(tmp_path / "p.yaml")),
                        "--workdir", str(planted)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "belongs to another user" in r.stderr and "Traceback" not in r.stderr + r.stdout
