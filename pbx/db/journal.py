"""The write-behind's journal: operations beyond the in-memory buffer, as JSON lines in an
owner-only file, grouped by batch id so that a replayed batch is recognised as one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import structlog

from pbx.db.ops import DataOp, Delete, Insert, Upsert

log = structlog.get_logger()

# Journal lines per batch id when spilling.
_JOURNAL_CHUNK = 500


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


@dataclass
class Journal:
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
