"""Structured JSON logging (structlog), with a last line of defence for anonymity.

Code never logs a caller's number; as defence in depth every log value is scrubbed of anything that
looks like a phone number (6+ digits, optionally with +, spaces or dashes) before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_PHONE_LIKE = re.compile(r"(?<![\w.])\+?\d(?:[\d\- ]?\d){5,}(?![\w.])")
_SAFE_KEYS = frozenset({"timestamp", "level", "event", "port", "pid", "count", "seconds"})


def scrub(text: str) -> str:
    return _PHONE_LIKE.sub("[redacted]", text)


def _scrub_numbers(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key not in _SAFE_KEYS and isinstance(value, str):
            event[key] = scrub(value)
    if isinstance(event.get("event"), str):
        event["event"] = scrub(event["event"])
    return event


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """The one logging setup: structlog for our modules, and the standard library's loggers
    (asyncio, asyncpg, ...) rendered by the same chain, scrubber included, to the same stream."""
    out = stream or sys.stdout
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    threshold = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _scrub_numbers, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _scrub_numbers,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(threshold)


_OURS = "_helpline_handler"  # marks the handler a previous call installed (tests reconfigure)
