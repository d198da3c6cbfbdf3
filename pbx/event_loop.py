"""The event loop every entry point runs on: uvloop where it is installed (Linux), else asyncio.

uvloop (libuv) costs less CPU per wake-up, datagram and timer than asyncio's selector loop, and
the service lives on those. ``HELPLINE_EVENT_LOOP`` (or the setting ``event_loop``) chooses:
``auto`` (uvloop if importable, the default), ``uvloop`` (refuse to run without it) or
``asyncio`` (the standard loop, e.g. to rule the loop out when hunting a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["CHOICES", "ENV", "EventLoopError", "LoopFactory", "loop_factory", "loop_name", "run"]

ENV = "HELPLINE_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopError(RuntimeError):
    """An unknown choice, or uvloop asked for where it is not installed."""


def _choice(choice: str | None) -> str:
    chosen = (choice or os.environ.get(ENV) or "auto").strip().lower()
    if chosen not in CHOICES:
        raise EventLoopError(f"{ENV}/event_loop must be one of {', '.join(CHOICES)}: {chosen!r}")
    return chosen


def loop_factory(choice: str | None = None) -> LoopFactory:
    """What creates the loop for ``choice`` (default: ``$HELPLINE_EVENT_LOOP``, else auto)."""
    chosen = _choice(choice)
    if chosen != "asyncio":
        try:
            import uvloop
        except ImportError:
            if chosen == "uvloop":
                raise EventLoopError("event_loop uvloop: uvloop is not installed") from None
        else:
            factory: LoopFactory = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: which loop runs (default: the running one)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], *, choice: str | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except EventLoopError:
        main.close()  # never awaited: no "coroutine was never awaited" warning on top
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
