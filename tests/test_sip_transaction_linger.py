"""What a transaction keeps while it lingers after its final response (RFC 3261 17, RFC 6026).

A finished call's transactions stay up to 64*T1 (32 s) to absorb retransmissions. At a few
hundred calls a second that is some 16,000 calls' worth, so a lingering transaction must not
keep the call's parsed messages alive: the request goes, and the response too unless a
retransmitted request must get it again. These tests hold weak references to the messages
(``tests/helpers/freed.py``) and check both halves: the message is freed (by reference counting,
no collector run), and the transaction still absorbs and answers retransmissions as the RFC asks.
"""

from __future__ import annotations

from collections.abc import Callable

from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message
from pbx.sip.transactions import (
    ClientState,
    Deliver,
    Send,
    ServerState,
    TransactionId,
    TransactionLayer,
)
from tests.helpers.freed import ref
from tests.helpers.transactions import (
    UDP,
    ack_for,
    answer,
    delivered,
    outgoing,
    request,
    sends,
    statuses,
)


def _server(
    layer: TransactionLayer, method: str
) -> tuple[TransactionId, Callable[[], Request | None]]:
    req = request(method)
    (deliver,) = delivered(layer.receive(req, UDP, 0.0))
    assert deliver.transaction is not None
    return deliver.transaction, ref(req)


def _answer(
    layer: TransactionLayer, tid: TransactionId, req: Callable[[], Request | None], status: int
) -> Callable[[], Response | None]:
    sent = req()
    assert sent is not None
    response = make_response(sent, status, to_tag="t1")
    assert statuses(layer.send_response(tid, response, 1.0)) == [status]
    return ref(response)


def test_accepted_invite_server_keeps_neither_the_invite_nor_its_2xx() -> None:
    layer = TransactionLayer()
    tid, invite = _server(layer, "INVITE")
    ok = _answer(layer, tid, invite, 200)
    assert layer.server_transaction_state(tid) is ServerState.ACCEPTED
    assert invite() is None and ok() is None
    # still absorbs the INVITE's retransmissions (RFC 6026 8.7) and hands the TU the ACK
    assert layer.receive(request("INVITE"), UDP, 2.0) == []
    ack = request("ACK", branch="z9hG4bKack2", to_tag="t1")
    assert [type(e) for e in layer.receive(ack, UDP, 2.1)] == [Deliver]
    # the TU's own 2xx retransmissions still go out, and are not kept either
    again = make_response(request("INVITE"), 200, to_tag="t1")
    assert statuses(layer.send_response(tid, again, 2.5)) == [200]
    held = ref(again)
    del again
    assert held() is None


def test_confirmed_invite_server_lets_go_of_the_invite_and_its_final_once_acked() -> None:
    layer = TransactionLayer()
    tid, invite = _server(layer, "INVITE")
    busy = _answer(layer, tid, invite, 486)
    # Completed keeps both: the final is retransmitted until the ACK comes
    assert invite() is not None and busy() is not None
    assert statuses(layer.receive(request("INVITE"), UDP, 1.5)) == [486]
    final = busy()
    assert final is not None
    assert layer.receive(ack_for(final), UDP, 2.0) == []
    del final
    assert layer.server_transaction_state(tid) is ServerState.CONFIRMED
    assert invite() is None and busy() is None
    assert layer.receive(request("INVITE"), UDP, 2.5) == []  # absorbed, nothing sent


def test_completed_non_invite_server_keeps_only_its_final_for_retransmissions() -> None:
    layer = TransactionLayer()
    tid, bye = _server(layer, "BYE")
    ok = _answer(layer, tid, bye, 200)
    assert layer.server_transaction_state(tid) is ServerState.COMPLETED
    assert bye() is None and ok() is not None
    (resend,) = sends(layer.receive(request("BYE"), UDP, 3.0))
    assert resend.message is ok() and resend.peer == UDP  # the same final, not the TU's business


def _client(
    layer: TransactionLayer, method: str
) -> tuple[TransactionId, Callable[[], Request | None], Request]:
    """A client transaction: its id, a weak reference to the request it holds, and a copy of
    what went on the wire (for the phone's answers, which must not keep the request alive)."""
    tid, effects = layer.send_request(outgoing(method), UDP, 0.0)
    (send,) = effects
    assert isinstance(send, Send) and isinstance(send.message, Request)
    wire = parse_message(send.message.to_bytes())
    assert isinstance(wire, Request)
    return tid, ref(send.message), wire


def _final(layer: TransactionLayer, tid: TransactionId, sent: Request, status: int) -> None:
    final = answer(sent, status)
    assert layer.receive(final, UDP, 1.0) == [Deliver(final, tid, UDP)]


def test_accepted_invite_client_lets_go_of_its_invite_and_still_passes_2xx_up() -> None:
    layer = TransactionLayer()
    tid, invite, sent = _client(layer, "INVITE")
    _final(layer, tid, sent, 200)
    assert layer.client_transaction_state(tid) is ClientState.ACCEPTED
    assert invite() is None and layer.request_of(tid) is None
    again = answer(sent, 200)
    assert layer.receive(again, UDP, 1.5) == [Deliver(again, tid, UDP)]  # the TU re-ACKs
    assert layer.cancel(tid, 2.0) == []  # answered: nothing left to cancel


def test_completed_invite_client_keeps_only_its_ack() -> None:
    layer = TransactionLayer()
    tid, invite, sent = _client(layer, "INVITE")
    effects = layer.receive(answer(sent, 486), UDP, 1.0)
    ack = sends(effects)[0].message
    assert isinstance(ack, Request) and ack.method == "ACK"
    del effects
    assert layer.client_transaction_state(tid) is ClientState.COMPLETED
    assert invite() is None
    # a retransmitted 486 still gets the same ACK again (RFC 3261 17.1.1.2)
    assert layer.receive(answer(sent, 486), UDP, 2.0) == [Send(ack, UDP)]


def test_completed_non_invite_client_lets_go_of_its_request() -> None:
    layer = TransactionLayer()
    tid, bye, sent = _client(layer, "BYE")
    _final(layer, tid, sent, 200)
    assert layer.client_transaction_state(tid) is ClientState.COMPLETED
    assert bye() is None
    assert layer.receive(answer(sent, 200), UDP, 1.5) == []  # absorbed
