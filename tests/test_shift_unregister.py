"""A volunteer who logged out (*0) and whose handset then unregisters gets a 200 to the REGISTER:
the roster no longer raises for a registration lapsing while logged out (which left the REGISTER
unanswered, found by capturing PJSIP traffic for the request-path fuzzer). Real PJSIP handset."""

from __future__ import annotations

from ivr.loader import DEFAULT_PLAN
from queues.roster import VolunteerState
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.service import MakeHelpline
from tests.helpers.volunteers import dial_feature_code, on_shift
from tests.peers.pjsua_phone import AsyncPjsuaPhone


async def test_unregistering_after_logging_out_is_answered_200(
    make_helpline: MakeHelpline,
) -> None:
    async with ivr_helpline(make_helpline, DEFAULT_PLAN) as helpline:
        async with AsyncPjsuaPhone("leaver") as phone:
            await on_shift(helpline, phone, "leaver")
            await dial_feature_code(helpline, phone, "*0")
            assert helpline.service.roster.get("leaver").state is VolunteerState.LOGGED_OUT
            assert await phone.unregister() == 200
        assert helpline.service.stack.request_failures == 0
        assert helpline.service.registrar.contacts("leaver", 0.0) == []
