"""Running a sandbox component (a process kwokctl starts and stops with the sandbox)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any


def run_component(main: Coroutine[Any, Any, None], log: logging.Logger) -> int:
    """Log to stderr (kwokctl keeps it as the component's log), run ``main`` until it ends or SIGTERM/SIGINT
    cancels it; 0 either way."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    loop = asyncio.new_event_loop()
    task = loop.create_task(main)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        log.info("stopped")
    finally:
        loop.close()
    return 0
