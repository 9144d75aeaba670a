"""Optional CPU profiles of the service under test (`python -m bench --profile DIR`): py-spy
samples the process while Pantau is measured, and a summary lists where its time went.

Profiled runs are slower (py-spy shares the same cores); read their numbers for where the
time goes, not for the table.
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


@contextmanager
def sampled(pid: int, out_dir: Path | None, name: str) -> Iterator[None]:
    """py-spy on `pid` for the duration of the block, if profiling was asked for."""
    # pip installs it beside the interpreter, which need not be on PATH (.venv/bin).
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if out_dir is None or spy is None:
        if out_dir is not None:
            print("bench: py-spy not found on PATH; no profile taken")
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.collapsed.txt"
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                             "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if out.exists():
            (out_dir / f"{name}.summary.txt").write_text(summary(out))
            print(f"bench: profile of {name} in {out_dir}/{name}.summary.txt")


@contextmanager
def sampled_all(pids: dict[str, int], out_dir: Path | None, suffix: str) -> Iterator[None]:
    """py-spy on every process of `pids` at once (profiles named `<name>-<suffix>`)."""
    with ExitStack() as stack:
        for name, pid in pids.items():
            stack.enter_context(sampled(pid, out_dir, f"{name}-{suffix}"))
        yield


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


# Where a sample's CPU goes: the first frame from the leaf up that is not the standard library
# (asyncio's loop and streams, contextlib) names its component. py-spy's non-blocking samples
# often lose the outer frames of a stack, so this leaf-side attribution is the one that holds.
COMPONENTS = (
    ("pydantic (validation)", ("pydantic/", "pydantic_core")),
    ("redis-py client", ("redis/", "hiredis")),
    ("aiokafka client", ("aiokafka/", "kafka/")),
    ("Faust / mode", ("faust/", "mode/")),
    ("prometheus_client", ("prometheus_client/",)),
    ("uvicorn HTTP", ("uvicorn/", "httptools")),
    ("FastAPI / Starlette", ("fastapi/", "starlette/")),
    ("aiohttp", ("aiohttp/", "yarl/", "multidict/")),
    ("uvloop", ("uvloop/",)),
)
_STDLIB = ("asyncio/", "contextlib", "<frozen", "selectors", "socket.py", "typing.py", "functools", "enum.py",
           "dataclasses.py", "logging/", "threading.py", "queue.py", "json/", "re/", "weakref", "abc.py",
           "collections/", "copy.py", "datetime.py", "zoneinfo/")


# A stack whose innermost Python frame is the loop's entry point is in uvloop's C code: waiting
# in epoll (py-spy --nonblocking counts such samples too) or doing the loop's own socket work.
_LOOP = ("Runner.run (", "Worker.execute_from_commandline (", "ServiceThread._start_thread (", "asyncio_run (",
         "serve_forever (")
LOOP = "event loop (waiting, or uvloop's own C code)"


def component(frames: list[str]) -> str:
    """The component a sample's stack (root first) spends its time in."""
    if frames and frames[-1].startswith(_LOOP):
        return LOOP
    for f in reversed(frames):
        m = _FRAME.match(f)
        path = m.group("file") if m else f
        for label, markers in COMPONENTS:
            if any(x in path for x in markers):
                return label
        if any(x in path for x in _STDLIB):
            continue
        for marker in ("services/", "shared/", "bench/"):
            if marker in path:
                return "pantau " + marker + path.split(marker, 1)[1]
        return path.rsplit("site-packages/", 1)[-1].split("/", 1)[0]
    return "event loop, stdlib"


def components(collapsed: Path) -> list[tuple[str, float]]:
    """(component, share of samples), largest first."""
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            counts[component(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return [(c, n / total) for c, n in counts.most_common()]


def summary(collapsed: Path, top: int = 25) -> str:
    """Top functions by inclusive and by self share of the samples."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "by component (leaf side):"]
    lines += [f"  {100 * share:5.1f}%  {c}" for c, share in components(collapsed)[:top]]
    lines += ["", "inclusive (py-spy may cut the outer frames of a stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines) + "\n"
