"""Structured JSON logging (structlog), with a last line of defence for anonymity.

Code never logs a caller's number; as defence in depth every log value is scrubbed of anything that
looks like a phone number (6+ digits, optionally with +, spaces or dashes) before it is written:
text values, the text inside lists, tuples, sets and dicts (keys too), and the text written for any
other object (its repr, or what its ``__structlog__`` gives), in either format. Numbers logged as
integers are left alone: byte counts and durations are integers, and code never holds a caller's
number as one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

_PHONE_LIKE = re.compile(r"(?<![\w.])\+?\d(?:[\d\- ]?\d){5,}(?![\w.])")
EventDict = MutableMapping[str, Any]
_UNSCRUBBED = frozenset({"timestamp", "level", "port", "pid", "count", "seconds"})


def scrub(text: str) -> str:
    return _PHONE_LIKE.sub("[redacted]", text)


def _scrub_numbers(_: Any, __: str, event: EventDict, *, objects: bool = False) -> EventDict:
    """Every text of the line scrubbed; with ``objects`` (the console format, which writes an
    object's repr itself, after the processors) also every object turned into its scrubbed text.
    The JSON format needs no such step: its encoder asks `_as_text` for each object it meets."""
    texts: dict[str, str] = {}
    nested: list[str] = []
    for key, value in event.items():
        if key in _UNSCRUBBED:
            continue
        if isinstance(value, str):
            texts[key] = value
        elif isinstance(value, _CONTAINERS) or (objects and not isinstance(value, _SCALARS)):
            nested.append(key)
    # One search over them all first: almost no line holds anything to scrub. NUL matches none
    # of the pattern's characters, so a match never spans two texts.
    if _PHONE_LIKE.search("\x00".join(texts.values())) is not None:
        for key, value in texts.items():
            event[key] = scrub(value)
    for key in nested:  # rare: a few lines log a list (statuses)
        event[key] = _scrub_within(event[key], objects=objects)
    return event


def _scrub_numbers_and_objects(logger: Any, name: str, event: EventDict) -> EventDict:
    return _scrub_numbers(logger, name, event, objects=True)


_CONTAINERS = (list, tuple, set, frozenset, dict)
_SCALARS = (str, int, float, bool, type(None))  # what either format writes as it is
_MAX_DEPTH = 8  # nothing the service logs nests deeper; beyond it a value is not written


def _scrub_within(value: Any, depth: int = 0, *, objects: bool = False) -> Any:
    """``value`` with every text inside it scrubbed (containers keep their base type); with
    ``objects``, every other object inside it becomes its scrubbed text (`_as_text`)."""
    if isinstance(value, str):
        return scrub(value)
    if not isinstance(value, _CONTAINERS):
        if objects and not isinstance(value, _SCALARS):
            return _as_text(value, objects=True)
        return value
    if depth >= _MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        depth += 1
        return {
            _scrub_within(k, depth, objects=objects): _scrub_within(v, depth, objects=objects)
            for k, v in value.items()
        }
    items = [_scrub_within(v, depth + 1, objects=objects) for v in value]
    # the base types, never a subclass's constructor (a named tuple takes its fields one by one);
    # a frozen set stays frozen, since it may be a dict key
    if isinstance(value, tuple):
        return tuple(items)
    if isinstance(value, frozenset):
        return frozenset(items)
    if isinstance(value, set):
        return set(items)
    return items


class _LevelAndTimestamp:
    """structlog's ``add_log_level`` and ``TimeStamper(fmt="iso", utc=True)`` in one step (a log
    line passes through every processor, five or six times a call), with the date and time of
    day formatted once a second (per line only the microseconds: ~1 us instead of ~5). Always
    six digits of microseconds, where ``isoformat`` leaves them out in the one case they are
    all zero."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second: tuple[int, str] = (-1, "")  # one tuple: threads read a matching pair

    def __call__(self, _: Any, method_name: str, event: EventDict) -> EventDict:
        event["level"] = _LEVEL_NAMES.get(method_name, method_name)
        now = self._clock()
        second = int(now)
        micro = round((now - second) * 1_000_000)  # as datetime rounds it: the nearest
        if micro == 1_000_000:
            second, micro = second + 1, 0
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        event["timestamp"] = f"{cached[1]}.{micro:06d}Z"
        return event


def _as_text(value: Any, *, objects: bool = False) -> Any:
    """An object as structlog's renderers write it (its __structlog__(), else its repr),
    scrubbed: the processors saw the object, not this text. The JSON encoder calls this for each
    value JSON has no type for (and again for any inside what it returns)."""
    try:
        structured = value.__structlog__()
    except AttributeError:
        return scrub(repr(value))
    return _scrub_within(structured, objects=objects)


# json.dumps with a `default` builds a new JSONEncoder for every line; this one is made once.
_ENCODER = json.JSONEncoder(default=_as_text)


def _json_line(event: EventDict, **_: Any) -> str:
    """JSONRenderer's serializer: the line as json.dumps would write it."""
    return _ENCODER.encode(event)


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level names them


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """The one logging setup: structlog for our modules, and the standard library's loggers
    (asyncio, asyncpg, ...) rendered by the same chain, scrubber included, to the same stream."""
    out = stream or sys.stdout
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_line)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    scrubber = _scrub_numbers if fmt == "json" else _scrub_numbers_and_objects
    threshold = logging.getLevelNamesMapping()[level.upper()]
    # No context variables are merged: nothing binds any (a line names its call: call=ref).
    shared: list[Any] = [_LevelAndTimestamp()]
    # One writer for every line until the next configuration, not one made per log call.
    writer = structlog.WriteLogger(out)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, scrubber, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrubber,
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
