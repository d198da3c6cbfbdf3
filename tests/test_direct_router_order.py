"""The order in which the core's call flow (`pbx/calls/direct.py`) offers a call to volunteers:
longest idle first, each volunteer at most once per call, with the registrar's users as they
are now. Pure: a real registrar and router, no call is rung (the call flows that ring real
handsets are `tests/test_forking.py`, `tests/test_keepalive.py` and others)."""

from __future__ import annotations

from itertools import islice

from pbx.calls.direct import DirectRouter
from pbx.calls.handsets import Handsets
from pbx.calls.leg_table import LegTable
from pbx.calls.media_session import MediaFactory
from pbx.calls.ringing import Ringer
from pbx.media.ports import PortPool
from pbx.sip.auth_guard import AuthGuard
from pbx.sip.digest import NonceManager
from pbx.sip.registrar import Binding, Registrar, RegistrarConfig
from pbx.sip.stack import SipStack
from pbx.sip.transport import SipTransports
from tests.helpers.bindings import binding

NOW = 1_000_000.0


def router() -> tuple[DirectRouter, Registrar]:
    registrar = Registrar(
        RegistrarConfig(), credentials={}, guard=AuthGuard("helpline", NonceManager(b"k" * 32))
    )
    handsets = Handsets(registrar, "helpline.invalid", wall_clock=lambda: NOW)
    ringer = Ringer(LegTable(SipStack(SipTransports())))
    media = MediaFactory(PortPool("127.0.0.1", 40000, 40100), "127.0.0.1")
    return DirectRouter(handsets, ringer, media), registrar


def register(registrar: Registrar, *users: str) -> dict[str, Binding]:
    made = {
        user: binding(user, port, NOW + 600, "127.0.0.2") for port, user in enumerate(users, 5001)
    }
    for handset in made.values():
        registrar.restore(handset)
    return made


def test_never_called_first_in_registration_order_then_longest_since_their_last_call() -> None:
    r, registrar = router()
    register(registrar, "anna", "bram", "cem", "dina")
    assert list(r.candidates()) == ["anna", "bram", "cem", "dina"]
    r.rung("bram")
    r.rung("anna")
    assert list(r.candidates()) == ["cem", "dina", "bram", "anna"]
    r.rung("cem")
    r.rung("dina")
    r.rung("bram")
    assert list(r.candidates()) == ["anna", "cem", "dina", "bram"]


def test_busy_volunteers_are_passed_over() -> None:
    r, registrar = router()
    register(registrar, "anna", "bram", "cem")
    r.busy.add("anna")
    assert list(r.candidates()) == ["bram", "cem"]
    r.busy.update({"bram", "cem"})
    assert list(r.candidates()) == []


def test_a_volunteer_in_a_call_waits_at_the_back_and_returns_there_when_it_ends() -> None:
    r, registrar = router()
    register(registrar, "anna", "bram", "cem")
    for user in ("anna", "bram", "cem"):
        r.rung(user)
    r.take("anna")  # rung for a call now
    assert list(r.candidates()) == ["bram", "cem"]
    assert list(r.last_call_end) == ["bram", "cem", "anna"]  # the scan meets the idle first
    r.take("cem")
    r.rung("cem")  # cem's call ended before anna's
    assert list(r.candidates()) == ["bram", "cem"]
    r.rung("anna")
    assert list(r.candidates()) == ["bram", "cem", "anna"]
    assert not r.busy


def test_a_call_offers_each_volunteer_once_while_the_order_changes_under_it() -> None:
    """While one volunteer rings, other calls end and move theirs to the back: the call in
    progress goes on with the next longest idle, and never offers anyone twice."""
    r, registrar = router()
    register(registrar, "anna", "bram", "cem")
    offer = r.candidates()
    assert next(offer) == "anna"
    r.rung("anna")  # anna did not answer: to the back, behind cem
    r.rung("bram")  # meanwhile another call rang bram
    assert list(offer) == ["cem", "bram"]


def test_a_volunteer_who_is_taken_busy_during_the_offer_is_skipped() -> None:
    r, registrar = router()
    register(registrar, "anna", "bram", "cem")
    offer = r.candidates()
    assert next(offer) == "anna"
    r.busy.add("bram")  # another caller's offer took bram
    assert list(offer) == ["cem"]


def test_registering_later_counts_as_never_called() -> None:
    r, registrar = router()
    register(registrar, "anna", "bram")
    r.rung("anna")
    r.rung("bram")
    register(registrar, "cem")  # comes on shift now
    assert list(r.candidates()) == ["cem", "anna", "bram"]


def test_a_volunteer_gone_from_the_registrar_leaves_the_order_and_comes_back_first() -> None:
    r, registrar = router()
    handsets = register(registrar, "anna", "bram", "cem")
    for user in ("anna", "bram", "cem"):
        r.rung(user)
    handsets["anna"].expires_at = NOW - 1
    registrar.expire(NOW)  # anna's shift ended: her handset unregistered
    assert list(r.candidates()) == ["bram", "cem"]
    assert "anna" not in r.last_call_end  # a call no longer passes over her
    register(registrar, "anna")  # the next shift: the longest idle
    assert list(r.candidates()) == ["anna", "bram", "cem"]


def test_a_takeover_reloading_the_bindings_is_seen_as_a_change_of_users() -> None:
    r, registrar = router()
    register(registrar, "anna", "bram")
    assert list(islice(r.candidates(), 1)) == ["anna"]
    registrar.clear()  # a standby takes over: its bindings are the shared picture's
    register(registrar, "cem")
    assert list(r.candidates()) == ["cem"]
