"""A lossy network: sipp drops 15% of the packets it sends and receives, so transactions only
complete through retransmissions (RFC 3261 timers A and G on both sides), and none is done twice.

sipp 3.6.1 has no seed for its loss: with ten calls of four or more messages, a run without any
loss (about 0.2%) or one where a message is lost on all seven tries (far rarer) would be chance.
"""

from __future__ import annotations

from tests.peers.sipp import run_sipp_async
from tests.service_fixture import Running


async def test_calls_complete_through_packet_loss(helpline: Running) -> None:
    result = await run_sipp_async(
        "uac_expect_status",
        helpline.target,
        service="09000767",
        keys={"expect_status": "480"},
        calls=10,
        rate=5,
        extra=["-lost", "15"],
        timeout_s=90,
    )
    result.assert_ok()
    assert result.successful == 10 and result.retransmissions > 0
    stats = helpline.service.stack.layer.stats
    assert stats.server_created >= 10
    assert helpline.service.switchboard.legs == {}  # every call ended, none left behind
