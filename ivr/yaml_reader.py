"""Typed reading of dialplan YAML, every value with its line and column.

`parse_yaml` turns the text into ruamel's round-trip tree, which keeps the position of every
key and value; a syntax error becomes a `DialplanError` at its position. A `Reader` reads
settings out of that tree with the type an admin meant (a name, a number in a range, yes/no, a
list of names, one of some choices) and records a `Problem` with file, line and column for
every value that is not, so that all mistakes are reported together.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ivr.problems import DialplanError, Problem, Severity

__all__ = ["Pos", "Reader", "parse_yaml", "suggest", "type_name"]

Pos = tuple[int, int]  # 1-based line, column
_E = TypeVar("_E", bound=enum.Enum)


def parse_yaml(text: str, filename: str) -> Any:
    """The YAML tree of `text`; raise DialplanError at the position of a syntax error."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = exc.problem or str(exc)
        if exc.context and "duplicate" not in (exc.problem or ""):
            what = f"{exc.context}: {what}"
        if "found duplicate key" in (exc.problem or ""):
            what = f"{exc.problem} (each name may be used only once here)"
        raise DialplanError([Problem(filename, line, col, f"YAML syntax: {what}")]) from exc
    except YAMLError as exc:
        raise DialplanError([Problem(filename, 1, 1, f"YAML syntax: {exc}")]) from exc


class _Constructor(RoundTripConstructor):
    """Dates stay text, so a bad one ("2026-13-01") gets our message with its position
    instead of a ValueError from deep inside the YAML library."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_str)


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "yes/no"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, Mapping):
        return "a section of `key: value` lines"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class Reader:
    """Reads typed settings from the YAML tree of `filename`, collecting every problem."""

    def __init__(self, filename: str) -> None:
        self.file = filename
        self.problems: list[Problem] = []

    # -- reporting --

    def error(self, pos: Pos, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0], pos[1], message))

    def warn(self, pos: Pos, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0], pos[1], message, Severity.WARNING))

    def has_errors(self) -> bool:
        return any(p.severity is Severity.ERROR for p in self.problems)

    # -- positions --

    @staticmethod
    def pos_of(container: Any, fallback: Pos = (1, 1)) -> Pos:
        lc = getattr(container, "lc", None)
        if lc is None or lc.line is None:
            return fallback
        return (lc.line + 1, lc.col + 1)

    @staticmethod
    def key_pos(m: CommentedMap, key: Any) -> Pos:
        try:
            line, col = m.lc.key(key)
        except (KeyError, TypeError):
            return Reader.pos_of(m)
        return (line + 1, col + 1)

    @staticmethod
    def value_pos(m: CommentedMap, key: Any) -> Pos:
        value = m.get(key)
        if isinstance(value, CommentedMap | CommentedSeq) and value.lc.line is not None:
            return Reader.pos_of(value)
        try:
            line, col = m.lc.value(key)
        except (KeyError, TypeError):
            return Reader.key_pos(m, key)
        return (line + 1, col + 1)

    @staticmethod
    def item_pos(seq: CommentedSeq, index: int) -> Pos:
        try:
            line, col = seq.lc.item(index)
        except (KeyError, TypeError, IndexError):
            return Reader.pos_of(seq)
        return (line + 1, col + 1)

    # -- generic field readers --

    def section(
        self,
        m: CommentedMap,
        where: str,
        allowed: Iterable[str],
        required: Iterable[str] = (),
        pos: Pos | None = None,
    ) -> None:
        allowed = tuple(allowed)
        misspelt: set[str] = set()
        for key in m:
            if not isinstance(key, str) or key not in allowed:
                misspelt.update(difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6))
                self.error(
                    self.key_pos(m, key),
                    f"unknown setting {str(key)!r} in {where}{suggest(str(key), allowed)}; "
                    f"allowed here: {', '.join(allowed)}",
                )
        for key in required:
            if key not in m and key not in misspelt:  # the misspelling's message says it
                self.error(pos or self.pos_of(m), f"{where} needs a `{key}:` setting")
            elif key in m and m[key] is None:
                self.empty(m, key, where)

    def empty(self, m: CommentedMap, key: str, where: str) -> None:
        """A required `key:` with nothing after it (it would read as no value at all)."""
        self.error(self.key_pos(m, key), f"`{key}` in {where} is empty; give it a value")

    def mapping(self, parent: CommentedMap, key: str, where: str) -> CommentedMap | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, CommentedMap):
            self.error(
                self.value_pos(parent, key),
                f"{where} must be a section of `name: value` lines, not {type_name(value)}",
            )
            return None
        return value

    def text(self, m: CommentedMap, key: str, where: str) -> str | None:
        value = m.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.error(
                self.value_pos(m, key),
                f"`{key}` in {where} must be a name or text, not {type_name(value)}",
            )
            return None
        return str(value)

    def number(
        self,
        m: CommentedMap,
        key: str,
        where: str,
        *,
        low: float,
        high: float,
        whole: bool,
        unit: str = "",
    ) -> float | None:
        value: Any = m.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (whole and not isinstance(value, int))
        ):
            kind = "a whole number" if whole else "a number"
            self.error(
                self.value_pos(m, key),
                f"`{key}` in {where} must be {kind}{' of' + unit if unit else ''}, "
                f"not {type_name(value)}",
            )
            return None
        amount = float(value)
        if not low <= amount <= high:
            self.error(
                self.value_pos(m, key),
                f"`{key}` in {where} must be between {low:g} and {high:g}{unit}, not {value}",
            )
            return None
        return amount

    def choice(self, m: CommentedMap, key: str, where: str, options: type[_E]) -> _E | None:
        value = m.get(key)
        if value is None:
            return None
        try:
            return options(value)
        except ValueError:
            allowed = ", ".join(o.value for o in options)
            self.error(
                self.value_pos(m, key),
                f"`{key}` in {where} must be one of {allowed}, not {value!r}",
            )
            return None

    def flag(self, m: CommentedMap, key: str, where: str) -> bool | None:
        value = m.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(
                self.value_pos(m, key),
                f"`{key}` in {where} must be yes or no (true/false), not {type_name(value)}",
            )
            return None
        return value

    def names(self, m: CommentedMap, key: str, where: str) -> list[tuple[str, Pos]]:
        """A name or a list of names (prompts), each with its position."""
        value = m.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [(value, self.value_pos(m, key))]
        if isinstance(value, CommentedSeq):
            out: list[tuple[str, Pos]] = []
            for i, item in enumerate(value):
                if isinstance(item, str):
                    out.append((item, self.item_pos(value, i)))
                else:
                    self.error(
                        self.item_pos(value, i),
                        f"`{key}` in {where} lists names; {type_name(item)} is not a name",
                    )
            return out
        self.error(
            self.value_pos(m, key),
            f"`{key}` in {where} must be a name or a list of names, not {type_name(value)}",
        )
        return []

    def entries(
        self,
        doc: CommentedMap,
        key: str,
        kind: str,
        shape: str,
        allowed: tuple[str, ...],
        required: tuple[str, ...],
    ) -> Iterator[tuple[str, CommentedMap, str]]:
        """The named entries of a top-level section (a schedule, a queue, ...) as (name, body,
        "kind 'name'"); one that is not a section of settings is reported and skipped, and
        unknown or missing settings in each are reported."""
        section = self.mapping(doc, key, f"`{key}`")
        if section is None:
            return
        for name, body in section.items():
            where = f"{kind} {name!r}"
            if not isinstance(body, CommentedMap):
                self.error(self.value_pos(section, name), f"{where} must be {shape}")
                continue
            self.section(body, where, allowed, required, self.key_pos(section, name))
            yield str(name), body, where
