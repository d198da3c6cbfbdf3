"""Capturing the service's structured log lines in a test, and reading its events back."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pbx.logs import configure_logging


@asynccontextmanager
async def captured_logs() -> AsyncIterator[io.StringIO]:
    logs = io.StringIO()
    configure_logging("info", "json", stream=logs)
    try:
        yield logs
    finally:
        configure_logging("warning", "console")


def log_events(logs: io.StringIO, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of one event, oldest first."""
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    return [e for e in lines if e["event"] == name]
