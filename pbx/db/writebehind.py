"""Write-behind to PostgreSQL: live call handling never waits for (or fails with) the database.

Callers `submit()` small operations; a background task writes them in batches, one transaction
per batch, in submission order. On a database error the batch is kept and retried with capped
exponential backoff. The in-memory buffer is bounded; beyond it operations are appended to a
JSON-lines journal under `state_dir/writebehind/` and replayed in order, also after a restart.

Exactly once: every batch has an id inserted into `writebehind_batches` in the same transaction,
so a batch retried after an ambiguous failure (COMMIT sent, answer lost) or replayed from a
journal that was not yet deleted is skipped instead of applied twice.

Ordering: the buffer is a queue of segments (in memory, or a journal file); the writer drains
them strictly in order, so an upsert and a later delete of the same row never swap.

Logs name tables, counts and error classes only, never values (they may hold personal data).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import asyncpg
import structlog

from pbx.db.database import init_connection
from pbx.db.journal import Journal
from pbx.db.migrate import migrate
from pbx.db.ops import Delete, Insert, Op, Upsert, op_name, op_sql, valid_op
from pbx.private_files import private_dir

log = structlog.get_logger()

# SQLSTATE classes that will fail the same way on every retry: data exception, integrity
# violation, syntax/undefined object, PL/pgSQL raise. Those ops are rejected one by one.
_PERMANENT_CLASSES = frozenset({"22", "23", "42", "P0"})
# Committed batch ids older than this are pruned; journals are replayed long before that.
_DEDUP_RETENTION = "30 days"


# --- buffer segments ----------------------------------------------------------------------------


@dataclass
class _Memory:
    seq: int
    ops: deque[Op] = field(default_factory=deque)


_Segment: TypeAlias = _Memory | Journal


@dataclass
class _Batch:
    id: str
    ops: list[Op]
    source: _Segment
    lines: int  # journal lines this batch consumes (0 for memory batches)


@dataclass(frozen=True)
class WriteBehindStats:
    pending: int  # submitted, not yet in the database (memory + journal)
    in_memory: int
    journaled: int
    written: int  # ops committed
    failed_attempts: int  # batch attempts that hit a database error
    spilled: int  # ops written to the journal because the memory buffer was full
    rejected: int  # ops the database refused permanently (bad data), or invalid at submit
    dropped: int  # callable ops that could not be journaled
    duplicates_skipped: int  # batches found already committed (retry after ambiguous commit)
    connected: bool


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] not in _PERMANENT_CLASSES
    if isinstance(exc, ValueError):  # client-side encoding error (asyncpg's DataError)
        return False
    return isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError)


def _error_fields(exc: BaseException) -> dict[str, str]:
    # Only the class and SQLSTATE: messages can quote the offending values.
    fields = {"error": type(exc).__name__}
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate:
        fields["sqlstate"] = exc.sqlstate
    return fields


class WriteBehind:
    """Buffered, retried, journaled writer. Create, `start()`, `submit()` freely, `close()`."""

    def __init__(
        self,
        url: str,
        state_dir: Path,
        *,
        max_buffer: int = 100_000,
        batch_size: int = 500,
        backoff_initial: float = 0.1,
        backoff_max: float = 30.0,
        command_timeout: float = 30.0,
        linger: float = 0.05,
    ) -> None:
        self.url = url
        # An idle writer woken by a submit waits this long first, so the other writes of a
        # busy moment share its transaction: one BEGIN/batch id/COMMIT per call setup cost
        # more than the setup's SIP work, and nothing live waits for the database.
        self.linger = linger
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.command_timeout = command_timeout
        self.journal_dir = state_dir / "writebehind"
        private_dir(self.journal_dir)
        self._segments: deque[_Segment] = deque()
        self._in_memory = 0
        self._journaled = 0
        self._written = 0
        self._failed_attempts = 0
        self._spilled = 0
        self._rejected = 0
        self._dropped = 0
        self._duplicates = 0
        self._spilling_logged = False
        self._inflight: _Batch | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._closed = False
        self._load_journals()

    # --- submitting (never blocks, never raises) --------------------------------------------

    def submit(self, op: Op) -> None:
        try:
            self._submit(op)
        except Exception as exc:  # a full disk must not take a call down with it
            self._dropped += 1
            log.error("writebehind.submit_failed", op=op_name(op), **_error_fields(exc))

    def _submit(self, op: Op) -> None:
        if isinstance(op, Insert | Upsert | Delete):
            if not valid_op(op):
                self._rejected += 1
                log.error("writebehind.invalid_op", op=op_name(op))
                return
        elif not callable(op):
            self._rejected += 1
            log.error("writebehind.invalid_op", op=type(op).__name__)
            return
        tail = self._segments[-1]
        if not self._closed and self._in_memory < self.max_buffer:
            if isinstance(tail, Journal):
                tail.seal()  # the journal is complete; newer ops queue behind it in memory
                tail = self._new_memory()
            assert isinstance(tail, _Memory)
            tail.ops.append(op)
            self._in_memory += 1
        else:
            if not isinstance(op, Insert | Upsert | Delete):
                self._dropped += 1
                log.error("writebehind.dropped_callable", op=op_name(op))
                return
            if isinstance(tail, _Memory) or tail.reader is not None:
                tail = self._new_journal()
            assert isinstance(tail, Journal)
            tail.append(op)
            self._journaled += 1
            self._spilled += 1
            if not self._spilling_logged:
                self._spilling_logged = True
                log.warning("writebehind.spilling", journal=tail.path.name, pending=self.pending)
        self._drained.clear()
        self._wake.set()

    # --- segments ---------------------------------------------------------------------------

    def _next_seq(self) -> int:
        return (self._segments[-1].seq + 1) if self._segments else self._max_journal_seq() + 1

    def _max_journal_seq(self) -> int:
        seqs = [int(p.stem) for p in self.journal_dir.glob("*.jsonl") if p.stem.isdigit()]
        return max(seqs, default=0)

    def _journal_path(self, seq: int) -> Path:
        return self.journal_dir / f"{seq:012d}.jsonl"

    def _new_memory(self) -> _Memory:
        seg = _Memory(self._next_seq())
        self._segments.append(seg)
        return seg

    def _new_journal(self) -> Journal:
        seq = self._next_seq()
        seg = Journal(seq, self._journal_path(seq))
        self._segments.append(seg)
        return seg

    def _load_journals(self) -> None:
        """Queue journals left by earlier runs, oldest first, ahead of anything new."""
        paths = sorted(
            (p for p in self.journal_dir.glob("*.jsonl") if p.stem.isdigit()),
            key=lambda p: int(p.stem),
        )
        for path in paths:
            with path.open("r", encoding="utf-8") as fh:
                lines = sum(1 for line in fh if line.strip())
            if lines == 0:
                path.unlink()
                continue
            self._segments.append(Journal(int(path.stem), path, pending=lines))
            self._journaled += lines
        if paths:
            log.info(
                "writebehind.journal_replay", journals=len(self._segments), ops=self._journaled
            )
        self._new_memory()

    def _next_batch(self) -> _Batch | None:
        while self._segments:
            head = self._segments[0]
            is_tail = head is self._segments[-1]
            if isinstance(head, _Memory):
                if head.ops:
                    n = min(self.batch_size, len(head.ops))
                    ops = [head.ops.popleft() for _ in range(n)]
                    return _Batch(str(uuid.uuid4()), ops, head, 0)
                if is_tail:
                    return None
                self._segments.popleft()
                continue
            if is_tail:
                head.seal()
                self._new_memory()
            group = head.next_group()
            if group is None:
                head.close()
                head.path.unlink(missing_ok=True)
                self._journaled -= head.pending
                self._segments.popleft()
                continue
            batch_id, data_ops, consumed = group
            return _Batch(batch_id, list[Op](data_ops), head, consumed)
        return None

    def _settle(self, batch: _Batch) -> None:
        """Account for a batch that is now in the database (or known to be)."""
        if isinstance(batch.source, _Memory):
            self._in_memory -= len(batch.ops)
        else:
            batch.source.pending -= batch.lines
            self._journaled -= batch.lines

    # --- the writer task --------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="writebehind")

    async def _connect(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self.url, timeout=10, command_timeout=self.command_timeout)
            try:
                await init_connection(conn)
                await migrate(conn)
                await conn.execute(
                    "DELETE FROM writebehind_batches "
                    f"WHERE applied_at < now() - interval '{_DEDUP_RETENTION}'"
                )
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
            log.info("writebehind.connected", pending=self.pending)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _run(self) -> None:
        failures = 0
        while True:
            batch = self._inflight or self._next_batch()
            if batch is None:
                self._wake.clear()
                self._drained.set()
                await self._wake.wait()
                if self.linger > 0:
                    await asyncio.sleep(self.linger)
                continue
            self._inflight = batch
            try:
                conn = await self._connect()
                await self._apply(conn, batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._failed_attempts += 1
                self._drop_connection()
                delay = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 30))
                delay *= random.uniform(0.8, 1.0)  # de-synchronise retries after an outage
                log.warning(
                    "writebehind.retry",
                    attempt=failures,
                    delay=round(delay, 3),
                    pending=self.pending,
                    **_error_fields(exc),
                )
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("writebehind.recovered", attempts=failures, pending=self.pending)
            failures = 0
            self._inflight = None
            self._settle(batch)

    async def _apply(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        try:
            await self._apply_batch(conn, batch, careful=False)
        except Exception as exc:
            if _is_transient(exc):
                raise
            # Some op is bad data: redo the batch op by op, rejecting only the bad ones.
            await self._apply_batch(conn, batch, careful=True)

    async def _apply_batch(self, conn: asyncpg.Connection, batch: _Batch, careful: bool) -> None:
        written = 0
        async with conn.transaction():
            status = await conn.execute(
                "INSERT INTO writebehind_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING",
                uuid.UUID(batch.id),
            )
            if status.endswith(" 0"):
                self._duplicates += 1
                log.info("writebehind.duplicate_batch_skipped", ops=len(batch.ops))
                return
            for group in self._groups(batch.ops):
                if not careful:
                    await self._run_group(conn, group)
                    written += len(group)
                    continue
                for op in group:
                    try:
                        async with conn.transaction():  # a savepoint per op
                            await self._run_group(conn, [op])
                        written += 1
                    except Exception as exc:
                        if _is_transient(exc):
                            raise
                        self._rejected += 1
                        log.error("writebehind.rejected", op=op_name(op), **_error_fields(exc))
        self._written += written

    @staticmethod
    def _groups(ops: list[Op]) -> Iterator[list[Op]]:
        """Consecutive data ops with the same statement, so they go in one executemany."""
        group: list[Op] = []
        key: str | None = None
        for op in ops:
            op_key = op_sql(op)[0] if isinstance(op, Insert | Upsert | Delete) else None
            if group and (op_key is None or op_key != key):
                yield group
                group = []
            group.append(op)
            key = op_key
        if group:
            yield group

    @staticmethod
    async def _run_group(conn: asyncpg.Connection, group: list[Op]) -> None:
        first = group[0]
        if not isinstance(first, Insert | Upsert | Delete):
            await first(conn)
            return
        statements = [op_sql(op) for op in group if isinstance(op, Insert | Upsert | Delete)]
        if len(statements) == 1:
            await conn.execute(statements[0][0], *statements[0][1])
        else:
            await conn.executemany(statements[0][0], [args for _, args in statements])

    # --- observing and shutting down --------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._in_memory + self._journaled

    def stats(self) -> WriteBehindStats:
        return WriteBehindStats(
            pending=self.pending,
            in_memory=self._in_memory,
            journaled=self._journaled,
            written=self._written,
            failed_attempts=self._failed_attempts,
            spilled=self._spilled,
            rejected=self._rejected,
            dropped=self._dropped,
            duplicates_skipped=self._duplicates,
            connected=self._conn is not None and not self._conn.is_closed(),
        )

    async def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is in the database; False on timeout."""
        if self.pending == 0 and self._inflight is None:
            return True
        self.start()
        self._drained.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return self.pending == 0

    async def close(self, timeout: float = 5.0) -> bool:
        """Flush for up to `timeout`, then journal whatever is left; True if nothing was left.

        Later `submit()` calls still go to the journal, so nothing is lost during shutdown.
        """
        flushed = await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._closed = True
        self._spill_memory()
        self._drop_connection()
        log.info("writebehind.closed", flushed=flushed, journaled=self._journaled)
        return flushed

    def _spill_memory(self) -> None:
        """Write every in-memory segment to its own journal, keeping the queue's order."""
        inflight = self._inflight
        self._inflight = None
        for i, seg in enumerate(list(self._segments)):
            if isinstance(seg, Journal):
                seg.close()
                continue
            ops: list[tuple[Op, str | None]] = []
            if inflight is not None and inflight.source is seg:
                ops += [(op, inflight.id) for op in inflight.ops]  # keeps its id: may be applied
            ops += [(op, None) for op in seg.ops]
            seg.ops.clear()
            journal = Journal(seg.seq, self._journal_path(seg.seq))
            for op, batch_id in ops:
                self._in_memory -= 1
                if isinstance(op, Insert | Upsert | Delete):
                    try:
                        journal.append(op, batch_id)
                        self._journaled += 1
                    except (OSError, TypeError, ValueError) as exc:
                        self._dropped += 1
                        log.error(
                            "writebehind.journal_failed", op=op_name(op), **_error_fields(exc)
                        )
                else:
                    self._dropped += 1
                    log.error("writebehind.dropped_callable", op=op_name(op))
            journal.seal()
            self._segments[i] = journal
        # Submissions after close append to a fresh journal at the end.
        self._new_journal()
