"""Admission control before parsing (sans-IO): token buckets, bans that grow and lapse, trunks
exempt, per-source connection caps, a bounded table."""

from __future__ import annotations

from pbx.sip.admission import Admission, AdmissionConfig, Verdict

CONFIG = AdmissionConfig(
    requests_per_second=10, request_burst=20, bytes_per_second=10_000, byte_burst=30_000,
    ban_seconds=5, ban_max_seconds=20, max_connections_per_source=2, max_sources=100,
)  # fmt: skip
FLOODER = "127.0.0.2"


def flood(admission: Admission, host: str, now: float, count: int) -> list[Verdict]:
    return [admission.admit(host, 100, now) for _ in range(count)]


def test_a_handset_at_a_few_requests_a_second_is_never_limited() -> None:
    admission = Admission(CONFIG)
    verdicts = [admission.admit(FLOODER, 1500, t * 0.25) for t in range(4 * 600)]  # 10 minutes
    assert set(verdicts) == {Verdict.ADMIT}
    assert admission.stats.bans == 0


def test_a_burst_beyond_the_bucket_bans_the_source_and_the_ban_lapses() -> None:
    admission = Admission(CONFIG)
    verdicts = flood(admission, FLOODER, 100.0, 50)
    assert verdicts[:20] == [Verdict.ADMIT] * 20  # the burst allowance
    assert verdicts[20] is Verdict.RATE  # the first request over it: banned now
    assert set(verdicts[21:]) == {Verdict.BANNED}
    assert admission.is_banned(FLOODER, 104.9) and admission.banned_count(104.9) == 1
    [ban] = admission.take_bans()  # one ban, for one log line
    assert (ban.host, ban.seconds, ban.offence) == (FLOODER, 5, 1)
    assert admission.take_bans() == []
    # the ban lapses after ban_seconds, and the source starts afresh
    assert not admission.is_banned(FLOODER, 105.0)
    assert admission.admit(FLOODER, 100, 105.0) is Verdict.ADMIT
    assert admission.stats.dropped["rate"] == 1 and admission.stats.dropped["banned"] == 29


def test_repeat_offences_ban_longer_up_to_the_maximum_and_are_forgotten_later() -> None:
    admission = Admission(CONFIG)
    now = 0.0
    lengths = []
    for _ in range(4):
        flood(admission, FLOODER, now, 30)
        [ban] = admission.take_bans()
        lengths.append(ban.seconds)
        now += ban.seconds
    assert lengths == [5, 10, 20, 20]
    # after ban_max_seconds of good behaviour the next offence counts as a first one again
    now += 20
    flood(admission, FLOODER, now, 30)
    assert admission.take_bans()[0].seconds == 5


def test_bytes_per_second_limit_large_messages() -> None:
    admission = Admission(CONFIG)
    assert admission.admit(FLOODER, 29_000, 0.0) is Verdict.ADMIT  # one big message is fine
    assert admission.admit(FLOODER, 29_000, 0.1) is Verdict.BYTES
    assert admission.is_banned(FLOODER, 0.2)


def test_trunks_are_exempt() -> None:
    admission = Admission(CONFIG, exempt=["127.0.0.1/32", "10.1.0.0/16"])
    for host in ("127.0.0.1", "10.1.2.3"):
        assert set(flood(admission, host, 0.0, 10_000)) == {Verdict.ADMIT}
        assert all(admission.connection_opened(host, 0.0) for _ in range(100))
    assert admission.stats.bans == 0 and len(admission) == 0
    assert admission.is_exempt("10.1.200.1") and not admission.is_exempt("127.0.0.2")
    assert not admission.is_exempt("not-an-address")


def test_connections_per_source_are_capped_and_a_banned_source_cannot_connect() -> None:
    admission = Admission(CONFIG)
    assert admission.connection_opened(FLOODER, 0.0)
    assert admission.connection_opened(FLOODER, 0.0)
    assert not admission.connection_opened(FLOODER, 0.0)  # the cap is 2
    assert admission.connection_opened("127.0.0.3", 0.0)  # another address has its own
    admission.connection_closed(FLOODER)
    assert admission.connection_opened(FLOODER, 0.0)
    assert admission.stats.dropped["connection_cap"] == 1
    flood(admission, "127.0.0.4", 1.0, 30)
    assert not admission.connection_opened("127.0.0.4", 2.0)


def test_the_table_stays_bounded_and_keeps_bans() -> None:
    admission = Admission(CONFIG)
    flood(admission, FLOODER, 0.0, 30)  # banned first, so least recently seen
    for i in range(1000):
        admission.admit(f"10.0.{i // 256}.{i % 256}", 100, 1.0)
    assert len(admission) == CONFIG.max_sources
    assert admission.is_banned(FLOODER, 2.0)  # eviction takes idle sources, not bans
    admission.sweep(10.0)  # idle with full buckets and no ban: forgotten
    assert len(admission) == 1  # the flooder's offence is still remembered (until 5 + 20)
    admission.sweep(25.0)
    assert len(admission) == 0


def test_transactions_above_the_high_water_mark_are_kept_for_the_trunks() -> None:
    from pbx.sip.message import Response
    from pbx.sip.peer import Peer, TransportKind
    from pbx.sip.transactions import TransactionLayer
    from tests.helpers.transactions import delivered, request, sends

    trunk = Peer(TransportKind.UDP, "127.0.0.1", 5060)
    other = Peer(TransportKind.UDP, FLOODER, 5070)
    layer = TransactionLayer(
        max_transactions=4, reserved=2, privileged=lambda peer: peer.host == "127.0.0.1"
    )
    for n in range(2):  # others may fill the table up to max - reserved
        assert delivered(layer.receive(request("OPTIONS", branch=f"z9hG4bKo{n}"), other, 0.0))
    refused = sends(layer.receive(request("OPTIONS", branch="z9hG4bKo2"), other, 0.0))
    assert [s.message.status for s in refused if isinstance(s.message, Response)] == [503]
    for n in range(2):  # the trunk still gets the reserved two
        assert delivered(layer.receive(request(branch=f"z9hG4bKt{n}", call_id=f"t{n}"), trunk, 0))
    full = sends(layer.receive(request(branch="z9hG4bKt2", call_id="t2"), trunk, 0.0))
    assert [s.message.status for s in full if isinstance(s.message, Response)] == [503]
    assert len(layer) == 4
