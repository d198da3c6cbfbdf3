"""The coordinators' console in a real headless Chromium: log in, edit a volunteer (written to
the database with who did it), refuse a broken dialplan with its line numbers and reload a good
one; a wrong password is refused and repeated failures are held off for a while."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from pbx.db.volunteers import VolunteerRepository
from pbx.web.accounts import AccountRepository, Role
from pbx.web.dialplan_view import fingerprint
from tests.helpers.browser import Browser, chromium
from tests.helpers.service import MakeHelpline, Running, free_port
from tests.helpers.volunteers import PASSWORD

ADMIN_PASSWORD = "staple-battery-horse-42"


async def log_in(browser: Browser, base: str, username: str, password: str) -> None:
    await browser.get(f"{base}/console/login")
    await browser.fill("#username", username)
    await browser.fill("#password", password)
    await browser.click("#login")


async def with_admin(helpline: Running) -> None:
    assert helpline.service.db is not None
    await AccountRepository(helpline.service.db.pool).create("lotte", ADMIN_PASSWORD, Role.ADMIN)


async def test_console_edits_a_volunteer_and_reloads_the_dialplan(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    plan = tmp_path / "dialplan.yaml"
    shutil.copy(DEFAULT_PLAN, plan)
    port = free_port()
    async with make_helpline(call_flow="ivr", dialplan=plan, web_port=port) as helpline:
        base = f"http://127.0.0.1:{port}"
        await with_admin(helpline)
        await helpline.add_volunteer("anna", PASSWORD)
        async with chromium() as browser:
            await log_in(browser, base, "lotte", ADMIN_PASSWORD)
            await browser.until_text("nav .who", lambda t: t == "lotte (admin)")
            row = "#v-anna"
            assert await browser.text(f"{row} .languages") == "nl"
            assert await browser.text(f"{row} .handsets") == "not registered"
            await browser.fill(f"{row} input[name=languages]", "nl,ar")
            await browser.fill(f"{row} input[name=region]", "Utrecht")
            await browser.click(f"{row} form.edit button")
            await browser.until_text("#message", lambda t: t == "anna: edit done.")
            assert await browser.text(f"{row} .languages") == "nl, ar"
            assert await browser.text(f"{row} .region") == "Utrecht"
            await browser.screenshot("console")
            # in the database and in memory (the registrar's directory), with who did it
            assert helpline.service.db is not None
            pool = helpline.service.db.pool
            stored = await VolunteerRepository(pool).get("anna")
            assert stored.languages == ("nl", "ar") and stored.region == "Utrecht"
            assert helpline.service.profiles["anna"].region == "Utrecht"
            await until_event(helpline, "console.volunteer_edit")
            row_data = await pool.fetchval(
                "SELECT data FROM events WHERE kind = 'console.volunteer_edit'"
            )
            data = json.loads(row_data) if isinstance(row_data, str) else row_data
            assert data["by"] == "lotte" and data["volunteer"] == "anna"

            # a broken plan is refused with its line number; the running one stays
            version = fingerprint(helpline.service.plans.current())
            good = plan.read_text()
            broken = good.replace("overflow: queue_full", "overflow: no_such_step", 1)
            line = good[: good.index("overflow: queue_full")].count("\n") + 1
            plan.write_text(broken)
            await browser.get(f"{base}/console/dialplan")
            assert await browser.until_text("#version", bool) == version
            await browser.click("#reload")
            messages = await browser.until_text("#messages", lambda t: "not loaded" in t)
            assert f"{plan}:{line}:" in messages and "no_such_step" in messages
            assert await browser.text("#version") == version
            await browser.screenshot("console-dialplan-refused")
            # a good one (the dutch queue waits less) is loaded and becomes the version
            plan.write_text(good.replace("max_wait: 900", "max_wait: 600", 1))
            await browser.click("#reload")
            await browser.until_text("#check p", lambda t: t == "Loaded.")
            new_version = fingerprint(helpline.service.plans.current())
            assert new_version != version
            assert await browser.text("#version") == new_version
            assert helpline.service.dispatcher.queues["dutch"].max_wait == 600
            await browser.screenshot("console-dialplan")


async def answer_page(browser: Browser) -> str:
    """The page after a login: who is signed in, or the refusal (read once it has loaded)."""
    for _ in range(100):
        who, message = await browser.text("nav .who"), await browser.text("#message")
        if who is not None:
            return who
        if message is not None:
            assert message.startswith("Too many"), message
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("no answer to the login")


async def until_event(helpline: Running, kind: str) -> None:
    assert helpline.service.db is not None
    pool = helpline.service.db.pool
    for _ in range(100):
        if await pool.fetchval("SELECT count(*) FROM events WHERE kind = $1", kind):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} event written")


async def test_wrong_password_refused_and_repeated_failures_held_off(
    make_helpline: MakeHelpline,
) -> None:
    port = free_port()
    async with make_helpline(web_port=port) as helpline:
        base = f"http://127.0.0.1:{port}"
        await with_admin(helpline)
        async with chromium() as browser:
            for _ in range(3):
                await log_in(browser, base, "lotte", "not-the-password-at-all")
                await browser.until_text("#message", lambda t: t == "Wrong username or password.")
            # now even the right password is held off, unread
            await log_in(browser, base, "lotte", ADMIN_PASSWORD)
            held = await browser.until_text("#message", lambda t: t.startswith("Too many"))
            assert "try again in" in held
            await browser.screenshot("console-login-held-off")
            # and once the back-off (2 s after the third failure) has passed, it works: attempts
            # held off are not read, so they do not count as failures
            for _ in range(40):
                await asyncio.sleep(0.25)
                await log_in(browser, base, "lotte", ADMIN_PASSWORD)
                if await answer_page(browser) == "lotte (admin)":
                    break
            else:
                raise AssertionError("still held off after 10 s")
