"""Client transactions of the SIP transaction layer (RFC 3261 17.1, 9.1, RFC 6026), fake clock."""

from __future__ import annotations

import pytest

from pbx.sip.message import Request
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.timers import Timers
from pbx.sip.transactions import (
    ClientState,
    Deliver,
    Effect,
    Send,
    Terminated,
    TimedOut,
    TransactionId,
    TransactionLayer,
)
from pbx.sip.via import MAGIC_COOKIE
from tests.helpers.transactions import answer, outgoing

PHONE = Peer(TransportKind.UDP, "127.0.0.2", 5070)
PHONE_TCP = Peer(TransportKind.TCP, "127.0.0.2", 5070)
OUR_SENT_BY = ("127.0.0.1", 5060)


def start(
    layer: TransactionLayer, method: str = "INVITE", peer: Peer = PHONE, now: float = 0.0
) -> tuple[TransactionId, Request]:
    transport = "TCP" if peer.reliable else "UDP"
    tid, effects = layer.send_request(outgoing(method, transport), peer, now)
    (send,) = effects
    assert isinstance(send, Send) and isinstance(send.message, Request) and send.peer == peer
    return tid, send.message


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Effect]]:
    out: list[tuple[float, Effect]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        out.extend((deadline, e) for e in layer.on_timer(deadline))
    return out


def sent_request(effect: Effect) -> Request:
    assert isinstance(effect, Send) and isinstance(effect.message, Request)
    return effect.message


def send_times(fired: list[tuple[float, Effect]]) -> list[float]:
    return [t for t, e in fired if isinstance(e, Send)]


# --- INVITE client transaction --------------------------------------------------------------------


def test_send_request_adds_a_fresh_magic_cookie_branch_and_leaves_the_original_alone() -> None:
    layer = TransactionLayer()
    original = outgoing()
    _, effects = layer.send_request(original, PHONE, 0.0)
    sent = sent_request(effects[0])
    branch = sent.top_via.branch
    assert branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 16
    assert sent.top_via.params["rport"] is None  # other Via params kept
    assert original.top_via.branch is None
    _, again = layer.send_request(original, PHONE, 0.0)
    assert sent_request(again[0]).top_via.branch != branch


def test_invite_over_udp_retransmits_with_timer_a_and_times_out_with_timer_b() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    assert layer.client_transaction_state(tid) is ClientState.CALLING
    fired = run_until(layer, 100.0)
    # A doubles without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5; B = 64*T1 = 32
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(e.message is sent for _, e in fired if isinstance(e, Send))
    assert fired[-2:] == [(32.0, TimedOut(tid, sent)), (32.0, Terminated(tid))]
    assert len(layer) == 0 and layer.client_transaction_state(tid) is ClientState.TERMINATED


def test_invite_provisional_stops_retransmissions_and_timer_b() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    ringing = answer(sent, 180)
    assert layer.receive(ringing, PHONE, 0.2) == [Deliver(ringing, tid, PHONE)]
    assert layer.client_transaction_state(tid) is ClientState.PROCEEDING
    assert layer.next_deadline() is None  # the TU decides how long it will ring
    early = answer(sent, 183)
    assert layer.receive(early, PHONE, 0.3) == [Deliver(early, tid, PHONE)]


def test_invite_non2xx_is_acked_by_the_transaction_and_absorbed_for_timer_d() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    layer.receive(answer(sent, 180), PHONE, 0.2)
    busy = answer(sent, 486)
    effects = layer.receive(busy, PHONE, 1.0)
    assert [type(e) for e in effects] == [Send, Deliver]
    ack = sent_request(effects[0])
    assert ack.method == "ACK"
    # RFC 3261 17.1.1.3: same Request-URI, Call-ID, From, CSeq number, top Via and Route;
    # To of the response (with its tag)
    assert ack.request_uri == sent.request_uri
    assert ack.headers.values("Via") == [sent.headers.values("Via")[0]]
    assert ack.top_via.branch == sent.top_via.branch
    assert ack.headers.get("From") == sent.headers.get("From")
    assert ack.to.tag == "theirs"
    assert ack.call_id == sent.call_id
    assert (ack.cseq.number, ack.cseq.method) == (sent.cseq.number, "ACK")
    assert ack.headers.fields("Route") == sent.headers.fields("Route")
    assert effects[1] == Deliver(busy, tid, PHONE)
    assert layer.client_transaction_state(tid) is ClientState.COMPLETED
    # a retransmitted 486 gets the same ACK again and is not delivered
    assert layer.receive(answer(sent, 486), PHONE, 2.0) == [Send(ack, PHONE)]
    assert run_until(layer, 100.0) == [(33.0, Terminated(tid))]  # D = 32 s after the 486


def test_invite_non2xx_over_tcp_terminates_right_after_the_ack() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer, peer=PHONE_TCP)
    assert layer.next_deadline() == 32.0  # no timer A on a reliable transport, only B
    effects = layer.receive(answer(sent, 603), PHONE_TCP, 1.0)
    assert [type(e) for e in effects] == [Send, Deliver, Terminated]
    assert len(layer) == 0


def test_invite_2xx_moves_to_accepted_and_passes_every_2xx_up_until_timer_m() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    ok = answer(sent, 200)
    assert layer.receive(ok, PHONE, 1.0) == [Deliver(ok, tid, PHONE)]  # no ACK: the TU's job
    assert layer.client_transaction_state(tid) is ClientState.ACCEPTED
    again = answer(sent, 200)
    assert layer.receive(again, PHONE, 1.5) == [Deliver(again, tid, PHONE)]  # TU re-ACKs
    forked = answer(sent, 200, to_tag="fork2")
    assert layer.receive(forked, PHONE, 1.6) == [Deliver(forked, tid, PHONE)]
    assert layer.receive(answer(sent, 180), PHONE, 1.7) == []
    assert layer.receive(answer(sent, 500), PHONE, 1.8) == []
    assert run_until(layer, 100.0) == [(33.0, Terminated(tid))]  # M = 64*T1
    # afterwards a 2xx is still delivered (as a stray) so the TU can ACK it
    late = answer(sent, 200)
    assert layer.receive(late, PHONE, 40.0) == [Deliver(late, None, PHONE)]


def test_2xx_retransmission_when_the_2xx_came_in_calling_state_too() -> None:
    layer = TransactionLayer(Timers(t1=0.1))
    tid, sent = start(layer)
    run_until(layer, 0.35)  # two retransmissions while Calling
    layer.receive(answer(sent, 200), PHONE, 0.4)
    assert layer.next_deadline() == pytest.approx(0.4 + 6.4)  # M = 64*T1 with T1 = 100 ms


# --- non-INVITE client transaction ---------------------------------------------------------------


def test_non_invite_over_udp_timer_e_doubles_to_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer, "OPTIONS")
    assert layer.client_transaction_state(tid) is ClientState.TRYING
    fired = run_until(layer, 100.0)
    times = send_times(fired)
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # 0.5, 1, 2, 4, 4, 4 ...
    assert times[-1] == 31.5
    assert fired[-2:] == [(32.0, TimedOut(tid, sent)), (32.0, Terminated(tid))]


def test_non_invite_proceeding_retransmits_every_t2_and_completes_with_timer_k() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer, "BYE")
    trying = answer(sent, 100)
    assert layer.receive(trying, PHONE, 0.2) == [Deliver(trying, tid, PHONE)]
    assert layer.client_transaction_state(tid) is ClientState.PROCEEDING
    fired = run_until(layer, 10.0)
    assert send_times(fired) == [0.5, 4.5, 8.5]  # the first E was armed in Trying; then T2
    ok = answer(sent, 200)
    assert layer.receive(ok, PHONE, 10.0) == [Deliver(ok, tid, PHONE)]
    assert layer.client_transaction_state(tid) is ClientState.COMPLETED
    assert layer.receive(answer(sent, 200), PHONE, 10.5) == []  # absorbed
    assert layer.stats.retransmissions_absorbed == 1
    assert run_until(layer, 100.0) == [(15.0, Terminated(tid))]  # K = T4


def test_non_invite_over_tcp_has_no_timer_e_and_ends_on_final() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer, "REGISTER", peer=PHONE_TCP)
    assert layer.next_deadline() == 32.0  # only F
    ok = answer(sent, 200)
    assert layer.receive(ok, PHONE_TCP, 1.0) == [Deliver(ok, tid, PHONE_TCP), Terminated(tid)]


def test_non_invite_over_tcp_still_times_out_with_timer_f() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer, "OPTIONS", peer=PHONE_TCP)
    assert run_until(layer, 100.0) == [(32.0, TimedOut(tid, sent)), (32.0, Terminated(tid))]


# --- matching of responses ----------------------------------------------------------------------


def test_stray_responses_only_2xx_to_invite_reach_the_tu() -> None:
    layer = TransactionLayer()
    _, sent = start(layer)
    layer.receive(answer(sent, 486), PHONE, 0.1)
    run_until(layer, 100.0)
    assert len(layer) == 0
    assert layer.receive(answer(sent, 486), PHONE, 200.0) == []
    ok = answer(sent, 200)
    assert layer.receive(ok, PHONE, 200.0) == [Deliver(ok, None, PHONE)]
    _, options = start(layer, "OPTIONS", now=200.0)
    stray = answer(options, 200)
    stray.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKunknown")
    assert layer.receive(stray, PHONE, 200.1) == []
    assert layer.stats.dropped_stray == 2


def test_response_whose_top_via_is_not_ours_is_dropped() -> None:
    layer = TransactionLayer(sent_by=[OUR_SENT_BY])
    tid, sent = start(layer)
    foreign = answer(sent, 200)
    foreign.headers.set("Via", str(foreign.top_via).replace("127.0.0.1:5060", "127.0.0.2:5060"))
    assert layer.receive(foreign, PHONE, 0.1) == []
    assert layer.stats.dropped_not_ours == 1
    ok = answer(sent, 200)
    assert layer.receive(ok, PHONE, 0.2) == [Deliver(ok, tid, PHONE)]


def test_sent_by_without_port_means_the_transport_default() -> None:
    layer = TransactionLayer(sent_by=[("127.0.0.1", 5060)])
    request = outgoing()
    request.headers.set("Via", "SIP/2.0/UDP 127.0.0.1")
    tid, effects = layer.send_request(request, PHONE, 0.0)
    sent = sent_request(effects[0])
    ok = answer(sent, 200)
    assert layer.receive(ok, PHONE, 0.1) == [Deliver(ok, tid, PHONE)]


def test_response_matches_by_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    layer.receive(answer(sent, 180), PHONE, 0.1)
    cancel_effects = layer.cancel(tid, 0.2)
    cancel = sent_request(cancel_effects[0])
    cancel_ok = answer(cancel, 200)
    (deliver,) = layer.receive(cancel_ok, PHONE, 0.3)
    assert isinstance(deliver, Deliver) and deliver.transaction not in (tid, None)
    assert layer.client_transaction_state(tid) is ClientState.PROCEEDING  # INVITE untouched


# --- CANCEL (RFC 3261 9.1) ----------------------------------------------------------------------


def test_cancel_after_provisional_is_sent_at_once_in_its_own_transaction() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    layer.receive(answer(sent, 180), PHONE, 0.1)
    (send,) = layer.cancel(tid, 1.0)
    assert isinstance(send, Send) and send.peer == PHONE
    cancel = send.message
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.request_uri == sent.request_uri
    assert cancel.headers.values("Via") == [sent.headers.values("Via")[0]]  # same branch
    for name in ("From", "To", "Call-ID"):
        assert cancel.headers.get(name) == sent.headers.get(name)
    assert (cancel.cseq.number, cancel.cseq.method) == (sent.cseq.number, "CANCEL")
    assert cancel.headers.fields("Route") == sent.headers.fields("Route")
    assert len(layer) == 2
    assert layer.cancel(tid, 1.1) == []  # only once
    # the CANCEL retransmits on its own (timer E) while the INVITE stays quiet
    fired = run_until(layer, 1.6)
    assert [e.message for _, e in fired if isinstance(e, Send)] == [cancel]
    # the INVITE then ends normally with 487, ACKed by the transaction
    terminated = layer.receive(answer(sent, 487), PHONE, 2.0)
    assert [type(e) for e in terminated] == [Send, Deliver]


def test_cancel_before_any_provisional_waits_for_one() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    assert layer.cancel(tid, 0.1) == []
    assert len(layer) == 1
    ringing = answer(sent, 180)
    effects = layer.receive(ringing, PHONE, 0.3)
    assert effects[0] == Deliver(ringing, tid, PHONE)
    assert sent_request(effects[1]).method == "CANCEL"
    assert len(layer) == 2


def test_cancel_before_provisional_is_dropped_if_a_final_arrives_first() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    layer.cancel(tid, 0.1)
    effects = layer.receive(answer(sent, 200), PHONE, 0.2)
    assert [type(e) for e in effects] == [Deliver]
    assert layer.cancel(tid, 0.3) == []
    assert len(layer) == 1


def test_invite_with_no_final_64_t1_after_cancel_is_given_up() -> None:
    layer = TransactionLayer()
    tid, sent = start(layer)
    layer.receive(answer(sent, 180), PHONE, 1.0)
    layer.cancel(tid, 10.0)
    fired = run_until(layer, 100.0)
    assert (42.0, TimedOut(tid, sent)) in fired and (42.0, Terminated(tid)) in fired


def test_cancel_of_unknown_transaction_is_a_no_op_and_non_invite_is_a_tu_error() -> None:
    layer = TransactionLayer()
    options, _ = start(layer, "OPTIONS")
    with pytest.raises(ValueError):
        layer.cancel(options, 0.0)
    gone = TransactionId(options.side, "INVITE", 999)
    assert layer.cancel(gone, 0.0) == []


# --- TU mistakes --------------------------------------------------------------------------------


def test_tu_errors_raise() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(outgoing("ACK"), PHONE, 0.0)
    request = outgoing()
    request.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfixed")
    layer.send_request(request, PHONE, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request, PHONE, 0.0)  # that branch is in use
    no_via = outgoing()
    no_via.headers.remove("Via")
    with pytest.raises(ValueError):
        layer.send_request(no_via, PHONE, 0.0)
    tid, _ = start(layer)
    with pytest.raises(ValueError):
        layer.server_transaction_state(tid)
