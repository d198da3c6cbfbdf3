"""A handset that shares the trunk's address and dials a feature code before registering is
taken for the carrier (that is what the address says); the log says why, without anything of
the call's origin beyond the trunk address."""

from __future__ import annotations

from tests.helpers.logs import captured_logs, log_events
from tests.helpers.ports import free_port
from tests.helpers.service import MakeHelpline
from tests.peers.pjsua_phone import AsyncPjsuaPhone


async def test_a_feature_code_from_a_trunk_address_is_logged_as_a_likely_handset(
    make_helpline: MakeHelpline,
) -> None:
    async with captured_logs() as logs, make_helpline(call_flow="direct") as helpline:
        async with AsyncPjsuaPhone("unregistered") as phone:
            await phone.start(free_port())  # on 127.0.0.1: the default trunk source
            status = await phone.make_call(f"sip:*1@{helpline.host}:{helpline.port}")
            assert status == 480  # a trunk call with no volunteer registered
            plain = await phone.make_call(f"sip:09000767@{helpline.host}:{helpline.port}")
            assert plain == 480
    (hint,) = log_events(logs, "trunk_call_looks_like_handset")
    assert hint["source"] == "127.0.0.1" and hint["dialed"] == "*1"
    assert "register" in hint["hint"]
    assert hint["call"] == log_events(logs, "inbound_call")[0]["call"]
