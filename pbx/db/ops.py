"""What the write-behind writes: small data operations (insert, upsert, delete) on one table,
or a callable run inside the batch's transaction, and the SQL a data operation becomes.

Identifiers are checked at submit (`valid_op`): only lower-case SQL names, so that a statement
built here can never carry anything but the values, which travel as arguments.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

import asyncpg

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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


def valid_op(op: DataOp) -> bool:
    names = [op.table, *_columns(op)]
    if isinstance(op, Upsert):
        names += op.key
        if not op.key or not set(op.key) <= set(op.values):
            return False
    return bool(_columns(op)) and all(isinstance(n, str) and _IDENT.match(n) for n in names)


def op_sql(op: DataOp) -> tuple[str, list[Any]]:
    """The statement and arguments for one data op (identifiers validated at submit)."""
    if isinstance(op, Delete):
        nulls = tuple(value is None for value in op.where.values())
        sql = _delete_sql(op.table, tuple(op.where), nulls)
        return sql, [value for value in op.where.values() if value is not None]
    cols = tuple(op.values)
    key = op.key if isinstance(op, Upsert) else None
    return _insert_sql(op.table, cols, key), [op.values[c] for c in cols]


# The same few statements come back for every call (a call record, a shift row): their text is
# built once per shape. Bounded: the shapes are the service's own (tables and column sets).
@lru_cache(maxsize=256)
def _delete_sql(table: str, names: tuple[str, ...], nulls: tuple[bool, ...]) -> str:
    conds: list[str] = []
    args = 0
    for name, null in zip(names, nulls, strict=True):
        if null:
            conds.append(f"{_quote(name)} IS NULL")
        else:
            args += 1
            conds.append(f"{_quote(name)} = ${args}")
    return f"DELETE FROM {_quote(table)} WHERE {' AND '.join(conds)}"


@lru_cache(maxsize=256)
def _insert_sql(table: str, cols: tuple[str, ...], key: tuple[str, ...] | None) -> str:
    sql = (
        f"INSERT INTO {_quote(table)} ({', '.join(map(_quote, cols))}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))})"
    )
    if key is not None:
        rest = [c for c in cols if c not in key]
        target = ", ".join(map(_quote, key))
        if rest:
            sets = ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in rest)
            sql += f" ON CONFLICT ({target}) DO UPDATE SET {sets}"
        else:
            sql += f" ON CONFLICT ({target}) DO NOTHING"
    return sql


def op_name(op: Op) -> str:
    """For logs: the kind and table (a data op) or the function's name, never a value."""
    if isinstance(op, Insert | Upsert | Delete):
        return f"{type(op).__name__.lower()}:{op.table}"
    return getattr(op, "__qualname__", type(op).__name__)
