"""Run an ingest process: `python -m services.ingest gateway|validator`."""

from __future__ import annotations

import asyncio
import sys

from shared.config import load_for
from shared.logging import setup_logging


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("gateway", "validator"):
        print("usage: python -m services.ingest gateway|validator", file=sys.stderr)
        return 2
    setup_logging()
    config = load_for("ingest")
    if argv[0] == "gateway":
        import uvicorn

        from services.ingest.api import create_app

        uvicorn.run(create_app(config), host=config.ingest.host, port=config.ingest.port,
                    log_level="warning", access_log=False, loop="uvloop", http="httptools")
        return 0
    from services.ingest.validator import serve

    import uvloop

    uvloop.install()
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
