"""The answer limit: a server transaction the TU never answers is answered 500 by the layer,
counted, and then ends like any answered transaction, so no request can hold a table slot for ever.
Path by path, with a fake clock (see test_sip_transaction_server.py for the RFC 3261 paths)."""

from __future__ import annotations

import pytest

from pbx.sip.message import Response, make_response
from pbx.sip.timers import Timers
from pbx.sip.transactions import (
    Abandoned,
    ServerState,
    Terminated,
    TimedOut,
    TransactionLayer,
)
from tests.helpers.transactions import (
    TCP,
    UDP,
    ack_for,
    new_server,
    request,
    run_until,
    sends,
    statuses,
)


def abandoned_response(fired: list[tuple[float, object]]) -> tuple[float, Response]:
    """When the layer answered for the TU, and with what."""
    ((when, abandoned),) = [(t, e) for t, e in fired if isinstance(e, Abandoned)]
    ((_, send),) = [
        (t, e)
        for t, e in fired
        if t == when and hasattr(e, "message") and isinstance(e.message, Response)
    ]
    response = send.message  # type: ignore[attr-defined]
    assert isinstance(response, Response)
    return when, response


def test_unanswered_non_invite_over_udp_gets_500_at_64_t1_then_ends_after_timer_j() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    tid = new_server(layer, options)
    fired = run_until(layer, 31.9)
    assert fired == [] and layer.server_transaction_state(tid) is ServerState.TRYING
    fired = run_until(layer, 32.0)
    assert fired[0] == (32.0, Abandoned(tid, options))
    when, response = abandoned_response(fired)
    assert when == 32.0 and response.status == 500
    assert response.reason == "Server Internal Error - No answer in time"
    assert response.call_id == options.call_id and response.cseq == options.cseq
    assert layer.server_transaction_state(tid) is ServerState.COMPLETED
    # a retransmission of the request now gets the 500 again
    assert statuses(layer.receive(request("OPTIONS"), UDP, 33.0)) == [500]
    # timer J (64*T1 on UDP) ends it; the table is empty again
    assert run_until(layer, 100.0) == [(64.0, Terminated(tid))]
    assert len(layer) == 0 and layer.server_count() == 0
    assert layer.stats.abandoned == 1 and layer.stats.server_answered == 1
    assert layer.stats.retransmissions_sent == 0  # the 500 is an answer, not a resend


def test_unanswered_non_invite_over_tcp_gets_500_and_ends_at_once() -> None:
    layer = TransactionLayer()
    tid = new_server(layer, request("REGISTER", transport="TCP"), TCP)
    fired = run_until(layer, 100.0)
    assert [type(e).__name__ for _, e in fired] == ["Abandoned", "Send", "Terminated"]
    assert {t for t, _ in fired} == {32.0}
    assert sends([e for _, e in fired])[0].peer == TCP
    assert layer.server_transaction_state(tid) is ServerState.TERMINATED and len(layer) == 0


def test_provisional_only_non_invite_is_still_answered() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    tid = new_server(layer, bye)
    layer.send_response(tid, make_response(bye, 100), 1.0)
    assert layer.server_transaction_state(tid) is ServerState.PROCEEDING
    _, response = abandoned_response(run_until(layer, 32.0))
    assert response.status == 500


def test_answered_non_invite_is_never_abandoned() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    tid = new_server(layer, options)
    layer.send_response(tid, make_response(options, 200, to_tag="t"), 31.0)
    fired = run_until(layer, 200.0)
    assert fired == [(63.0, Terminated(tid))]  # only timer J, counted from the answer
    assert layer.stats.abandoned == 0 and layer.stats.server_answered == 1


def test_unanswered_invite_rings_for_the_invite_limit_then_gets_500_awaiting_the_ack() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    layer.send_response(tid, make_response(invite, 180, to_tag="t1"), 1.0)
    # an INVITE may ring for minutes: nothing but the 100 and 180 until the limit
    assert run_until(layer, 179.9) == []
    fired = run_until(layer, 180.0)
    assert fired[0] == (180.0, Abandoned(tid, invite))
    _, response = abandoned_response(fired)
    assert response.status == 500 and response.to.tag  # a final response carries a To tag
    assert layer.server_transaction_state(tid) is ServerState.COMPLETED
    # from here on the RFC 3261 path of a non-2xx: G retransmits it until the ACK
    fired = run_until(layer, 181.0)
    assert statuses([e for _, e in fired]) == [500]
    assert layer.receive(ack_for(response), UDP, 181.2) == []
    assert layer.server_transaction_state(tid) is ServerState.CONFIRMED
    assert run_until(layer, 200.0) == [(pytest.approx(186.2), Terminated(tid))]
    assert len(layer) == 0 and layer.stats.abandoned == 1


def test_unanswered_invite_never_acked_ends_with_timer_h() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    fired = run_until(layer, 1000.0)
    assert fired[-2:] == [(212.0, TimedOut(tid, invite)), (212.0, Terminated(tid))]
    assert len(layer) == 0


@pytest.mark.parametrize("status", [200, 486])
def test_answered_invite_is_never_abandoned(status: int) -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    layer.send_response(tid, make_response(invite, status, to_tag="t1"), 170.0)
    fired = run_until(layer, 1000.0)
    assert not [e for _, e in fired if isinstance(e, Abandoned)]
    assert 500 not in statuses([e for _, e in fired])
    assert layer.stats.abandoned == 0 and len(layer) == 0


def test_the_tu_answering_after_the_limit_is_dropped_and_counted() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    run_until(layer, 180.0)
    late = layer.send_response(tid, make_response(invite, 200, to_tag="t1"), 181.0)
    assert late == [] and layer.stats.dropped_tu_responses == 1  # still exactly one final


def test_the_limits_come_from_the_timers() -> None:
    timers = Timers(t1=0.1, invite_answer_limit=20.0)
    assert timers.answer_limit(invite=False) == pytest.approx(6.4)
    layer = TransactionLayer(timers)
    new_server(layer, request("OPTIONS", branch="z9hG4bKo1"))
    new_server(layer, request(branch="z9hG4bKi1"))
    abandoned = [(t, e) for t, e in run_until(layer, 100.0) if isinstance(e, Abandoned)]
    assert [(round(t, 3), e.request.method) for t, e in abandoned] == [
        (6.4, "OPTIONS"),
        (20.0, "INVITE"),
    ]
