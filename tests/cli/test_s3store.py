"""cli/s3store.py speaks the S3 that Tansu's `s3://` engine relies on: create-only and
compare-and-swap writes, prefix listings in key order with paging, and objects that outlive
the process."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from cli.stack import Child, create_bucket, free_port, wait_port

PUT_ONLY_NEW = {"If-None-Match": "*"}


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[tuple[httpx.Client, Child, Path]]:
    port = free_port()
    child = Child("store", [sys.executable, "-m", "cli.s3store", "--port", str(port), str(tmp_path / "data")],
                  tmp_path / "store.log").start()
    try:
        wait_port("127.0.0.1", port, 15, child.proc, "store")
        create_bucket(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            yield c, child, tmp_path / "data"
    finally:
        child.stop()


def keys(xml: str) -> list[str]:
    return re.findall(r"<Key>([^<]+)</Key>", xml)


def test_create_only_and_compare_and_swap(s3) -> None:
    c, _, _ = s3
    first = c.put("/tansu/t/watermark.json", content=b'{"high":1}', headers=PUT_ONLY_NEW)
    assert first.status_code == 200
    assert c.put("/tansu/t/watermark.json", content=b'{"high":2}', headers=PUT_ONLY_NEW).status_code == 412
    etag = first.headers["ETag"]
    assert c.get("/tansu/t/watermark.json").headers["ETag"] == etag
    swapped = c.put("/tansu/t/watermark.json", content=b'{"high":2}', headers={"If-Match": etag})
    assert swapped.status_code == 200 and swapped.headers["ETag"] != etag
    # A writer that read the old version loses, even with the same length of content.
    assert c.put("/tansu/t/watermark.json", content=b'{"high":3}', headers={"If-Match": etag}).status_code == 412
    assert c.get("/tansu/t/watermark.json").content == b'{"high":2}'
    assert c.get("/tansu/t/missing.json").status_code == 404
    assert c.head("/tansu/t/watermark.json").headers["Content-Length"] == "10"


def test_listing_is_by_prefix_in_key_order_with_pages(s3) -> None:
    c, _, _ = s3
    for i in range(1203):
        c.put(f"/tansu/p/0/records/{i:020d}.batch", content=b"x")
    c.put("/tansu/p/1/records/00000000000000000000.batch", content=b"y")
    got, token = [], None
    while True:
        params = {"list-type": "2", "prefix": "p/0/records/", "max-keys": "500",
                  **({"continuation-token": token} if token else {})}
        page = c.get("/tansu", params=params).text
        got += keys(page)
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", page)
        if not m:
            break
        token = m.group(1)
    assert got == [f"p/0/records/{i:020d}.batch" for i in range(1203)]
    # Without max-keys (Tansu's way) one page holds it all: one state of the folder, so a
    # listing never shows half of a merge (cli/s3merge.py).
    whole = c.get("/tansu", params={"list-type": "2", "prefix": "p/0/records/"}).text
    assert keys(whole) == got and "<IsTruncated>false</IsTruncated>" in whole
    assert keys(c.get("/tansu", params={"list-type": "2", "prefix": "p/1/"}).text) == \
        ["p/1/records/00000000000000000000.batch"]


def test_objects_outlive_a_kill_of_the_store(s3) -> None:
    c, child, data = s3
    assert c.put("/tansu/k/records/1.batch", content=b"kept", headers=PUT_ONLY_NEW).status_code == 200
    child.kill()
    assert (data / "tansu" / "k" / "records" / "1.batch").read_bytes() == b"kept"
    assert not [p for p in data.rglob(".tmp-*")], "a temporary file was left behind"
