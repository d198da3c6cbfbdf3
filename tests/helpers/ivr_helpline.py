"""The service with the IVR of a dialplan, its clock fixed on a Tuesday afternoon."""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pyrage import x25519

from pbx.calls.inbound import HelplineCalls
from tests.helpers.logs import log_events
from tests.helpers.service import MakeHelpline, Running

TUESDAY_1500 = datetime(2026, 11, 24, 15, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
# voicemail is configured as in production: encrypted to a staff key the service never holds
STAFF_KEY = x25519.Identity.generate()


def without_wrap_up(plan: Path, into: Path) -> Path:
    """A copy of `plan` whose queues give volunteers no wrap-up time between calls."""
    text = re.sub(r"\n    wrap_up: \d+[^\n]*", "", plan.read_text())
    text = re.sub(r"(\n    language: \w+\n)(    schedule: )", r"\1    wrap_up: 0\n\2", text)
    into.write_text(text)
    return into


@asynccontextmanager
async def ivr_helpline(
    make_helpline: MakeHelpline, plan: Path, *, wrap_up: bool = False, **settings: object
) -> AsyncIterator[Running]:
    """The service with the IVR, its clock on a Tuesday afternoon (every queue open). Unless
    `wrap_up`, volunteers may take the next call at once."""
    with tempfile.TemporaryDirectory() as tmp:
        if not wrap_up:
            plan = without_wrap_up(plan, Path(tmp) / "dialplan.yaml")
        async with _ivr_service(make_helpline, plan, settings) as helpline:
            yield helpline


@asynccontextmanager
async def _ivr_service(
    make_helpline: MakeHelpline, plan: Path, settings: dict[str, object]
) -> AsyncIterator[Running]:
    settings.setdefault("volunteer_whisper", "")
    settings.setdefault("voicemail_recipients", [str(STAFF_KEY.to_public())])
    async with make_helpline(call_flow="ivr", dialplan=plan, **settings) as helpline:
        app = helpline.service.switchboard.app
        assert isinstance(app, HelplineCalls)
        app.clock = lambda: TUESDAY_1500
        app.waiting.comfort_interval = 0.5
        yield helpline


def ivr_paths(logs: io.StringIO) -> list[list[str]]:
    return [e["path"] for e in log_events(logs, "ivr_outcome")]
