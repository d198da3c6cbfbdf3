"""One anonymous record per inbound call, gathered as the call goes and written behind at its end.

The call flows report what happens to a call by its reference (our own id, never the carrier's
Call-ID); `CallRecords` keeps the open record in memory and, when the call ends, submits one
idempotent write (keyed by a random record id) to the write-behind: a call never waits on the
database, and a record replayed after an outage or a restart is written once.

A record holds closed sets (entry kind, node, queue, language, outcome names from the plan),
durations, counts, the volunteer who answered, and whether the caller called before the same
day as a yes/no. Never the caller's number, its daily key or a hash of it.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from ivr.model import Dialplan, HoursNode, NumberKind, QueueNode, TransferNode, VoicemailNode
from pbx.anonymity import CallerContext
from pbx.db.ops import DataOp, Upsert

log = structlog.get_logger("pbx.call_records")

TABLE = "call_records"
MAX_OPEN = 10_000  # open records kept at most (live calls are bounded far below this)
MAX_REFUSED_PER_SECOND = 50  # refused calls recorded; a flood beyond is logged, not written


@dataclass
class CallRecord:
    id: str
    started_at: datetime
    entry_kind: str = "unknown"  # national, local, partner, night_113, info_line, unknown
    entry_line: str | None = None  # the helpline number dialled (ours)
    region: str | None = None  # local numbers: their region
    partner: str | None = None  # partner line or forwarded by a partner
    partner_via: str | None = None  # "number" (dialled partner line) or "forwarding" header
    ivr_path: list[str] = field(default_factory=list)  # node names in the order visited
    language: str | None = None
    queue: str | None = None
    wait_seconds: float | None = None  # time in the queue (to answer, hang-up or overflow)
    offered: int = 0  # volunteers offered the call
    ring_no_answer: int = 0
    answered_by: str | None = None  # volunteer id
    talk_seconds: float | None = None
    time_limit_reached: bool = False
    transfer_to: str | None = None  # a destination name of the plan (backline_113, info line)
    transfer_result: str | None = None  # answered, failed
    overflowed: bool = False
    outcome: str = "failed"
    returning_today: bool = False

    def row(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def record_op(record: CallRecord) -> DataOp:
    """Insert-or-same: a replayed write finds the row already there and changes nothing."""
    return Upsert(TABLE, record.row(), key=("id",))


def ended_closed(plan: Dialplan, path: tuple[str, ...]) -> bool:
    """The call ended in the IVR on a closed-hours branch (an hours node's `closed` step, and
    nothing after it that queues, transfers or takes a message): the line was closed to it,
    which is not an ordinary IVR hang-up."""
    closed_from = None
    for i, (here, nxt) in enumerate(zip(path, path[1:], strict=False)):
        node = plan.nodes.get(here)
        if isinstance(node, HoursNode) and nxt == node.closed and node.closed != node.open:
            closed_from = i + 1
    if closed_from is None:
        return False
    return not any(
        isinstance(plan.nodes.get(name), QueueNode | TransferNode | VoicemailNode)
        for name in path[closed_from:]
    )


def _no_submit(op: DataOp) -> None:
    pass


def _no_observer(record: CallRecord) -> None:
    pass


@dataclass
class _Open:
    record: CallRecord
    queued_at: float | None = None
    talking_since: float | None = None


@dataclass
class CallRecords:
    """The open records of live calls, by call reference."""

    submit: Callable[[DataOp], None] = _no_submit  # the write-behind
    on_started: Callable[[CallRecord], None] = _no_observer  # metrics: a call arrived
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    monotonic: Callable[[], float] = time.monotonic
    _open: OrderedDict[str, _Open] = field(default_factory=OrderedDict)
    _refused_second: tuple[int, int] = (0, 0)  # (second, calls refused in it)

    def started(self, ref: str, caller: CallerContext, plan: Dialplan | None) -> None:
        record = CallRecord(str(uuid.uuid4()), self.clock(), returning_today=caller.repeat_today)
        if plan is not None:
            self._entry(record, caller.dialed, plan)
        if plan is not None and record.partner is None and caller.forwarded_by is not None:
            forwarder = plan.numbers.get(caller.forwarded_by)
            if forwarder is not None and forwarder.partner:
                record.partner, record.partner_via = forwarder.partner, "forwarding"
        if len(self._open) >= MAX_OPEN:
            self._open.popitem(last=False)
            log.error("call_record_dropped", reason="too_many_open")
        self._open[ref] = _Open(record)
        self._observe(record)

    def refused(self, dialed: str, plan: Dialplan | None) -> None:
        """A trunk call the service refused (draining, call limit, ...): a record of the entry
        line only, written at once; nothing of the caller is read."""
        second = int(self.monotonic())
        seen = self._refused_second[1] if self._refused_second[0] == second else 0
        self._refused_second = (second, seen + 1)
        if seen >= MAX_REFUSED_PER_SECOND:  # a flood must not fill the write-behind (or the log)
            if seen == MAX_REFUSED_PER_SECOND:
                log.warning("call_records_dropped", reason="refused_flood")
            return
        record = CallRecord(str(uuid.uuid4()), self.clock(), outcome="refused")
        if plan is not None:
            self._entry(record, dialed, plan)
        self._observe(record)
        self._submit(record)

    def _entry(self, record: CallRecord, dialed: str, plan: Dialplan) -> None:
        _, number = plan.entry_for(dialed)
        if number is not None:
            record.entry_kind = number.kind.value
            record.entry_line = number.number
            record.region = number.region
            if number.kind is NumberKind.PARTNER and number.partner:
                record.partner, record.partner_via = number.partner, "number"

    def _observe(self, record: CallRecord) -> None:
        try:
            self.on_started(record)
        except Exception as exc:
            log.error("call_record_observer_failed", error=type(exc).__name__)

    def _get(self, ref: str) -> _Open | None:
        return self._open.get(ref)

    def ivr(self, ref: str, path: tuple[str, ...], language: str) -> None:
        if (o := self._get(ref)) is not None:
            o.record.ivr_path.extend(path)
            o.record.language = language

    def queued(self, ref: str, queue: str) -> None:
        if (o := self._get(ref)) is not None:
            o.record.queue = queue
            o.queued_at = self.monotonic()

    def offered(self, ref: str) -> None:
        if (o := self._get(ref)) is not None:
            o.record.offered += 1

    def missed(self, ref: str) -> None:
        if (o := self._get(ref)) is not None:
            o.record.ring_no_answer += 1

    def answered(self, ref: str, volunteer: str, waited: float | None) -> None:
        if (o := self._get(ref)) is not None:
            o.record.answered_by = volunteer
            o.record.wait_seconds = None if waited is None else round(waited, 3)
            o.talking_since = self.monotonic()

    def talk_ended(self, ref: str, time_limit: float | None) -> None:
        if (o := self._get(ref)) is None or o.talking_since is None:
            return
        talk = self.monotonic() - o.talking_since
        o.talking_since = None
        o.record.talk_seconds = round((o.record.talk_seconds or 0.0) + talk, 3)
        if time_limit is not None and talk >= time_limit:
            o.record.time_limit_reached = True

    def abandoned(self, ref: str, waited: float) -> None:
        if (o := self._get(ref)) is not None:
            o.record.wait_seconds = round(waited, 3)

    def overflowed(self, ref: str) -> None:
        if (o := self._get(ref)) is not None:
            o.record.overflowed = True
            if o.queued_at is not None:
                o.record.wait_seconds = round(self.monotonic() - o.queued_at, 3)

    def transferred(self, ref: str, destination: str, answered: bool) -> None:
        if (o := self._get(ref)) is not None:
            o.record.transfer_to = destination
            o.record.transfer_result = "answered" if answered else "failed"

    def finished(self, ref: str, outcome: str) -> CallRecord | None:
        """The call ended: its record is written behind (once), and forgotten here."""
        self.talk_ended(ref, None)  # ended mid-talk (shutdown): the talk so far counts
        o = self._open.pop(ref, None)
        if o is None:
            return None
        o.record.outcome = outcome
        self._submit(o.record)
        return o.record

    def finish_all(self, outcome: str) -> int:
        """The service stops: every open record is written with `outcome` (its call's task may
        be cancelled after the write-behind closed). A later `finished` finds nothing."""
        refs = list(self._open)
        for ref in refs:
            self.finished(ref, outcome)
        return len(refs)

    def _submit(self, record: CallRecord) -> None:
        try:
            self.submit(record_op(record))
        except Exception as exc:  # a record must never cost the call its clean ending
            log.error("call_record_not_written", error=type(exc).__name__)

    @property
    def open_count(self) -> int:
        return len(self._open)
