"""Run the notify service: `python -m services.notify` (config path in PANTAU_CONFIG).

A bad config stops it with status 2 and a message naming each key at fault."""

from __future__ import annotations

import asyncio
import sys

from shared.config import load_for
from shared.logging import setup_logging


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m services.notify", file=sys.stderr)
        return 2
    setup_logging()
    from shared.notify_config import NotifyConfig

    nc = NotifyConfig.of(config := load_for("notify"))
    import uvloop

    from services.notify.service import serve

    uvloop.install()
    return asyncio.run(serve(config, nc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
