"""The HTTP client every HTTP channel shares (webhook, Telegram, Slack, SMS gateway).

    http = HttpPool(64)
    answer = await http.post(url, content=body, headers={...}, timeout=5.0)
    answer.status_code, answer.headers.get("retry-after"), answer.content
    await http.aclose()

Built on aiohttp rather than httpx: httpx spends about six times the CPU per webhook POST
(measured against the same receiver with 32 in flight), and HTTP is the largest single share
of notify's CPU per page.

Failures without an HTTP answer raise `TimeoutError` or an `HttpError` whose class name is
all a caller keeps: the library's own messages can quote the URL, and URLs can carry secrets
(a bot token in a Telegram path, a gateway key in a query string).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import yarl


class HttpError(Exception):
    """A request that got no HTTP answer (the subclass says why)."""


class ConnectError(HttpError):
    """No connection, or it broke before the answer was complete."""


class ProtocolError(HttpError):
    """The peer answered something that is not HTTP/1.1."""


class UnsupportedURL(HttpError):
    """Not an http(s) URL with a host: retrying cannot help."""


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP response as a channel judges it: status, headers and body."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes


class HttpPool:
    """Up to `max_connections` kept-alive connections over all hosts. Redirects are not
    followed (a redirect is a misconfigured endpoint, not a delivery) and no cookies are kept
    (one receiver's cookie must never reach another)."""

    def __init__(self, max_connections: int = 64):
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp wants its session made inside the running event loop.
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def request(self, method: str, url: str, *, timeout: float, content: bytes | None = None,
                      json: Any = None, headers: Mapping[str, str] | None = None) -> HttpAnswer:
        """One request; `timeout` bounds it whole (waiting for a free connection included)."""
        hdrs = dict(headers or {})
        if json is not None:
            content = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            # encoded=True: sent exactly as the channel built it (a templated query string
            # must not be re-quoted on the way).
            target = yarl.URL(url, encoded=True)
        except (ValueError, TypeError):
            raise UnsupportedURL() from None
        if target.scheme not in ("http", "https") or not target.host:
            raise UnsupportedURL()
        try:
            async with self._client().request(method, target, data=content, headers=hdrs, allow_redirects=False,
                                              timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return HttpAnswer(resp.status, resp.headers, await resp.read())
        except TimeoutError:  # asyncio's and aiohttp's timeouts are this class too
            raise TimeoutError() from None
        except aiohttp.InvalidURL:
            raise UnsupportedURL() from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            raise ConnectError() from None
        except aiohttp.ClientError:
            raise ProtocolError() from None

    async def post(self, url: str, **kw: Any) -> HttpAnswer:
        return await self.request("POST", url, **kw)

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
