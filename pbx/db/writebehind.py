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
import json
import os
import random
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeAlias

import asyncpg
import structlog

from pbx.db.database import init_connection
from pbx.db.migrate import migrate
from pbx.private_files import private_dir

log = structlog.get_logger()

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# SQLSTATE classes that will fail the same way on every retry: data exception, integrity
# violation, syntax/undefined object, PL/pgSQL raise. Those ops are rejected one by one.
_PERMANENT_CLASSES = frozenset({"22", "23", "42", "P0"})
# Journal lines per batch id when spilling.
_JOURNAL_CHUNK = 500
# Committed batch ids older than this are pruned; journals are replayed long before that.
_DEDUP_RETENTION = "30 days"


@dataclass(frozen=True)
class Insert:
    table: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Upsert:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET every other column."""

    table: str
    values: Mapping[str, Any]
    key: tuple[str, ...]


@dataclass(frozen=True)
class Delete:
    table: str
    where: Mapping[str, Any]


DataOp: TypeAlias = Insert | Upsert | Delete
# A callable op runs inside the batch transaction. It cannot be journaled: use data ops for
# anything that must survive an outage longer than the in-memory buffer.
CallableOp: TypeAlias = Callable[[asyncpg.Connection], Awaitable[object]]
Op: TypeAlias = DataOp | CallableOp


def _quote(ident: str) -> str:
    return f'"{ident}"'


def _columns(op: DataOp) -> Mapping[str, Any]:
    return op.where if isinstance(op, Delete) else op.values


def _valid(op: DataOp) -> bool:
    names = [op.table, *_columns(op)]
    if isinstance(op, Upsert):
        names += op.key
        if not op.key or not set(op.key) <= set(op.values):
            return False
    return bool(_columns(op)) and all(isinstance(n, str) and _IDENT.match(n) for n in names)


def op_sql(op: DataOp) -> tuple[str, list[Any]]:
    """The statement and arguments for one data op (identifiers validated at submit)."""
    table = _quote(op.table)
    if isinstance(op, Delete):
        conds, args = [], []
        for name, value in op.where.items():
            if value is None:
                conds.append(f"{_quote(name)} IS NULL")
            else:
                args.append(value)
                conds.append(f"{_quote(name)} = ${len(args)}")
        return f"DELETE FROM {table} WHERE {' AND '.join(conds)}", args
    cols = list(op.values)
    sql = (
        f"INSERT INTO {table} ({', '.join(map(_quote, cols))}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))})"
    )
    if isinstance(op, Upsert):
        rest = [c for c in cols if c not in op.key]
        target = ", ".join(map(_quote, op.key))
        if rest:
            sets = ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in rest)
            sql += f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
        else:
            sql += f" ON CONFLICT ({target}) DO NOTHING"
    return sql, [op.values[c] for c in cols]


# --- journal encoding ---------------------------------------------------------------------------


def _enc(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, dict):
        return {"$j": value}  # a jsonb document, kept verbatim
    if isinstance(value, list | tuple):
        return [_enc(v) for v in value]
    return value


def _dec(value: Any) -> Any:
    if isinstance(value, dict):
        if "$t" in value:
            return datetime.fromisoformat(value["$t"])
        return value["$j"]
    if isinstance(value, list):
        return [_dec(v) for v in value]
    return value


def encode_op(op: DataOp) -> dict[str, Any]:
    if isinstance(op, Delete):
        return {"k": "delete", "t": op.table, "v": {c: _enc(v) for c, v in op.where.items()}}
    doc: dict[str, Any] = {"k": "insert", "t": op.table}
    doc["v"] = {c: _enc(v) for c, v in op.values.items()}
    if isinstance(op, Upsert):
        doc["k"] = "upsert"
        doc["key"] = list(op.key)
    return doc


def decode_op(doc: Mapping[str, Any]) -> DataOp:
    values = {str(c): _dec(v) for c, v in doc["v"].items()}
    kind = doc["k"]
    if kind == "insert":
        return Insert(doc["t"], values)
    if kind == "upsert":
        return Upsert(doc["t"], values, tuple(doc["key"]))
    if kind == "delete":
        return Delete(doc["t"], values)
    raise ValueError(f"unknown op kind {kind!r}")


# --- buffer segments ----------------------------------------------------------------------------


@dataclass
class _Memory:
    seq: int
    ops: deque[Op] = field(default_factory=deque)


@dataclass
class _Journal:
    seq: int
    path: Path
    pending: int = 0  # lines not yet applied
    writer: IO[str] | None = None
    reader: IO[str] | None = None
    _chunk_id: str = ""
    _chunk_len: int = 0
    _peeked: str | None = None

    def append(self, op: DataOp, batch_id: str | None = None) -> None:
        if self.writer is None:
            # Owner-only: registrations hold volunteers' addresses.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self.writer = os.fdopen(fd, "a", encoding="utf-8")
        if batch_id is None:
            if not self._chunk_id or self._chunk_len >= _JOURNAL_CHUNK:
                self._chunk_id, self._chunk_len = str(uuid.uuid4()), 0
            self._chunk_len += 1
            batch_id = self._chunk_id
        doc = {"b": batch_id, "op": encode_op(op)}
        line = json.dumps(doc, separators=(",", ":"), default=str)
        self.writer.write(line + "\n")
        self.writer.flush()
        self.pending += 1

    def seal(self) -> None:
        if self.writer is not None:
            # Each line is flushed to the OS when written; sync once the file is complete.
            os.fsync(self.writer.fileno())
            self.writer.close()
            self.writer = None

    def next_group(self) -> tuple[str, list[DataOp], int] | None:
        """The next run of lines sharing a batch id: (id, ops, lines consumed incl. corrupt)."""
        if self.reader is None:
            self.reader = self.path.open("r", encoding="utf-8")
        batch_id: str | None = None
        ops: list[DataOp] = []
        consumed = 0
        while True:
            line = self._peeked if self._peeked is not None else self.reader.readline()
            self._peeked = None
            if not line:
                break
            if not line.strip():
                continue  # not counted when loading either
            try:
                doc = json.loads(line)
                line_id = str(uuid.UUID(doc["b"]))
                op = decode_op(doc["op"])
            except (ValueError, KeyError, TypeError):
                # A torn last line after a crash: nothing to apply.
                log.warning("writebehind.journal_corrupt_line", journal=self.path.name)
                consumed += 1
                continue
            if batch_id is None:
                batch_id = line_id
            elif line_id != batch_id:
                self._peeked = line
                break
            ops.append(op)
            consumed += 1
        if batch_id is None:
            return None if consumed == 0 else (str(uuid.uuid4()), [], consumed)
        return batch_id, ops, consumed

    def close(self) -> None:
        self.seal()
        if self.reader is not None:
            self.reader.close()
            self.reader = None


_Segment: TypeAlias = _Memory | _Journal


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


def _op_name(op: Op) -> str:
    if isinstance(op, Insert | Upsert | Delete):
        return f"{type(op).__name__.lower()}:{op.table}"
    return getattr(op, "__qualname__", type(op).__name__)


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
    ) -> None:
        self.url = url
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
            log.error("writebehind.submit_failed", op=_op_name(op), **_error_fields(exc))

    def _submit(self, op: Op) -> None:
        if isinstance(op, Insert | Upsert | Delete):
            if not _valid(op):
                self._rejected += 1
                log.error("writebehind.invalid_op", op=_op_name(op))
                return
        elif not callable(op):
            self._rejected += 1
            log.error("writebehind.invalid_op", op=type(op).__name__)
            return
        tail = self._segments[-1]
        if not self._closed and self._in_memory < self.max_buffer:
            if isinstance(tail, _Journal):
                tail.seal()  # the journal is complete; newer ops queue behind it in memory
                tail = self._new_memory()
            assert isinstance(tail, _Memory)
            tail.ops.append(op)
            self._in_memory += 1
        else:
            if not isinstance(op, Insert | Upsert | Delete):
                self._dropped += 1
                log.error("writebehind.dropped_callable", op=_op_name(op))
                return
            if isinstance(tail, _Memory) or tail.reader is not None:
                tail = self._new_journal()
            assert isinstance(tail, _Journal)
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

    def _new_journal(self) -> _Journal:
        seq = self._next_seq()
        seg = _Journal(seq, self._journal_path(seq))
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
            self._segments.append(_Journal(int(path.stem), path, pending=lines))
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
                        log.error("writebehind.rejected", op=_op_name(op), **_error_fields(exc))
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
            if isinstance(seg, _Journal):
                seg.close()
                continue
            ops: list[tuple[Op, str | None]] = []
            if inflight is not None and inflight.source is seg:
                ops += [(op, inflight.id) for op in inflight.ops]  # keeps its id: may be applied
            ops += [(op, None) for op in seg.ops]
            seg.ops.clear()
            journal = _Journal(seg.seq, self._journal_path(seg.seq))
            for op, batch_id in ops:
                self._in_memory -= 1
                if isinstance(op, Insert | Upsert | Delete):
                    try:
                        journal.append(op, batch_id)
                        self._journaled += 1
                    except (OSError, TypeError, ValueError) as exc:
                        self._dropped += 1
                        log.error(
                            "writebehind.journal_failed", op=_op_name(op), **_error_fields(exc)
                        )
                else:
                    self._dropped += 1
                    log.error("writebehind.dropped_callable", op=_op_name(op))
            journal.seal()
            self._segments[i] = journal
        # Submissions after close append to a fresh journal at the end.
        self._new_journal()
