"""The leadership lease's decisions (pbx/leadership.py), time passed in: a standby tries the
lock every second, a leader checks it every second, and a leader that loses it stands down
before anything else (the node must stop offering calls before it reconnects)."""

from __future__ import annotations

import pytest

from pbx.config import ConfigError, load_settings
from pbx.leadership import (
    CheckLease,
    DropConnection,
    Lead,
    Lease,
    LeaseTiming,
    Role,
    StandDown,
    TryLock,
    Unlock,
)

TIMING = LeaseTiming(retry_interval=1.0, check_interval=1.0, check_timeout=0.5)


def leader(now: float = 0.0) -> tuple[Lease, float]:
    lease = Lease(TIMING, now)
    [try_lock] = lease.poll(now)
    assert isinstance(try_lock, TryLock)
    assert lease.lock_answered(try_lock.attempt, True, now + 0.01) == [Lead()]
    return lease, now + 0.01


def test_a_node_starts_standby_and_tries_the_lock_at_once() -> None:
    lease = Lease(TIMING, 100.0)
    assert lease.role is Role.STANDBY and not lease.leading
    assert lease.poll(100.0) == [TryLock(1)]
    assert lease.poll(100.1) == []  # one try at a time


def test_a_standby_that_finds_the_lock_taken_tries_again_every_retry_interval() -> None:
    lease = Lease(TIMING, 0.0)
    tries = []
    now = 0.0
    while now < 5.0:
        for action in lease.poll(now):
            assert isinstance(action, TryLock)
            tries.append(now)
            assert lease.lock_answered(action.attempt, False, now + 0.01) == []
        now = round(now + 0.05, 2)
    assert lease.role is Role.STANDBY
    assert len(tries) == 5  # 0, ~1, ~2, ~3, ~4 s: the lock is free again within a second
    assert all(0.99 <= b - a <= 1.1 for a, b in zip(tries, tries[1:], strict=False))


def test_acquiring_the_lock_makes_the_node_leader_and_asks_for_the_takeover() -> None:
    lease, now = leader()
    assert lease.role is Role.LEADER
    assert lease.poll(now + 0.5) == []
    [check] = lease.poll(now + 1.0)
    assert isinstance(check, CheckLease)
    assert lease.check_answered(check.attempt, True, now + 1.01) == []
    assert lease.leading
    assert lease.next_wakeup() == now + 1.01 + TIMING.check_interval


def test_a_check_that_finds_the_lock_gone_stands_down_before_dropping_the_connection() -> None:
    lease, now = leader()
    [check] = lease.poll(now + 1.0)
    assert isinstance(check, CheckLease)
    actions = lease.check_answered(check.attempt, False, now + 1.01)
    assert actions == [StandDown("lock_gone"), DropConnection()]
    assert lease.role is Role.STANDBY
    # and the standby tries again a retry interval later
    assert lease.poll(now + 1.5) == []
    [again] = lease.poll(now + 2.02)
    assert isinstance(again, TryLock)


def test_an_unanswered_check_counts_as_lost_after_the_timeout() -> None:
    lease, now = leader()
    [check] = lease.poll(now + 1.0)
    assert lease.next_wakeup() == now + 1.0 + TIMING.check_timeout
    assert lease.poll(now + 1.4) == []
    assert lease.poll(now + 1.5) == [StandDown("check_timeout"), DropConnection()]
    # its answer, arriving late from the dropped connection, changes nothing
    assert isinstance(check, CheckLease)
    assert lease.check_answered(check.attempt, True, now + 1.6) == []
    assert lease.role is Role.STANDBY


def test_a_failed_check_or_a_closed_connection_stands_down_at_once() -> None:
    lease, now = leader()
    [check] = lease.poll(now + 1.0)
    assert isinstance(check, CheckLease)
    assert lease.failed(check.attempt, "ConnectionDoesNotExistError", now + 1.01) == [
        StandDown("ConnectionDoesNotExistError"),
        DropConnection(),
    ]
    lease, now = leader()
    assert lease.connection_closed(now + 0.3) == [StandDown("connection_closed"), DropConnection()]


def test_a_late_lock_answer_after_a_timed_out_try_is_ignored() -> None:
    lease = Lease(TIMING, 0.0)
    [try_lock] = lease.poll(0.0)
    assert lease.poll(0.5) == [DropConnection()]  # a standby has nothing to stand down
    assert isinstance(try_lock, TryLock)
    assert lease.lock_answered(try_lock.attempt, True, 0.6) == []
    assert lease.role is Role.STANDBY
    [retry] = lease.poll(1.5)
    assert isinstance(retry, TryLock) and retry.attempt != try_lock.attempt


def test_a_failed_try_drops_the_connection_and_retries() -> None:
    lease = Lease(TIMING, 0.0)
    [try_lock] = lease.poll(0.0)
    assert isinstance(try_lock, TryLock)
    assert lease.failed(try_lock.attempt, "OSError", 0.01) == [DropConnection()]
    assert lease.poll(0.5) == []
    assert isinstance(lease.poll(1.01)[0], TryLock)


def test_stopping_gives_the_lease_up_and_tries_no_more() -> None:
    lease, now = leader()
    assert lease.stop() == [StandDown("stopping"), DropConnection()]
    assert lease.poll(now + 10) == []
    assert lease.next_wakeup() is None
    assert lease.connection_closed(now + 11) == []


def test_the_lease_needs_a_shared_database_and_is_off_by_default() -> None:
    assert load_settings(env={}).ha_lease is False
    with pytest.raises(ConfigError, match="ha_lease needs database_url"):
        load_settings(env={"HELPLINE_HA_LEASE": "true"})
    shared = {"HELPLINE_HA_LEASE": "true", "HELPLINE_DATABASE_URL": "postgresql://db/helpline"}
    with pytest.raises(ConfigError, match="ha_check_timeout must be above 0"):
        load_settings(env={**shared, "HELPLINE_HA_CHECK_TIMEOUT": "0"})
    s = load_settings(env={**shared, "HELPLINE_NODE_NAME": "a"})
    assert (s.ha_lease, s.node_name, s.ha_retry_interval) == (True, "a", 1.0)


def test_retiring_for_a_drain_hands_the_lock_over_but_keeps_the_session() -> None:
    lease, now = leader()
    [check] = lease.poll(now + 1.0)
    assert isinstance(check, CheckLease)
    assert lease.retire() == [StandDown("draining"), Unlock()]  # no DropConnection
    assert lease.check_answered(check.attempt, True, now + 1.01) == []  # stale now
    assert lease.role is Role.STANDBY
    assert lease.poll(now + 5) == [] and lease.next_wakeup() is None
    assert lease.retire() == [] and lease.stop() == [DropConnection()]
    standby = Lease(TIMING, 0.0)
    assert standby.retire() == [Unlock()]  # nothing to stand down; tries no more
    assert standby.poll(3.0) == []
