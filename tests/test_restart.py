"""A restart costs no volunteer their shift: the service is killed (SIGKILL, as a crash or a
pulled plug) and started again, and the next trunk call reaches the volunteer who was on
shift without anything done on the handset: no new REGISTER, no *1 again. With the database
up (the newer of its copy and the local snapshots), with the snapshots lost (the `shifts` and
`registrations` tables alone) and with the database unreachable at the restart (the snapshots
alone)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from ivr.loader import DEFAULT_PLAN
from tests.helpers.ivr_helpline import without_wrap_up
from tests.helpers.polling import until
from tests.helpers.served import Served, fresh_volunteers
from tests.helpers.service import HANDSET_HOST, free_port
from tests.helpers.volunteers import PASSWORD, on_shift_in_database
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import run_sipp_async

RESTART_LIMIT = 5.0  # seconds from the restart to taking calls (issue 10)


def shift_state(state_dir: Path, user: str) -> str | None:
    try:
        doc = json.loads((state_dir / "shifts.snapshot.json").read_text())
    except (OSError, ValueError):
        return None
    entry = doc.get(user)
    return entry["state"] if isinstance(entry, dict) else None


async def become_ready(served: Served, timeout: float) -> float:
    """Seconds until /ready answers 200 (fails past `timeout`)."""
    started = time.monotonic()
    await until(lambda: served.ready() == 200, timeout=timeout)
    return time.monotonic() - started


# "up": both copies there; "up-without-snapshots": another machine with the same database;
# "unreachable": the database is away at the restart, the local snapshots carry it.
@pytest.mark.parametrize("database_at_restart", ["up", "up-without-snapshots", "unreachable"])
async def test_a_killed_service_comes_back_with_the_volunteer_on_shift(
    tmp_path: Path, pg_url: str, database_at_restart: str
) -> None:
    await fresh_volunteers(pg_url, tmp_path, "vera", password=PASSWORD)
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    served = Served(tmp_path / "state", plan, pg_url, env={"HELPLINE_VOLUNTEER_WHISPER": ""})
    try:
        served.start()
        await become_ready(served, 60)
        async with AsyncPjsuaPhone("vera") as phone:
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await phone.register("127.0.0.1", served.sip_port, "vera", PASSWORD) == 200
            assert await phone.make_call(f"sip:*1@{served.target}") == 200
            assert await phone.wait_disconnected(timeout=20) == 200
            await until(lambda: shift_state(served.state_dir, "vera") == "available")
            for _ in range(100):
                if await on_shift_in_database(pg_url):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the shift was not written behind to the database")
            served.send(signal.SIGKILL)
            served.wait_exit(10)
            if database_at_restart == "up-without-snapshots":
                for snapshot in served.state_dir.glob("*.snapshot.json"):
                    snapshot.unlink()

            # The database may be away when the machine comes back: the snapshots carry it.
            unreachable = f"postgresql://helpline@127.0.0.1:{free_port()}/helpline"
            served.start(unreachable if database_at_restart == "unreachable" else None)
            took = await become_ready(served, RESTART_LIMIT)
            restored = [e for e in served.events() if e["event"] == "shift_restored"]
            assert [(e["user"], e["state"], e["registered"]) for e in restored] == [
                ("vera", "available", True)
            ], served.describe()

            # A carrier's call (sipp from the trunk address) presses 1 in the menu, goes to
            # the Dutch queue and rings the volunteer's handset.
            call = asyncio.create_task(
                run_sipp_async(
                    "uac_call_key_wait_bye", served.target, service="09000767",
                    keys={"bye_within_ms": "40000"}, timeout_s=60,
                )
            )  # fmt: skip
            try:
                incoming = await phone.wait_incoming(timeout=30)
            except Exception:
                timeline = [
                    (e.get("timestamp"), e["event"], e.get("path") or e.get("error") or "")
                    for e in served.events()
                ]
                call.cancel()
                raise AssertionError(f"not rung; the service said {timeline}") from None
            assert '"Hulplijn NL"' in incoming.remote_uri
            await phone.answer(200)
            await asyncio.sleep(1.0)
            await phone.hangup()  # the volunteer ends the conversation: BYE to the caller
            result = await call
            timeline = [(e.get("timestamp"), e["event"]) for e in served.events()]
            assert result.ok, f"{timeline}\n{result.describe()}"
    finally:
        served.stop()
    second_run = served.events(2)
    # nothing came from the handset before the call: its binding was restored, not renewed
    names = [e["event"] for e in second_run]
    assert "registration" not in names[: names.index("inbound_call")]
    database = [e for e in second_run if e["event"] == "service_started"][0]["database"]
    assert database == "external"
    if database_at_restart == "unreachable":
        assert [e for e in second_run if e["event"] == "database_unavailable"]
    print(f"restart to /ready: {took:.2f} s ({database_at_restart} database)")
