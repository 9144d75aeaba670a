"""The durable broker's object store: the few S3 calls Tansu's `s3://` engine makes, served
from a folder, one file per object (`python -m cli.s3store --port P DIR`).

Why not `localbucket` (PyPI), which Tansu also accepts: it answers every listing by walking
the whole bucket, and Tansu lists a partition's batches on every fetch, once per partition, so
each fetch cost grew with everything the broker ever stored and consumers fell behind within
minutes (README, Durable embedded stack). Here a listing reads only the prefix's own folder.

An object is written to a temporary file, flushed to disk (fsync) and renamed over the old
one, and the folder is flushed too, so an acknowledged write survives a power cut, not only a
killed process. Credentials are not checked: it listens on 127.0.0.1 for the broker alone.
It also sets back watermarks a cut left ahead of the stored batches (--watermarks,
cli/s3watermarks.py), keeps Tansu's partitions short (--expire, --compact, --merge:
cli/s3expiry.py, s3compact.py, s3merge.py) and counts what it is asked (`GET /_requests`,
cli/s3requests.py).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import functools
import hashlib
import os
import sys
import time
from datetime import datetime, timezone
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

from aiohttp import web

from cli.s3compact import compact
from cli.s3files import fsync_dir, synced_temp
from cli.s3expiry import parse_rule
from cli.s3maintenance import background
from cli.s3merge import merge
from cli.s3requests import LISTED, Requests
from cli.s3watermarks import settle

MAX_KEYS = 1000
# How long a batch merged into another (cli/s3merge.py) can still be read: a fetch that listed
# it just before it went reads it within its wait (50 ms in Pantau, seconds at most).
RETIRED_S = 600.0
_XML = {"Content-Type": "application/xml"}


def _error(status: int, code: str, message: str) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>'
    return web.Response(status=status, text=body, headers=_XML)


def _etag(data: bytes) -> str:
    # Of the content: Tansu updates its metadata and watermarks with If-Match, and file times
    # are too coarse (a few ms) to tell two versions of the same size apart.
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def _http_date(mtime: float) -> str:
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _iso(st: os.stat_result) -> str:
    # Milliseconds: Tansu 0.6 answers a partition's latest offset (ListOffsets) from the batch
    # with the newest LastModified, taking the first of a tie in key order; to the second, every
    # batch written in the last second tied, and the end offset came out as the first of them
    # + 1 (five batches in one second: end offset 1; tests/cli/test_end_offsets.py).
    ms = st.st_mtime_ns // 1_000_000
    return f"{_iso_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(t: int) -> str:
    # A listing page of 1,000 objects written in the same few seconds formats each second once.
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class Meta(NamedTuple):
    """What a listing shows of an object that is no longer a file (os.stat_result's names)."""

    st_mtime_ns: int
    st_size: int


class Store:
    """Buckets as folders under `root`, objects as files under their bucket."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        # Sorted file names of folders that hold only files (a partition's records): Tansu lists
        # them on every fetch, a page of 1,000 at a time, and reading and sorting the folder for
        # each page made a full listing quadratic (3.3 s at 20,000 batches). This process is the
        # only writer, so it keeps them current as it writes.
        self._names: dict[Path, list[str]] = {}
        # Batches merged into another and deleted, still listed and read as they were by a
        # reader whose listing began before they went (cli/s3merge.py): content, what a listing
        # shows of them, and when they were retired (monotonic).
        self.retired: dict[Path, tuple[bytes, Meta, float]] = {}

    def retire(self, path: Path, data: bytes) -> None:
        """Keep a batch readable for RETIRED_S once deleted (any thread; before the unlink)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        self.retired[path] = (data, Meta(st.st_mtime_ns, st.st_size), time.monotonic())

    def forget_retired(self) -> None:
        cutoff = time.monotonic() - RETIRED_S
        for path in [p for p, (_, _, at) in list(self.retired.items()) if at < cutoff]:
            self.retired.pop(path, None)

    def path(self, bucket: str, key: str = "") -> Path | None:
        parts = [bucket, *key.split("/")] if key else [bucket]
        if any(p in ("", ".", "..") or p.startswith(".tmp-") for p in parts):
            return None
        return self.root.joinpath(*parts)

    def write(self, target: Path, data: bytes, create_only: bool = False) -> os.stat_result | None:
        """Write an object durably; with `create_only`, None if it exists already (atomically:
        link(2) refuses an existing name, where a check then a rename would let two writers win)."""
        if not target.parent.is_dir():
            self._make_dirs(target.parent)
        with synced_temp(target.parent, data) as tmp:
            if create_only:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    return None
            else:
                os.replace(tmp, target)
        fsync_dir(target.parent)
        return target.stat()

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
            fsync_dir(d.parent)  # the new folder's name, durable like the objects in it
            self._names.pop(d.parent, None)  # no longer a folder of files only

    def added(self, target: Path) -> None:
        """Note an object written (called on the event loop, after the write returned)."""
        names = self._names.get(target.parent)
        if names is not None:
            i = bisect.bisect_left(names, target.name)
            if i == len(names) or names[i] != target.name:
                names.insert(i, target.name)

    def removed(self, targets: list[Path]) -> None:
        """Note objects deleted (on the event loop). Each folder's names are replaced at once, so
        a listing sees a merge's sources all there or all gone, never some (a fetch whose offset
        fell in the gap would get the batches after it, and its reader would skip to them)."""
        by_folder: dict[Path, set[str]] = {}
        for t in targets:
            by_folder.setdefault(t.parent, set()).add(t.name)
        for folder, gone in by_folder.items():
            names = self._names.get(folder)
            if names is not None:
                self._names[folder] = [n for n in names if n not in gone]

    def _files_only(self, folder: Path) -> list[str] | None:
        """The sorted file names of `folder` if it holds no folder, else None."""
        if folder in self._names:
            return self._names[folder]
        names = []
        with os.scandir(folder) as it:
            for e in it:
                if e.is_dir():
                    return None
                if not e.name.startswith(".tmp-"):
                    names.append(e.name)
        names.sort()
        self._names[folder] = names
        return names

    def page(self, bucket: str, prefix: str, after: str, limit: int) -> tuple[list[tuple[str, os.stat_result | Meta]], bool]:
        """Up to `limit` keys under `prefix` after `after`, in key order, and whether more follow."""
        base_dir, _, leaf = prefix.rpartition("/")
        top = self.path(bucket, base_dir) if base_dir else self.path(bucket)
        if top is None or not top.is_dir():
            return [], False
        names = self._files_only(top) if base_dir else None
        if names is None:
            found = [kv for kv in self.keys(bucket, prefix) if kv[0] > after]
            return found[:limit], len(found) > limit
        names = names[:]  # one state of the folder for the whole listing (the copy is atomic)
        folder = base_dir + "/"
        i = bisect.bisect_left(names, leaf)
        if after.startswith(folder):
            i = max(i, bisect.bisect_right(names, after[len(folder):]))
        elif after > folder:
            return [], False
        chosen = []
        while i < len(names) and len(chosen) <= limit and names[i].startswith(leaf):
            chosen.append(names[i])
            i += 1
        out = []
        base = str(top) + os.sep
        for name in chosen[:limit]:
            try:
                out.append((folder + name, os.stat(base + name)))
            except FileNotFoundError:
                if (kept := self.retired.get(top / name)) is not None:  # merged away after this listing began
                    out.append((folder + name, kept[1]))
        return out, len(chosen) > limit

    def keys(self, bucket: str, prefix: str) -> list[tuple[str, os.stat_result]]:
        """Keys under `prefix`, sorted, reading only the folder the prefix names (and below)."""
        base_dir, _, _ = prefix.rpartition("/")
        top = self.path(bucket, base_dir) if base_dir else self.path(bucket)
        if top is None or not top.is_dir():
            return []
        out = []
        strip = len(str(self.root / bucket)) + 1
        for directory, _, files in os.walk(top):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                full = os.path.join(directory, name)
                key = full[strip:]
                if key.startswith(prefix):
                    try:
                        out.append((key, os.stat(full)))
                    except FileNotFoundError:
                        continue
        out.sort(key=lambda kv: kv[0])
        return out


def app(store: Store, expire: Sequence[tuple[str, float]] = (),
        merges: Sequence[tuple[str, float]] = ()) -> web.Application:
    routes = web.RouteTableDef()
    locks: dict[str, asyncio.Lock] = {}
    requests = Requests()

    @routes.put("/{bucket}")
    async def create_bucket(request: web.Request) -> web.Response:
        p = store.path(request.match_info["bucket"])
        if p is None:
            return _error(400, "InvalidBucketName", "bad bucket name")
        if p.is_dir():
            return _error(409, "BucketAlreadyOwnedByYou", "the bucket exists")
        p.mkdir(parents=True)
        return web.Response(status=200)

    @routes.get("/{bucket}")
    async def list_objects(request: web.Request) -> web.Response:
        bucket = request.match_info["bucket"]
        if store.path(bucket) is None or not store.path(bucket).is_dir():  # type: ignore[union-attr]
            return _error(404, "NoSuchBucket", bucket)
        q = request.query
        prefix = q.get("prefix", "")
        after = q.get("continuation-token") or q.get("start-after", "")
        # Without max-keys (Tansu never sends it) the whole listing is one page: one state of the
        # folder, where pages taken at different times could show half a merge.
        limit = min(int(q["max-keys"]), MAX_KEYS) if "max-keys" in q else sys.maxsize
        page, truncated = await asyncio.to_thread(store.page, bucket, prefix, after, limit)
        requests.count[LISTED] += len(page)
        items = "".join(f"<Contents><Key>{escape(k)}</Key><LastModified>{_iso(st)}</LastModified>"
                        f"<ETag>\"{st.st_mtime_ns:x}-{st.st_size:x}\"</ETag><Size>{st.st_size}</Size>"
                        f"<StorageClass>STANDARD</StorageClass></Contents>" for k, st in page)
        nxt = f"<NextContinuationToken>{escape(page[-1][0])}</NextContinuationToken>" if truncated else ""
        body = (f'<?xml version="1.0" encoding="UTF-8"?>'
                f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>{escape(bucket)}</Name>'
                f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount><MaxKeys>{limit if limit < sys.maxsize else len(page)}</MaxKeys>"
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{nxt}{items}</ListBucketResult>")
        return web.Response(text=body, headers=_XML)

    @routes.put("/{bucket}/{key:.+}")
    async def put_object(request: web.Request) -> web.Response:
        p = store.path(request.match_info["bucket"], request.match_info["key"])
        if p is None:
            return _error(400, "InvalidArgument", "bad key")
        if not store.path(request.match_info["bucket"]).is_dir():  # type: ignore[union-attr]
            return _error(404, "NoSuchBucket", request.match_info["bucket"])
        data = await request.read()
        create_only = request.headers.get("If-None-Match", "").strip() == "*"
        if_match = request.headers.get("If-Match")
        # Check and write as one step per object: Tansu's optimistic updates (If-Match on its
        # watermarks and metadata) are only safe if no other write lands in between.
        async with locks.setdefault(str(p), asyncio.Lock()):
            if if_match is not None:
                try:
                    current = _etag(await asyncio.to_thread(p.read_bytes))
                except FileNotFoundError:
                    current = None
                if current != if_match.strip():
                    return _error(412, "PreconditionFailed", "the object changed")
            st = await asyncio.to_thread(store.write, p, data, create_only)
            if st is not None:
                store.added(p)
        if st is None:
            return _error(412, "PreconditionFailed", "the object exists")
        return web.Response(status=200, headers={"ETag": _etag(data)})

    async def read(request: web.Request, with_body: bool) -> web.StreamResponse:
        p = store.path(request.match_info["bucket"], request.match_info["key"])
        try:
            if p is None:
                raise FileNotFoundError
            data = await asyncio.to_thread(p.read_bytes)
            mtime = p.stat().st_mtime
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            if p is None or p not in store.retired:
                return _error(404, "NoSuchKey", "no such key") if with_body else web.Response(status=404)
            data, meta, _ = store.retired[p]
            mtime = meta.st_mtime_ns / 1e9
        headers = {"ETag": _etag(data), "Last-Modified": _http_date(mtime), "Content-Type": "application/octet-stream",
                   "Accept-Ranges": "bytes"}
        if not with_body:
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes="):
            start_s, _, end_s = rng[6:].partition("-")
            size = len(data)
            start = int(start_s) if start_s else max(0, size - int(end_s))
            end = min(int(end_s), size - 1) if (start_s and end_s) else size - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return web.Response(status=206, body=data[start:end + 1], headers=headers)
        return web.Response(status=200, body=data, headers=headers)

    @routes.get("/{bucket}/{key:.+}")  # HEAD too (aiohttp routes it here)
    async def get_object(request: web.Request) -> web.StreamResponse:
        return await read(request, request.method != "HEAD")

    @routes.delete("/{bucket}/{key:.+}")
    async def delete_object(request: web.Request) -> web.Response:
        p = store.path(request.match_info["bucket"], request.match_info["key"])
        if p is not None:
            p.unlink(missing_ok=True)
            store.removed([p])
        return web.Response(status=204)

    start, stop = background(store, expire, merges, requests.count)
    application = web.Application(client_max_size=64 << 20, middlewares=[requests.middleware()])
    application.add_routes(routes)
    application.on_startup.append(start)
    application.on_cleanup.append(stop)
    return application


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cli.s3store", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--expire", action="append", default=[], metavar="GLOB=SECONDS",
                    help="delete record batches older than SECONDS in the records folders matching GLOB "
                         "(all but the newest of each; cli/s3expiry.py)")
    ap.add_argument("--watermarks", action="append", default=[], metavar="GLOB",
                    help="before serving, set back the high watermark of the partition folders matching GLOB "
                         "to the last offset stored, where a cut left it ahead (cli/s3watermarks.py)")
    ap.add_argument("--compact", action="append", default=[], metavar="GLOB",
                    help="before serving, delete the record batches whose every key has a later version, in "
                         "the records folders matching GLOB (changelogs only; cli/s3compact.py)")
    ap.add_argument("--merge", action="append", default=[], metavar="GLOB=SECONDS",
                    help="merge the runs of record batches older than SECONDS into fewer objects, in the records "
                         "folders matching GLOB, before serving and then while running (cli/s3merge.py)")
    ap.add_argument("root", type=Path, help="folder that holds the buckets")
    args = ap.parse_args(argv)
    try:
        rules = [parse_rule(r) for r in args.expire]
        merges = [parse_rule(r, "--merge") for r in args.merge]
    except ValueError as e:
        ap.error(str(e))
    for pattern in args.watermarks:
        for partition, (before, after) in settle(args.root, pattern).items():
            print(f"s3store: {partition.relative_to(args.root)}: high watermark {before} set back to {after}, "
                  f"the end of what is stored (a cut came between Tansu's watermark and its batch)", flush=True)
    for pattern in args.compact:
        gone, folders = compact(args.root, pattern)
        print(f"s3store: compacted {pattern}: {gone} superseded batches deleted in {folders} partitions", flush=True)
    for pattern, age in merges:
        gone = merge(args.root, pattern, age)
        print(f"s3store: merged {pattern}: {len(gone)} batches merged into the ones before them", flush=True)
    web.run_app(app(Store(args.root), rules, merges), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
