"""Server transactions of the SIP transaction layer (RFC 3261 17.2, RFC 6026), with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.transactions import (
    Deliver,
    Send,
    ServerState,
    Terminated,
    TimedOut,
    TransactionId,
    TransactionLayer,
)
from pbx.sip.uri import parse_uri
from tests.helpers.transactions import (
    TCP,
    UDP,
    ack_for,
    delivered,
    new_server,
    request,
    run_until,
    sends,
    statuses,
)

TORTURE = Path("/work/shared/sip-torture")


# --- INVITE server transaction ------------------------------------------------------------------


def test_new_invite_sends_100_trying_at_once_and_is_delivered() -> None:
    layer = TransactionLayer()
    invite = request()
    effects = layer.receive(invite, UDP, 0.0)
    assert statuses(effects[:1]) == [100]
    assert sends(effects)[0].peer == UDP
    (deliver,) = delivered(effects)
    assert deliver.message is invite and deliver.source == UDP and deliver.cancels is None
    assert deliver.transaction is not None
    assert layer.server_transaction_state(deliver.transaction) is ServerState.PROCEEDING
    assert len(layer) == 1


def test_invite_retransmissions_are_absorbed_and_get_the_latest_provisional() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    assert statuses(layer.receive(request(), UDP, 0.5)) == [100]
    assert not delivered(layer.receive(request(), UDP, 0.6))
    layer.send_response(tid, make_response(invite, 180, to_tag="t1"), 1.0)
    effects = layer.receive(request(), UDP, 1.5)
    assert statuses(effects) == [180] and not delivered(effects)
    assert layer.stats.retransmissions_absorbed == 3


def test_invite_non2xx_over_udp_retransmits_with_timer_g_until_ack_then_timer_i() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    busy = make_response(invite, 486, to_tag="t1")
    assert statuses(layer.send_response(tid, busy, 1.0)) == [486]
    assert layer.server_transaction_state(tid) is ServerState.COMPLETED
    fired = run_until(layer, 16.0)
    # G starts at T1 and doubles up to T2: 1.5, 2.5, 4.5, 8.5, 12.5, 16.5 ...
    assert [t for t, e in fired if isinstance(e, Send)] == [1.5, 2.5, 4.5, 8.5, 12.5]
    assert all(isinstance(e, Send) and e.message is busy for _, e in fired)
    # a retransmitted INVITE gets the final response again, the TU sees nothing
    assert statuses(layer.receive(request(), UDP, 16.1)) == [486]
    # the ACK is the transaction's own: absorbed, not delivered
    assert layer.receive(ack_for(busy), UDP, 16.2) == []
    assert layer.server_transaction_state(tid) is ServerState.CONFIRMED
    assert layer.receive(ack_for(busy), UDP, 16.3) == []  # ACK retransmission absorbed too
    assert layer.next_deadline() == pytest.approx(16.2 + 5.0)  # timer I = T4, G and H stopped
    ((when, effect),) = run_until(layer, 30.0)
    assert when == pytest.approx(21.2) and effect == Terminated(tid)
    assert len(layer) == 0
    assert layer.server_transaction_state(tid) is ServerState.TERMINATED


def test_invite_non2xx_never_acked_times_out_with_timer_h() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    layer.send_response(tid, make_response(invite, 480, to_tag="t1"), 0.0)
    fired = run_until(layer, 100.0)
    assert fired[-2:] == [(32.0, TimedOut(tid, invite)), (32.0, Terminated(tid))]
    assert sum(isinstance(e, Send) for _, e in fired) == 10  # 0.5 1.5 3.5 7.5 11.5 ... 31.5
    assert layer.stats.timeouts == 1 and len(layer) == 0


def test_invite_non2xx_over_tcp_has_no_timer_g_and_ends_on_ack() -> None:
    layer = TransactionLayer()
    invite = request(transport="TCP")
    tid = new_server(layer, invite, TCP)
    (sent,) = sends(layer.send_response(tid, make_response(invite, 486, to_tag="t1"), 0.0))
    assert sent.peer == TCP  # same connection
    assert layer.next_deadline() == 32.0  # only H
    effects = layer.receive(ack_for(sent.message, transport="TCP"), TCP, 1.0)
    assert effects == [Terminated(tid)]  # timer I is zero on a reliable transport
    assert layer.next_deadline() is None and len(layer) == 0


def test_invite_2xx_goes_to_accepted_where_ack_is_delivered_and_timer_l_ends_it() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    ok = make_response(invite, 200, to_tag="t1")
    assert statuses(layer.send_response(tid, ok, 1.0)) == [200]
    assert layer.server_transaction_state(tid) is ServerState.ACCEPTED
    # RFC 6026: INVITE retransmissions absorbed without a response, never to the TU
    assert layer.receive(request(), UDP, 1.5) == []
    # 2xx retransmissions from the TU go out; other responses no longer can
    assert statuses(layer.send_response(tid, ok, 1.5)) == [200]
    assert layer.send_response(tid, make_response(invite, 500, to_tag="t1"), 1.6) == []
    assert layer.stats.dropped_tu_responses == 1
    # the ACK for a 2xx has its own branch: delivered to the TU without a transaction
    ack = ack_for(ok, branch="z9hG4bKack2")
    assert layer.receive(ack, UDP, 2.0) == [Deliver(ack, None, UDP)]
    # an ACK that reuses the INVITE's branch matches the transaction, and still goes to the TU
    same = ack_for(ok)
    assert layer.receive(same, UDP, 2.1) == [Deliver(same, tid, UDP)]
    assert layer.server_transaction_state(tid) is ServerState.ACCEPTED
    assert run_until(layer, 100.0) == [(33.0, Terminated(tid))]  # L = 64*T1 after the 2xx


def test_invite_over_tcp_keeps_accepted_for_timer_l() -> None:
    layer = TransactionLayer()
    invite = request(transport="TCP")
    tid = new_server(layer, invite, TCP)
    layer.send_response(tid, make_response(invite, 200, to_tag="t1"), 0.0)
    assert layer.next_deadline() == 32.0


def test_ack_matching_nothing_is_delivered_as_stray_and_creates_no_transaction() -> None:
    layer = TransactionLayer(max_transactions=0)  # even when the table is full
    ack = request("ACK", to_tag="x")
    assert layer.receive(ack, UDP, 0.0) == [Deliver(ack, None, UDP)]
    assert len(layer) == 0


def test_ack_before_final_response_is_dropped() -> None:
    layer = TransactionLayer()
    tid = new_server(layer, request())
    assert layer.receive(request("ACK"), UDP, 0.1) == []
    assert layer.server_transaction_state(tid) is ServerState.PROCEEDING


# --- non-INVITE server transaction --------------------------------------------------------------


def test_non_invite_over_udp_trying_proceeding_completed_and_timer_j() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    effects = layer.receive(options, UDP, 0.0)
    assert sends(effects) == []  # no automatic 100 for non-INVITE
    (deliver,) = delivered(effects)
    tid = deliver.transaction
    assert tid is not None and layer.server_transaction_state(tid) is ServerState.TRYING
    assert layer.receive(request("OPTIONS"), UDP, 0.5) == []  # Trying: nothing to repeat yet
    assert statuses(layer.send_response(tid, make_response(options, 100), 0.6)) == [100]
    assert layer.server_transaction_state(tid) is ServerState.PROCEEDING
    assert statuses(layer.receive(request("OPTIONS"), UDP, 1.0)) == [100]
    assert statuses(layer.send_response(tid, make_response(options, 200, to_tag="t"), 2.0)) == [200]
    assert layer.server_transaction_state(tid) is ServerState.COMPLETED
    assert statuses(layer.receive(request("OPTIONS"), UDP, 3.0)) == [200]
    assert layer.send_response(tid, make_response(options, 500), 3.1) == []  # second final
    assert run_until(layer, 100.0) == [(34.0, Terminated(tid))]  # J = 64*T1


def test_non_invite_over_tcp_terminates_on_final_response() -> None:
    layer = TransactionLayer()
    bye = request("BYE", transport="TCP", to_tag="t")
    tid = new_server(layer, bye, TCP)
    effects = layer.send_response(tid, make_response(bye, 200), 0.1)
    assert statuses(effects) == [200] and effects[-1] == Terminated(tid)
    assert sends(effects)[0].peer == TCP
    assert len(layer) == 0 and layer.next_deadline() is None


def test_same_branch_different_method_is_a_different_transaction() -> None:
    layer = TransactionLayer()
    new_server(layer, request("INVITE"))
    new_server(layer, request("INFO", cseq=1))
    assert len(layer) == 2


def test_same_branch_from_another_sent_by_is_a_different_transaction() -> None:
    layer = TransactionLayer()
    new_server(layer, request(via="SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKsame"))
    new_server(layer, request(via="SIP/2.0/UDP 127.0.0.2:5071;branch=z9hG4bKsame"))
    assert len(layer) == 2


# --- CANCEL ---------------------------------------------------------------------------------------


def test_cancel_gets_its_own_transaction_and_names_the_invite_it_targets() -> None:
    layer = TransactionLayer()
    invite_tid = new_server(layer, request())
    cancel = request("CANCEL")
    effects = layer.receive(cancel, UDP, 1.0)
    assert sends(effects) == []
    (deliver,) = delivered(effects)
    assert deliver.cancels == invite_tid
    assert deliver.transaction is not None and deliver.transaction != invite_tid
    assert layer.receive(request("CANCEL"), UDP, 1.1) == []  # retransmission absorbed
    effects = layer.send_response(deliver.transaction, make_response(cancel, 200, to_tag="t"), 1.2)
    assert statuses(effects) == [200]
    assert statuses(layer.receive(request("CANCEL"), UDP, 1.3)) == [200]
    assert layer.server_transaction_state(invite_tid) is ServerState.PROCEEDING  # TU's call


def test_cancel_without_matching_invite_is_delivered_for_the_tu_to_answer_481() -> None:
    layer = TransactionLayer()
    cancel = request("CANCEL", branch="z9hG4bKnothing")
    (deliver,) = delivered(layer.receive(cancel, UDP, 0.0))
    assert deliver.cancels is None and deliver.transaction is not None
    effects = layer.send_response(deliver.transaction, make_response(cancel, 481, to_tag="t"), 0.1)
    assert statuses(effects) == [481] and sends(effects)[0].peer == UDP


# --- RFC 2543 fallback matching -------------------------------------------------------------------


def test_rfc2543_invite_without_branch_matches_retransmissions_and_its_ack() -> None:
    layer = TransactionLayer()
    invite = request(branch=None, from_tag=None)
    tid = new_server(layer, invite)
    retransmission = layer.receive(request(branch=None, from_tag=None), UDP, 0.5)
    assert statuses(retransmission) == [100] and not delivered(retransmission)
    # a different CSeq (a new request) is a new transaction
    other = new_server(layer, request(branch=None, from_tag=None, cseq=2))
    assert other != tid
    busy = make_response(invite, 486, to_tag="t2543")
    layer.send_response(tid, busy, 1.0)
    # an ACK whose To tag is not the one we answered with does not match: a stray for the TU
    wrong = request("ACK", branch=None, from_tag=None, to_tag="other")
    assert layer.receive(wrong, UDP, 1.1) == [Deliver(wrong, None, UDP)]
    assert layer.server_transaction_state(tid) is ServerState.COMPLETED
    assert layer.receive(request("ACK", branch=None, from_tag=None, to_tag="t2543"), UDP, 1.2) == []
    assert layer.server_transaction_state(tid) is ServerState.CONFIRMED
    run_until(layer, 10.0)
    assert layer.server_transaction_state(tid) is ServerState.TERMINATED
    # once it has ended, the same ACK is nobody's: a stray for the TU
    late = request("ACK", branch=None, from_tag=None, to_tag="t2543")
    assert layer.receive(late, UDP, 10.1) == [Deliver(late, None, UDP)]


def test_rfc2543_cancel_matches_the_invite() -> None:
    layer = TransactionLayer()
    tid = new_server(layer, request(branch=None))
    (deliver,) = delivered(layer.receive(request("CANCEL", branch=None), UDP, 0.5))
    assert deliver.cancels == tid
    # a CANCEL for another Request-URI does not
    (other,) = delivered(
        layer.receive(request("CANCEL", branch=None, uri="sip:x@127.0.0.1"), UDP, 0.6)
    )
    assert other.cancels is None


def test_rfc2543_matching_needs_the_same_top_via() -> None:
    layer = TransactionLayer()
    new_server(layer, request(branch=None))
    effects = layer.receive(request(via="SIP/2.0/UDP 127.0.0.2:5099"), UDP, 0.5)
    assert delivered(effects)  # another hop, so another transaction
    assert len(layer) == 2


@pytest.mark.skipif(not TORTURE.is_dir(), reason="RFC 4475 messages not available")
def test_torture_branch_of_only_the_magic_cookie_falls_back_to_2543_matching() -> None:
    layer = TransactionLayer()
    data = (TORTURE / "badbranch.dat").read_bytes()
    first = parse_message(data)
    assert delivered(layer.receive(first, UDP, 0.0))
    assert layer.receive(parse_message(data), UDP, 0.1) == []  # same request: absorbed
    other = parse_message(data.replace(b"CSeq: 8 OPTIONS", b"CSeq: 9 OPTIONS"))
    assert delivered(layer.receive(other, UDP, 0.2))  # the bare cookie did not merge them


@pytest.mark.skipif(not TORTURE.is_dir(), reason="RFC 4475 messages not available")
def test_torture_messages_never_raise() -> None:
    layer = TransactionLayer(sent_by=[("127.0.0.1", 5060)])
    for path in sorted(TORTURE.glob("*.dat")):
        try:
            message = parse_message(path.read_bytes())
        except ValueError:
            continue
        for source in (UDP, TCP):
            for effect in delivered(layer.receive(message, source, 0.0)):
                if effect.transaction is not None and isinstance(effect.message, Request):
                    answer = make_response(effect.message, 500, to_tag="t")
                    assert sends(layer.send_response(effect.transaction, answer, 0.0))
    assert len(layer) > 0
    run_until(layer, 1000.0)
    assert len(layer) == 0  # every transaction the torture requests made has ended


# --- overload, malformed input, TU mistakes ------------------------------------------------------


def test_full_table_answers_new_requests_with_stateless_503_and_does_not_deliver() -> None:
    layer = TransactionLayer(max_transactions=2)
    first = new_server(layer, request(branch="z9hG4bK1"))
    new_server(layer, request("OPTIONS", branch="z9hG4bK2"))
    effects = layer.receive(request(branch="z9hG4bK3", call_id="c3"), UDP, 0.0)
    assert delivered(effects) == []
    (reject,) = sends(effects)
    assert isinstance(reject.message, Response) and reject.message.status == 503
    assert reject.message.headers.get("Retry-After") == "5"
    assert reject.message.to.tag and reject.peer == UDP
    again = sends(layer.receive(request(branch="z9hG4bK3", call_id="c3"), UDP, 0.5))[0].message
    assert isinstance(again, Response) and again.to.tag == reject.message.to.tag  # stable tag
    assert len(layer) == 2 and layer.stats.rejected_overload == 2
    # existing transactions keep working
    assert statuses(layer.receive(request(branch="z9hG4bK1"), UDP, 0.6)) == [100]
    # once one ends, new requests are accepted again
    bye_like = layer.request_of(first)
    assert bye_like is not None
    layer.send_response(first, make_response(bye_like, 200, to_tag="t"), 1.0)
    run_until(layer, 40.0)
    assert delivered(layer.receive(request(branch="z9hG4bK4"), UDP, 41.0))


def test_malformed_vias_and_headers_are_dropped_without_exceptions() -> None:
    layer = TransactionLayer()
    uri = parse_uri("sip:0900@127.0.0.1")

    def raw(headers: list[tuple[str, str]]) -> Request:
        base = [
            ("From", "<sip:a@127.0.0.2>;tag=1"),
            ("To", "<sip:0900@127.0.0.1>"),
            ("Call-ID", "x"),
            ("CSeq", "1 INVITE"),
        ]
        return Request("INVITE", uri, Headers(headers + base))

    broken = [
        raw([("Via", "garbage")]),
        raw([]),  # no Via at all
        raw([("Via", "SIP/2.0/UDP [::1;branch=z9hG4bKx")]),
        raw([("Via", "SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKx;received=")]),
    ]
    no_branch_bad_from = raw([("Via", "SIP/2.0/UDP 127.0.0.2")])
    no_branch_bad_from.headers.set("From", "<<<")  # only the 2543 fallback needs From
    broken.append(no_branch_bad_from)
    bad_cseq = raw([("Via", "SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKx")])
    bad_cseq.headers.set("CSeq", "one INVITE")
    broken.append(bad_cseq)
    for message in broken:
        assert layer.receive(message, UDP, 0.0) == []
    bad_response = Response(200, headers=Headers([("Via", "nonsense"), ("CSeq", "1 INVITE")]))
    assert layer.receive(bad_response, UDP, 0.0) == []
    assert layer.stats.dropped_malformed == len(broken) + 1
    assert len(layer) == 0


def test_unknown_via_transport_is_handled_like_any_other() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/SCTP 127.0.0.2:5070;branch=z9hG4bKsctp")
    effects = layer.receive(invite, UDP, 0.0)
    assert delivered(effects) and sends(effects)[0].peer == UDP  # answered where it came from


def test_tu_mistakes_and_late_responses() -> None:
    layer = TransactionLayer()
    invite = request()
    tid = new_server(layer, invite)
    with pytest.raises(ValueError):
        layer.send_response(TransactionId(tid.side.CLIENT, "INVITE", 999), Response(200), 0.0)
    with pytest.raises(ValueError):
        layer.send_response(tid, Response(99), 0.0)
    gone = TransactionId(tid.side, "INVITE", 12345)
    assert layer.send_response(gone, make_response(invite, 200), 0.0) == []
    assert layer.server_transaction_state(gone) is ServerState.TERMINATED
