"""The UAS core's 2xx retransmitter (RFC 3261 13.3.1.4), sans-IO with a fake clock."""

from __future__ import annotations

import pytest

from pbx.sip.message import Response
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.timers import Timers
from pbx.sip.transactions import NoAck, Send, Uas2xxRetransmitter

PHONE = Peer(TransportKind.UDP, "127.0.0.2", 5070)


def drive(retransmitter: Uas2xxRetransmitter, end: float) -> list[tuple[float, Send | NoAck]]:
    out: list[tuple[float, Send | NoAck]] = []
    while (deadline := retransmitter.next_deadline()) is not None and deadline <= end:
        out.extend((deadline, e) for e in retransmitter.on_timer(deadline))
    return out


def test_doubles_from_t1_to_t2_then_reports_no_ack_after_64_t1() -> None:
    ok = Response(200)
    retransmitter = Uas2xxRetransmitter(ok, PHONE, 10.0)
    fired = drive(retransmitter, 100.0)
    sends = [t for t, e in fired if isinstance(e, Send)]
    assert sends == [10.5, 11.5, 13.5, 17.5, 21.5, 25.5, 29.5, 33.5, 37.5, 41.5]
    assert all(e == Send(ok, PHONE) for _, e in fired[:-1])
    assert fired[-1] == (42.0, NoAck(ok))
    assert retransmitter.finished and retransmitter.next_deadline() is None
    assert retransmitter.on_timer(50.0) == []


def test_ack_stops_it() -> None:
    retransmitter = Uas2xxRetransmitter(Response(200), PHONE, 0.0, Timers(t1=0.1, t2=0.4))
    assert len(drive(retransmitter, 0.35)) == 2  # at 0.1 and 0.3
    retransmitter.ack_received()
    assert retransmitter.acked and retransmitter.finished
    assert retransmitter.next_deadline() is None
    assert retransmitter.on_timer(10.0) == []


def test_early_or_late_timer_calls() -> None:
    retransmitter = Uas2xxRetransmitter(Response(200), PHONE, 0.0)
    assert retransmitter.on_timer(0.1) == []  # nothing due yet
    assert len(retransmitter.on_timer(5.0)) == 1  # a late call sends once, not a burst
    assert retransmitter.next_deadline() == pytest.approx(6.0)
    assert retransmitter.on_timer(40.0) == [NoAck(retransmitter.response)]


def test_only_2xx() -> None:
    with pytest.raises(ValueError):
        Uas2xxRetransmitter(Response(486), PHONE, 0.0)
