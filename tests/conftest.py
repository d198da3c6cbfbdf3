"""Shared fixtures: one embedded PostgreSQL for the session, and the service on loopback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from pbx import event_loop, native
from pbx.db.embedded import start_embedded
from pbx.logs import configure_logging
from tests.helpers.pg_state import pg_state_dir
from tests.helpers.service import MakeHelpline, Running, clean_database, running_service
from tests.peers.sipp import settle_kept_run_dirs

configure_logging("warning", "console")
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
# A `helpline serve` subprocess started by a test stays root (the test runner's Python may live
# where the service user cannot read it); tests/test_privileges.py tests dropping root.
os.environ.setdefault("HELPLINE_RUN_AS_USER", "")


_TEST_FAILED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    """HELPLINE_NATIVE=1 (scripts/test.sh's second pass) runs on the compiled modules or not at
    all: a missing or stale build must not pass as a compiled run."""
    if native.asked_for() and not native.STATUS.active:
        raise pytest.UsageError(f"{native.ENV} is set but {native.STATUS.reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A sipp run that did not succeed keeps its directory for the report; once the test has
    passed (it expected that failure) the directory goes, so passing runs leave nothing."""
    report: pytest.TestReport = yield
    if report.failed:
        item.stash[_TEST_FAILED] = True
    if report.when == "teardown":
        settle_kept_run_dirs(test_passed=not item.stash.get(_TEST_FAILED, False))
    return report


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, event_loop.LoopFactory]:
    """Tests run on the loop production runs (uvloop where installed; HELPLINE_EVENT_LOOP)."""
    return {"service_loop": event_loop.loop_factory()}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with pg_state_dir() as state:
        server = start_embedded(state)
        yield server.url
        server.stop()


@pytest.fixture
def make_helpline(tmp_path: Path, pg_url: str) -> MakeHelpline:
    """Starts the service with an empty database and the given setting overrides."""
    counter = iter(range(1000))

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Running]:
        await clean_database(pg_url)
        state = tmp_path / f"state{next(counter)}"
        # SIP-core tests ring volunteers directly; IVR tests ask for call_flow="ivr"
        defaults = {"sip_t1": 0.1, "call_flow": "direct"}
        async with running_service(state, pg_url, **{**defaults, **overrides}) as running:
            yield running

    return make


@pytest.fixture
async def helpline(make_helpline: MakeHelpline) -> AsyncIterator[Running]:
    """The service on its defaults (only 127.0.0.1 is a trusted trunk), fast SIP timers."""
    async with make_helpline() as running:
        yield running
