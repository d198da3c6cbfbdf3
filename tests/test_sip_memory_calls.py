"""Call flows between two SIP transaction cores over an in-memory network on a virtual clock.

No sockets and no waiting: RFC 3261's timers (T1 = 0.5 s, 64*T1 = 32 s) run on virtual time, so
a whole call with its retransmissions and the transactions' linger times takes milliseconds,
and a lost datagram shows exactly which timer recovers it. The UAC and UAS are the small cores
in tests/helpers/memory_phones.py; the registrar is the service's own (pbx.sip.registrar).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pbx.sip.dialog import DialogState
from pbx.sip.timers import Timers
from tests.helpers.memory_network import Datagram, Network
from tests.helpers.memory_phones import Callee, Caller, RegistrarServer

T1 = Timers().t1
LINGER = Timers().transaction_timeout  # 64*T1: the longest any transaction outlives its answer


def losing(counts: dict[str, int]) -> Callable[[Datagram], bool]:
    """Loses the first `counts[summary]` datagrams of each kind ("200 INVITE", "BYE", ...)."""
    left = dict(counts)

    def lose(datagram: Datagram) -> bool:
        if left.get(datagram.summary, 0) > 0:
            left[datagram.summary] -= 1
            return True
        return False

    return lose


def times_of(network: Network, summary: str) -> list[float]:
    return [round(d.at, 3) for d in network.wire if d.summary == summary]


def test_call_is_answered_acked_and_hung_up_then_every_transaction_ends() -> None:
    network = Network()
    callee = Callee(network, "127.0.0.2", 5062, ring_for=2.0)
    caller = Caller(network, "127.0.0.1", 5060)
    caller.invite(callee.node.peer())
    network.run_until(lambda: callee.acks == 1)
    assert [r.status for r in caller.responses] == [100, 180, 200]
    assert caller.dialog is not None and callee.dialog is not None
    assert caller.dialog.state is callee.dialog.state is DialogState.CONFIRMED
    assert caller.dialog.id == (callee.dialog.call_id, caller.dialog.local.tag)
    assert caller.dialog.remote.tag == callee.dialog.local.tag
    network.run(60.0)  # a minute's conversation: nothing is retransmitted meanwhile
    caller.hang_up()
    network.run_until(lambda: caller.bye_status is not None)
    assert (caller.bye_status, callee.dialog.state) == (200, DialogState.TERMINATED)
    network.run(LINGER + 1)
    assert network.summaries() == [
        "INVITE", "100 INVITE", "180 INVITE", "200 INVITE", "ACK", "BYE", "200 BYE",
    ]  # fmt: skip
    assert caller.node.idle and callee.node.idle
    assert callee.invites == 1 and caller.acks_sent == 1


def test_cancel_while_ringing_ends_the_invite_with_487_and_no_dialog() -> None:
    network = Network()
    callee = Callee(network, "127.0.0.2", 5062, ring_for=None)  # rings until cancelled
    caller = Caller(network, "127.0.0.1", 5060)
    caller.invite(callee.node.peer())
    network.run(3.0)
    assert [r.status for r in caller.responses] == [100, 180]
    caller.cancel()
    network.run_until(lambda: caller.final is not None)
    assert caller.final == 487 and callee.cancelled
    network.run(LINGER + 1)
    assert network.summaries() == [
        "INVITE", "100 INVITE", "180 INVITE", "CANCEL", "200 CANCEL", "487 INVITE", "ACK",
    ]  # fmt: skip
    assert caller.dialog is None and callee.dialog is None
    assert caller.node.idle and callee.node.idle


def test_lost_invite_2xx_and_bye_are_recovered_by_the_timers() -> None:
    network = Network(loss=losing({"INVITE": 1, "200 INVITE": 2, "BYE": 1}))
    callee = Callee(network, "127.0.0.2", 5062, ring_for=1.0)
    caller = Caller(network, "127.0.0.1", 5060)
    caller.invite(callee.node.peer())
    network.run_until(lambda: callee.acks == 1)
    # Timer A: the lost INVITE goes again after T1; the callee's TU sees one INVITE
    assert times_of(network, "INVITE") == [0.0, T1]
    assert callee.invites == 1
    # the UAS core keeps its 2xx alive until the ACK: T1, then 2*T1 later
    answered = times_of(network, "200 INVITE")[0]
    assert times_of(network, "200 INVITE") == [answered, answered + T1, answered + 3 * T1]
    assert [d.lost for d in network.wire if d.summary == "200 INVITE"] == [True, True, False]
    assert caller.acks_sent == 1
    caller.hang_up()
    hung_up = network.now
    network.run_until(lambda: caller.bye_status is not None)
    # Timer E: the lost BYE goes again after T1 and is answered
    assert times_of(network, "BYE") == [round(hung_up, 3), round(hung_up + T1, 3)]
    assert caller.bye_status == 200 and callee.dialog is not None
    assert callee.dialog.state is DialogState.TERMINATED
    network.run(LINGER + 1)
    assert caller.node.idle and callee.node.idle


def test_2xx_never_acked_is_retransmitted_until_64_t1_then_the_callee_hangs_up() -> None:
    network = Network(loss=lambda d: d.summary == "ACK")  # every ACK is lost
    callee = Callee(network, "127.0.0.2", 5062, ring_for=1.0)
    caller = Caller(network, "127.0.0.1", 5060)
    caller.invite(callee.node.peer())
    network.run_until(lambda: callee.bye_status is not None)
    sent = times_of(network, "200 INVITE")
    gaps = [round(b - a, 3) for a, b in zip(sent, sent[1:], strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]  # T1 doubling up to T2
    assert callee.no_ack and callee.acks == 0
    assert network.now - sent[0] == pytest.approx(LINGER, abs=0.1)
    assert caller.acks_sent == len(sent)  # the UAC core ACKs every 2xx it receives
    assert callee.bye_status == 200
    assert caller.dialog is not None and caller.dialog.state is DialogState.TERMINATED
    network.run(LINGER + 1)
    assert caller.node.idle and callee.node.idle


def test_register_with_digest_is_challenged_then_bound() -> None:
    network = Network()
    registrar = RegistrarServer(network, "127.0.0.2", 5062, {"vera": "pass-word-abc"})
    handset = Caller(network, "127.0.0.1", 5060, user="vera")
    handset.register(registrar.node.peer(), "pass-word-abc")
    network.run_until(lambda: 200 in handset.register_statuses)
    assert handset.register_statuses == [401, 200]
    assert registrar.contacts("vera") == ["sip:vera@127.0.0.1:5060"]
    network.run(LINGER + 1)
    assert network.summaries() == ["REGISTER", "401 REGISTER", "REGISTER", "200 REGISTER"]
    assert handset.node.idle and registrar.node.idle


def test_register_with_a_wrong_password_is_forbidden_and_binds_nothing() -> None:
    network = Network()
    registrar = RegistrarServer(network, "127.0.0.2", 5062, {"vera": "pass-word-abc"})
    handset = Caller(network, "127.0.0.1", 5060, user="vera")
    handset.register(registrar.node.peer(), "not-the-password")
    network.run_until(lambda: len(handset.register_statuses) == 2)
    assert handset.register_statuses == [401, 403]
    assert registrar.contacts("vera") == []


def test_lost_challenge_is_sent_again_for_the_retransmitted_register() -> None:
    """The 401 goes out once, statelessly (no retransmission of its own): the handset's
    Timer E resends the REGISTER, which is challenged afresh."""
    network = Network(loss=losing({"401 REGISTER": 1}))
    registrar = RegistrarServer(network, "127.0.0.2", 5062, {"vera": "pass-word-abc"})
    handset = Caller(network, "127.0.0.1", 5060, user="vera")
    handset.register(registrar.node.peer(), "pass-word-abc")
    network.run_until(lambda: 200 in handset.register_statuses)
    assert times_of(network, "REGISTER")[:2] == [0.0, T1]
    assert handset.register_statuses == [401, 200]
    assert registrar.contacts("vera") == ["sip:vera@127.0.0.1:5060"]


def test_register_to_a_silent_registrar_is_retransmitted_then_times_out_with_408() -> None:
    network = Network(loss=lambda d: d.summary == "REGISTER")  # nothing reaches the registrar
    registrar = RegistrarServer(network, "127.0.0.2", 5062, {"vera": "pass-word-abc"})
    handset = Caller(network, "127.0.0.1", 5060, user="vera")
    handset.register(registrar.node.peer(), "pass-word-abc")
    network.run_until(lambda: bool(handset.register_statuses))
    # Timer E: T1, doubling up to T2 (4 s); Timer F ends it at 64*T1 as if a 408 had come
    assert times_of(network, "REGISTER") == [
        0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    assert handset.register_statuses == [408] and network.now == LINGER
    assert registrar.contacts("vera") == []
    network.run(LINGER)
    assert handset.node.idle and registrar.node.idle
