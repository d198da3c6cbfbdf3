"""The registrar's reachability of bindings, sans-IO: keepalive answers and misses with time
passed in. A binding that misses a keepalive is not rung; one that misses
`keepalive_max_misses` in a row is removed; an answer or a REGISTER refresh restores it.
(`tests/test_keepalive.py` drives the same through real handsets.)"""

from __future__ import annotations

from pbx.sip.auth_guard import AuthGuard
from pbx.sip.digest import NonceManager
from pbx.sip.registrar import Binding, Change, Registrar, RegistrarConfig
from tests.helpers.bindings import binding as handset

NOW = 1_000_000.0


def registrar(max_misses: int = 3) -> tuple[Registrar, list[tuple[Change, str]]]:
    seen: list[tuple[Change, str]] = []
    r = Registrar(
        RegistrarConfig(keepalive_max_misses=max_misses),
        credentials={},
        guard=AuthGuard("helpline", NonceManager(b"k" * 32)),
        on_change=lambda change, b: seen.append((change, str(b.contact))),
    )
    return r, seen


def binding(port: int, user: str = "anna") -> Binding:
    return handset(user, port, NOW + 600)


def test_a_miss_makes_a_binding_unreachable_and_it_is_not_rung() -> None:
    r, seen = registrar()
    desk, soft = binding(5001), binding(5002)
    r.restore(desk)
    r.restore(soft)
    assert r.keepalive_missed(desk, NOW) is Change.UNREACHABLE
    assert r.ringable("anna", NOW) == [soft]
    assert len(r.contacts("anna", NOW)) == 2  # still registered (a REGISTER lists both)
    assert r.registered_users(NOW) == {"anna"}
    assert r.keepalive_missed(soft, NOW) is Change.UNREACHABLE
    assert r.ringable("anna", NOW) == [] and r.registered_users(NOW) == set()
    assert [c for c, _ in seen] == [Change.UNREACHABLE, Change.UNREACHABLE]


def test_an_answer_restores_it() -> None:
    r, seen = registrar()
    desk = binding(5001)
    r.restore(desk)
    r.keepalive_missed(desk, NOW)
    r.keepalive_missed(desk, NOW + 25)
    assert r.keepalive_answered(desk, NOW + 50) is Change.REACHABLE
    assert r.ringable("anna", NOW + 50) == [desk] and desk.misses == 0
    assert desk.unreachable_since is None
    assert r.keepalive_answered(desk, NOW + 75) is None  # nothing changed
    assert [c for c, _ in seen] == [Change.UNREACHABLE, Change.REACHABLE]


def test_misses_in_a_row_remove_it() -> None:
    r, seen = registrar(max_misses=3)
    desk = binding(5001)
    r.restore(desk)
    assert r.keepalive_missed(desk, NOW) is Change.UNREACHABLE
    assert r.keepalive_missed(desk, NOW + 25) is None
    assert desk.unreachable_since == NOW and desk.misses == 2
    assert r.keepalive_missed(desk, NOW + 50) is Change.LOST
    assert r.bindings == {} and r.contacts("anna", NOW) == []
    assert [c for c, _ in seen] == [Change.UNREACHABLE, Change.LOST]
    assert r.keepalive_missed(desk, NOW + 75) is None  # a late result for a removed binding


def test_a_refresh_restores_it_and_a_late_miss_for_the_old_binding_counts_for_nothing() -> None:
    r, _ = registrar()
    old = binding(5001)
    r.restore(old)
    r.keepalive_missed(old, NOW)
    refreshed = binding(5001)  # the REGISTER refresh stores a new binding under the same key
    r.restore(refreshed)
    assert r.ringable("anna", NOW) == [refreshed]
    assert r.keepalive_missed(old, NOW + 1) is None
    assert refreshed.reachable


def test_every_live_binding_is_probed_reachable_or_not() -> None:
    r, _ = registrar()
    desk, soft, expired = binding(5001), binding(5002), binding(5003, "bram")
    expired.expires_at = NOW - 1
    for b in (desk, soft, expired):
        r.restore(b)
    r.keepalive_missed(desk, NOW)
    assert {b.contact.port for b in r.keepalive_targets(NOW)} == {5001, 5002}
