"""The console's guards over HTTP (aiohttp's client): session cookie flags, CSRF on every form,
roles; a coordinator pauses and logs out a volunteer on shift (PJSIP handset, *1), and each
change is an event in the database naming the coordinator."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest

from pbx.sip.tls import ensure_self_signed
from pbx.web.accounts import AccountRepository, Role
from queues.roster import VolunteerState
from tests.helpers.service import MakeHelpline, Running, free_port
from tests.helpers.volunteers import on_shift, state
from tests.peers.pjsua_phone import AsyncPjsuaPhone

PASSWORD = "staple-battery-horse-42"


def browser_like() -> aiohttp.ClientSession:
    """Keeps cookies for an IP address too, as browsers do (aiohttp's jar does not by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signed_in(http: aiohttp.ClientSession, base: str, username: str) -> str:
    """Logs in; returns the session's CSRF token (from the page's forms)."""
    page = await (await http.get(f"{base}/console/login")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    async with http.post(
        f"{base}/console/login",
        data={"csrf": token.group(1), "username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback in this test
    page = await (await http.get(f"{base}/console")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    return token.group(1)


async def events(helpline: Running, kind: str) -> list[dict[str, object]]:
    assert helpline.service.db is not None
    rows = await helpline.service.db.pool.fetch("SELECT data FROM events WHERE kind = $1", kind)
    return [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]


async def test_coordinator_pauses_and_logs_out_a_volunteer(make_helpline: MakeHelpline) -> None:
    port = free_port()
    async with make_helpline(call_flow="ivr", web_port=port) as helpline:
        base = f"http://127.0.0.1:{port}"
        assert helpline.service.db is not None
        accounts = AccountRepository(helpline.service.db.pool)
        await accounts.create("sam", PASSWORD, Role.COORDINATOR)
        async with AsyncPjsuaPhone("anna") as anna, browser_like() as http:
            await on_shift(helpline, anna, "anna")
            assert state(helpline, "anna") is VolunteerState.AVAILABLE
            csrf = await signed_in(http, base, "sam")
            page = await (await http.get(f"{base}/console")).text()
            assert "registered · udp · not encrypted" in page

            # a form without its token, or with another, changes nothing
            for token in (None, "forged"):
                data = {} if token is None else {"csrf": token}
                response = await http.post(f"{base}/console/volunteers/anna/pause", data=data)
                assert response.status == 403
            assert state(helpline, "anna") is VolunteerState.AVAILABLE
            # a coordinator may not edit a volunteer
            response = await http.post(
                f"{base}/console/volunteers/anna/edit", data={"csrf": csrf, "region": "Zeeland"}
            )
            assert response.status == 403

            response = await http.post(f"{base}/console/volunteers/anna/pause", data={"csrf": csrf})
            assert response.status == 200
            assert state(helpline, "anna") is VolunteerState.PAUSED
            response = await http.post(
                f"{base}/console/volunteers/anna/logout", data={"csrf": csrf}
            )
            assert response.status == 200
            assert state(helpline, "anna") is VolunteerState.LOGGED_OUT
            # pausing one who is logged out is refused, with the reason
            response = await http.post(f"{base}/console/volunteers/anna/pause", data={"csrf": csrf})
            assert response.status == 409

            for kind in ("console.volunteer_pause", "console.volunteer_logout"):
                await until_rows(helpline, kind)
                assert [(e["by"], e["volunteer"]) for e in await events(helpline, kind)] == [
                    ("sam", "anna")
                ]

            # signed out: the session is gone
            await http.post(f"{base}/console/logout", data={"csrf": csrf})
            response = await http.get(f"{base}/console", allow_redirects=False)
            assert response.status == 303 and response.headers["Location"] == "/console/login"


async def until_rows(helpline: Running, kind: str) -> None:
    for _ in range(100):
        if await events(helpline, kind):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} event written")


async def test_wallboard_needs_no_login_and_console_does(make_helpline: MakeHelpline) -> None:
    port = free_port()
    async with make_helpline(web_port=port), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        response = await http.get(f"{base}/wallboard")
        assert response.status == 200
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert '<script src="/static/wallboard.js"' in await response.text()
        response = await http.get(f"{base}/console", allow_redirects=False)
        assert response.status == 303
        response = await http.get(f"{base}/static/..%2Fconsole.py")
        assert response.status == 404


async def test_console_over_https_has_secure_cookies(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    cert, key = ensure_self_signed(tmp_path / "web-tls", "127.0.0.1")
    port = free_port()
    async with (
        make_helpline(web_port=port, web_tls_cert=cert, web_tls_key=key),
        aiohttp.ClientSession() as http,
    ):
        response = await http.get(f"https://127.0.0.1:{port}/console/login", ssl=False)
        assert response.status == 200
        assert "Secure" in response.headers["Set-Cookie"]
        with pytest.raises(aiohttp.ClientError):  # no plain HTTP on that port
            await http.get(f"http://127.0.0.1:{port}/console/login")
