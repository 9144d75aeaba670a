"""Log setup shared by the services: one line per event, no secrets, no report bodies."""

from __future__ import annotations

import logging
import os


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("PANTAU_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # aiokafka logs every reconnect attempt at ERROR; keep the services' own lines readable.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
