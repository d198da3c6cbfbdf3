"""Callers in tests: a PJSIP caller on the national number who picks a language."""

from __future__ import annotations

from tests.helpers.ports import free_port
from tests.helpers.service import Running
from tests.peers.pjsua_phone import AsyncPjsuaPhone

CALLER_NUMBER = "0612345678"  # what the caller's phone sends; it must reach nobody


async def call_queue(helpline: Running, caller: AsyncPjsuaPhone, key: str = "1") -> None:
    """A caller on the national number picks a language in the menu."""
    await caller.start(free_port())
    uri = f"sip:09000767@{helpline.host}:{helpline.port}"
    headers = {"P-Asserted-Identity": f"<sip:{CALLER_NUMBER}@127.0.0.1>"}
    assert await caller.make_call(uri, headers=headers) == 200
    await caller.send_dtmf(key)
