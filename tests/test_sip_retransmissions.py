"""A lossy network: sipp drops 15% of the packets it sends and receives, so transactions only
complete through retransmissions (RFC 3261 timers A and G on both sides), and none is done twice.

sipp 3.6.1 has no seed for its loss. A retransmission follows when an INVITE, a 480 or an ACK is
lost (sipp resends the INVITE, the service resends the 480 on timer G); with twenty calls the
chance that none of those 60 messages is lost is 0.85**60, about 0.006%.
"""

from __future__ import annotations

from tests.helpers.service import Running
from tests.peers.sipp import run_sipp_async


async def test_calls_complete_through_packet_loss(helpline: Running) -> None:
    result = await run_sipp_async(
        "uac_expect_status",
        helpline.target,
        service="09000767",
        keys={"expect_status": "480"},
        calls=20,
        rate=10,
        extra=["-lost", "15"],
        timeout_s=90,
    )
    result.assert_ok()
    stats = helpline.service.stack.layer.stats
    assert result.successful == 20
    assert result.retransmissions + stats.retransmissions_sent > 0
    assert stats.server_created >= 20
    assert helpline.service.switchboard.legs == {}  # every call ended, none left behind
