"""Load and validate dialplan.yaml into an `ivr.model.Dialplan`, all or nothing.

Every problem found is collected (not just the first) and raised together in one
`DialplanError`, each with file, line and column, so an admin can fix them in one go. The
ruamel round-trip loader keeps the position of every key and value for that.

Errors stop the plan from loading. Warnings do not (they are in `Dialplan.warnings`):
- a node no number, queue overflow or `unknown_number` can reach (a draft, harmless);
- a loop a caller who presses nothing goes round forever, but with menu waits in it.
A loop with no key press and no wait at all (play/goto/hours only) is an error.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from ivr import model
from ivr.model import (
    MINUTES_PER_DAY,
    DayHours,
    Dialplan,
    NodeKind,
    NumberKind,
    TimeRange,
)

__all__ = [
    "DEFAULT_PLAN",
    "DialplanError",
    "Problem",
    "PromptCheck",
    "Severity",
    "load_dialplan",
    "load_dialplan_text",
]

DEFAULT_PLAN = Path(__file__).parents[1] / "dialplan.yaml"
DEFAULT_TIMEZONE = "Europe/Amsterdam"
DEFAULT_LANGUAGES = ("nl", "ar", "fa", "tr")
MENU_KEYS = "0123456789*#"
MAX_MENU_TIMEOUT = 60.0
MAX_RETRIES = 10
MAX_VOICEMAIL_SECONDS = 600
SIP_URI = re.compile(r"^sips?:[^@\s:;]+@[A-Za-z0-9.\-\[\]:]+(;[^\s]*)?$")


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        tag = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.file}:{self.line}:{self.column}: {tag}{self.message}"


class DialplanError(Exception):
    """The plan did not load; `problems` lists every error (and warning) found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity is Severity.ERROR]
        super().__init__(f"{len(errors)} error(s) in dialplan:\n" + "\n".join(map(str, problems)))


class PromptCheck(Protocol):
    """What the loader needs of a prompt library (pbx.media.prompts.PromptLibrary fits)."""

    def has(self, lang: str, name: str, *, fallback: bool = True) -> bool: ...


@lru_cache(maxsize=8)
def _library(directory: Path) -> PromptCheck:
    from pbx.media.prompts import PromptLibrary

    return PromptLibrary(directory)


def load_dialplan(
    path: Path | str, *, prompts: PromptCheck | None = None, recordings: Path | None = None
) -> Dialplan:
    """Load and validate `path`; raise DialplanError listing every problem.

    Prompts are checked against `prompts`, else a PromptLibrary of `recordings`, else of the
    plan's `recordings:` setting (relative to the plan file), else the repository's
    recordings/ folder.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DialplanError([Problem(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
    return load_dialplan_text(text, str(path), prompts=prompts, recordings=recordings)


def load_dialplan_text(
    text: str,
    filename: str = "<dialplan>",
    *,
    prompts: PromptCheck | None = None,
    recordings: Path | None = None,
) -> Dialplan:
    """As load_dialplan, from the text of a plan (`filename` is used in messages)."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    try:
        doc = yaml.load(text)
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
    builder = _Builder(filename, Path(filename).parent, prompts, recordings)
    plan = builder.build(doc)
    errors = [p for p in builder.problems if p.severity is Severity.ERROR]
    ordered = sorted(builder.problems, key=lambda p: (p.line, p.column))
    if errors or plan is None:
        raise DialplanError(ordered)
    return plan


class _Constructor(RoundTripConstructor):
    """Dates stay text, so a bad one ("2026-13-01") gets our message with its position
    instead of a ValueError from deep inside the YAML library."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_str)


# --- positions and small checks ----------------------------------------------------------

Pos = tuple[int, int]  # 1-based line, column
T = TypeVar("T")
_E = TypeVar("_E", bound=enum.Enum)

TOP_KEYS = (
    "timezone",
    "languages",
    "recordings",
    "schedules",
    "queues",
    "numbers",
    "unknown_number",
    "destinations",
    "flow",
)
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_GROUPS: dict[str, tuple[int, ...]] = {
    **{name: (i,) for i, name in enumerate(DAY_NAMES)},
    "weekdays": (0, 1, 2, 3, 4),
    "weekend": (5, 6),
    "every day": tuple(range(7)),
    "daily": tuple(range(7)),
}
COMMON_NODE_KEYS = ("type", "language", "note")
NODE_KEYS: dict[NodeKind, tuple[str, ...]] = {
    NodeKind.PLAY: ("prompts", "next"),
    NodeKind.MENU: (
        "prompts",
        "keys",
        "timeout",
        "retries",
        "invalid_key",
        "no_input",
        "default",
    ),
    NodeKind.HOURS: ("schedule", "queue", "open", "closed"),
    NodeKind.QUEUE: ("prompts", "queue"),
    NodeKind.TRANSFER: ("prompts", "destination", "on_failure"),
    NodeKind.VOICEMAIL: ("prompts", "mailbox", "max_seconds", "finish_key", "after_message"),
    NodeKind.HANGUP: ("prompts",),
    NodeKind.GOTO: ("next",),
}
NODE_REQUIRED: dict[NodeKind, tuple[str, ...]] = {
    NodeKind.PLAY: ("prompts", "next"),
    NodeKind.MENU: ("prompts", "keys", "default"),
    NodeKind.HOURS: ("open", "closed"),
    NodeKind.QUEUE: ("queue",),
    NodeKind.TRANSFER: ("destination",),
    NodeKind.VOICEMAIL: ("mailbox",),
    NodeKind.HANGUP: (),
    NodeKind.GOTO: ("next",),
}


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(value: object) -> str:
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


@dataclass(frozen=True)
class _Ref:
    """A name used somewhere that must exist in some section."""

    name: str
    pos: Pos
    what: str  # "node", "queue", "schedule", "destination"
    context: str


@dataclass
class _NodeInfo:
    pos: Pos
    prompts: list[tuple[str, Pos]]


class _Builder:
    def __init__(
        self,
        filename: str,
        base: Path,
        prompts: PromptCheck | None,
        recordings: Path | None,
    ) -> None:
        self.file = filename
        self.base = base
        self.prompt_check = prompts
        self.recordings = recordings
        self.problems: list[Problem] = []
        self.refs: list[_Ref] = []
        self.node_info: dict[str, _NodeInfo] = {}
        self.languages: tuple[str, ...] = DEFAULT_LANGUAGES
        self.language_pos: dict[str, Pos] = {}

    # -- reporting --

    def error(self, pos: Pos, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0], pos[1], message))

    def warn(self, pos: Pos, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0], pos[1], message, Severity.WARNING))

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
            return _Builder.pos_of(m)
        return (line + 1, col + 1)

    @staticmethod
    def value_pos(m: CommentedMap, key: Any) -> Pos:
        value = m.get(key)
        if isinstance(value, CommentedMap | CommentedSeq) and value.lc.line is not None:
            return _Builder.pos_of(value)
        try:
            line, col = m.lc.value(key)
        except (KeyError, TypeError):
            return _Builder.key_pos(m, key)
        return (line + 1, col + 1)

    @staticmethod
    def item_pos(seq: CommentedSeq, index: int) -> Pos:
        try:
            line, col = seq.lc.item(index)
        except (KeyError, TypeError, IndexError):
            return _Builder.pos_of(seq)
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
                    f"unknown setting {str(key)!r} in {where}{_suggest(str(key), allowed)}; "
                    f"allowed here: {', '.join(allowed)}",
                )
        for key in required:
            if key not in m and key not in misspelt:  # the misspelling's message says it
                self.error(pos or self.pos_of(m), f"{where} needs a `{key}:` setting")

    def mapping(self, parent: CommentedMap, key: str, where: str) -> CommentedMap | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, CommentedMap):
            self.error(
                self.value_pos(parent, key),
                f"{where} must be a section of `name: value` lines, not {_type_name(value)}",
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
                f"`{key}` in {where} must be a name or text, not {_type_name(value)}",
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
                f"not {_type_name(value)}",
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
                f"`{key}` in {where} must be yes or no (true/false), not {_type_name(value)}",
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
                        f"`{key}` in {where} lists names; {_type_name(item)} is not a name",
                    )
            return out
        self.error(
            self.value_pos(m, key),
            f"`{key}` in {where} must be a name or a list of names, not {_type_name(value)}",
        )
        return []

    def ref(self, m: CommentedMap, key: str, what: str, where: str) -> str | None:
        name = self.text(m, key, where)
        if name is not None:
            self.refs.append(_Ref(name, self.value_pos(m, key), what, f"`{key}` in {where}"))
        return name

    def language(self, m: CommentedMap, key: str, where: str) -> str | None:
        lang = self.text(m, key, where)
        if lang is not None and lang not in self.languages:
            self.error(
                self.value_pos(m, key),
                f"language {lang!r} in {where} is not one of the plan's languages "
                f"({', '.join(self.languages)}){_suggest(lang, self.languages)}",
            )
            return None
        return lang

    # -- the whole plan --

    def build(self, doc: Any) -> Dialplan | None:
        if doc is None:
            self.error((1, 1), "the dialplan is empty")
            return None
        if not isinstance(doc, CommentedMap):
            self.error(self.pos_of(doc), "the dialplan must be a section of `name: value` lines")
            return None
        self._doc_section = doc
        self.section(
            doc,
            "the dialplan",
            TOP_KEYS,
            ("schedules", "queues", "numbers", "unknown_number", "flow"),
        )
        zone = self.timezone(doc)
        self.read_languages(doc)
        schedules = self.schedules(doc, zone)
        queues = self.queues(doc)
        numbers = self.numbers(doc)
        destinations = self.destinations(doc)
        nodes = self.nodes(doc, queues, schedules)
        default_entry = self.ref(doc, "unknown_number", "node", "the dialplan")
        self.check_refs(schedules, queues, destinations, nodes)
        if any(p.severity is Severity.ERROR for p in self.problems):
            return None
        assert zone is not None and default_entry is not None
        self.check_graph(nodes, queues, numbers, default_entry)
        self.check_prompts(doc, nodes, queues, numbers, default_entry)
        if any(p.severity is Severity.ERROR for p in self.problems):
            return None
        warnings = tuple(str(p) for p in sorted(self.problems, key=lambda p: (p.line, p.column)))
        return Dialplan(
            timezone=zone,
            languages=self.languages,
            schedules=schedules,
            queues=queues,
            numbers=numbers,
            default_entry=default_entry,
            destinations=destinations,
            nodes=nodes,
            source=Path(self.file),
            warnings=warnings,
        )

    def timezone(self, doc: CommentedMap) -> ZoneInfo | None:
        name = self.text(doc, "timezone", "the dialplan")
        if name is None:
            if "timezone" in doc:
                return None
            name = DEFAULT_TIMEZONE
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(
                self.value_pos(doc, "timezone"),
                f"unknown time zone {name!r}; use a name like 'Europe/Amsterdam'",
            )
            return None

    def read_languages(self, doc: CommentedMap) -> None:
        if "languages" not in doc:
            return
        found = self.names(doc, "languages", "the dialplan")
        langs: list[str] = []
        for lang, pos in found:
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                self.error(pos, f"{lang!r} is not a language code (use e.g. nl, ar, fa, tr)")
            elif lang in langs:
                self.error(pos, f"language {lang!r} is listed twice")
            else:
                langs.append(lang)
                self.language_pos[lang] = pos
        if langs:
            self.languages = tuple(langs)
        elif not found:
            self.error(self.value_pos(doc, "languages"), "`languages` must name at least one")

    # -- schedules --

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

    def schedules(self, doc: CommentedMap, zone: ZoneInfo | None) -> dict[str, model.Schedule]:
        out: dict[str, model.Schedule] = {}
        for name, body, where in self.entries(
            doc, "schedules", "schedule", "a section with `weekly:` (and optionally `exceptions:`)",
            ("weekly", "exceptions", "note"), ("weekly",),
        ):  # fmt: skip
            week = self.weekly(body, where)
            exceptions = self.exceptions(body, where)
            if week is not None and exceptions is not None and zone is not None:
                out[name] = model.Schedule(name, zone, week, exceptions)
        return out

    def weekly(self, body: CommentedMap, where: str) -> tuple[DayHours, ...] | None:
        weekly = self.mapping(body, "weekly", f"`weekly` of {where}")
        if weekly is None:
            return None
        days: list[list[TimeRange]] = [[] for _ in range(7)]
        given: dict[int, tuple[str, Pos]] = {}
        ok = True
        for key in weekly:
            key_text = str(key).strip().lower()
            pos = self.key_pos(weekly, key)
            group = DAY_GROUPS.get(key_text)
            if group is None:
                self.error(
                    pos,
                    f"{str(key)!r} in {where} is not a day{_suggest(key_text, DAY_GROUPS)}; use "
                    "monday..sunday, weekdays, weekend or every day",
                )
                ok = False
                continue
            ranges = self.day_ranges(weekly, key, where)
            if ranges is None:
                ok = False
                continue
            for day in group:
                if day in given:
                    first, first_pos = given[day]
                    self.error(
                        pos,
                        f"{DAY_NAMES[day]} in {where} is already given by {first!r} on line "
                        f"{first_pos[0]}; give each day its hours only once",
                    )
                    ok = False
                    continue
                given[day] = (str(key), pos)
                days[day] = list(ranges)
        # Overlaps within a day, and with the part of yesterday's range after midnight.
        # One message per line of the file, naming every day it affects.
        clashes: dict[tuple[Pos, str], list[str]] = {}
        for day in range(7):
            clash = _overlap(days[day], days[(day - 1) % 7])
            if clash is not None:
                pos = given[day][1] if day in given else self.pos_of(weekly)
                clashes.setdefault((pos, clash), []).append(DAY_NAMES[day])
        for (pos, clash), names in clashes.items():
            self.error(pos, f"on {', '.join(names)} in {where}, {clash}; join them into one range")
            ok = False
        return tuple(DayHours(tuple(d)) for d in days) if ok else None

    def exceptions(self, body: CommentedMap, where: str) -> dict[date, DayHours] | None:
        section = self.mapping(body, "exceptions", f"`exceptions` of {where}")
        out: dict[date, DayHours] = {}
        if section is None:
            return out if "exceptions" not in body or body["exceptions"] is None else None
        ok = True
        for key, _value in section.items():
            pos = self.key_pos(section, key)
            day: date | None = None
            if isinstance(key, date):
                day = key
            else:
                try:
                    day = date.fromisoformat(str(key))
                except ValueError:
                    self.error(
                        pos,
                        f"{str(key)!r} in the exceptions of {where} is not a date; "
                        "write it as YYYY-MM-DD, e.g. 2026-12-25",
                    )
                    ok = False
                    continue
            ranges = self.day_ranges(section, key, where)
            clash = None if ranges is None else _overlap(ranges, [])
            if clash is not None:
                self.error(pos, f"on {day} in {where}, {clash}; join them into one range")
            if ranges is None or clash is not None:
                ok = False
                continue
            out[day] = DayHours(tuple(ranges))
        return out if ok else None

    def day_ranges(self, m: CommentedMap, key: Any, where: str) -> list[TimeRange] | None:
        """`closed`, `HH:MM-HH:MM`, or a list of ranges."""
        value = m.get(key)
        pos = self.value_pos(m, key)
        items: list[tuple[Any, Pos]]
        if isinstance(value, CommentedSeq):
            items = [(v, self.item_pos(value, i)) for i, v in enumerate(value)]
        else:
            items = [(value, pos)]
        ranges: list[TimeRange] = []
        ok = True
        for item, item_pos in items:
            if isinstance(item, str) and item.strip().lower() == "closed" and len(items) == 1:
                return []
            parsed = self.time_range(item, item_pos, where)
            if parsed is None:
                ok = False
            else:
                ranges.append(parsed)
        return ranges if ok else None

    def time_range(self, value: Any, pos: Pos, where: str) -> TimeRange | None:
        if not isinstance(value, str):
            self.error(
                pos,
                f'hours in {where} must be written like "18:00-22:00" or closed, '
                f"not {_type_name(value)}",
            )
            return None
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
        if match is None:
            self.error(
                pos,
                f'{value!r} in {where} is not a time range; write it like "18:00-22:00" '
                "(or closed)",
            )
            return None
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for h, mi, is_end in ((h1, m1, False), (h2, m2, True)):
            too_late = h > 24 or (h == 24 and (mi != 0 or not is_end))
            if too_late or mi > 59:
                self.error(
                    pos,
                    f"{h:02d}:{mi:02d} in {where} is not a time of day (00:00 to 23:59; "
                    "24:00 only as the end of a range)",
                )
                return None
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end or (start == 0 and end == 0):
            self.error(
                pos,
                f"{value.strip()!r} in {where} starts and ends at the same time; "
                "for a whole day write 00:00-24:00, for none write closed",
            )
            return None
        if end == 0:
            end = MINUTES_PER_DAY  # "22:00-00:00" ends at midnight
        return TimeRange(start, end)

    # -- queues --

    def queues(self, doc: CommentedMap) -> dict[str, model.Queue]:
        out: dict[str, model.Queue] = {}
        allowed = (
            "language",
            "schedule",
            "priority",
            "skill",
            "max_wait",
            "overflow",
            "regional",
            "display",
            "ring_timeout",
            "wrap_up",
            "time_limit",
            "announce_every",
            "volunteer_lost",
            "note",
        )
        for name, body, where in self.entries(
            doc, "queues", "queue", "a section of settings", allowed, ("language", "schedule")
        ):
            before = len(self.problems)
            lang = self.language(body, "language", where)
            schedule = self.ref(body, "schedule", "schedule", where)
            priority = self.number(body, "priority", where, low=0, high=100, whole=True)
            skill = self.text(body, "skill", where)
            max_wait = self.number(
                body, "max_wait", where, low=1, high=24 * 3600, whole=True, unit=" seconds"
            )
            overflow = self.ref(body, "overflow", "node", where)
            if ("overflow" in body) != ("max_wait" in body):
                self.error(
                    self.key_pos(body, "overflow" if "overflow" in body else "max_wait"),
                    f"{where}: `max_wait` and `overflow` go together (after max_wait seconds "
                    "the caller goes to the overflow node)",
                )
            regional = self.regional(body, where)
            display = self.text(body, "display", where)
            ring_timeout = self.number(
                body, "ring_timeout", where, low=5, high=120, whole=True, unit=" seconds"
            )
            wrap_up = self.number(
                body, "wrap_up", where, low=0, high=3600, whole=True, unit=" seconds"
            )
            time_limit = self.number(
                body, "time_limit", where, low=1, high=24 * 3600, whole=True, unit=" seconds"
            )
            announce = self.number(
                body, "announce_every", where, low=15, high=3600, whole=True, unit=" seconds"
            )
            lost = self.choice(body, "volunteer_lost", where, model.VolunteerLost)
            if len(self.problems) != before or lang is None or schedule is None:
                continue
            out[name] = model.Queue(
                name=name,
                language=lang,
                schedule=schedule,
                priority=int(priority or 0),
                skill=skill,
                max_wait=int(max_wait) if max_wait is not None else None,
                overflow=overflow,
                regional=regional,
                display=display or "",
                ring_timeout=int(ring_timeout or 20),
                wrap_up=int(wrap_up if wrap_up is not None else 30),
                time_limit=int(time_limit) if time_limit is not None else None,
                announce_every=int(announce or 60),
                volunteer_lost=lost or model.VolunteerLost.REQUEUE,
            )
        return out

    def regional(self, body: CommentedMap, where: str) -> model.RegionalPreference:
        section = self.mapping(body, "regional", f"`regional` of {where}")
        if section is None:
            return model.RegionalPreference()
        where = f"`regional` of {where}"
        self.section(section, where, ("prefer_local", "local_wait"))
        prefer = self.flag(section, "prefer_local", where)
        wait = self.number(
            section, "local_wait", where, low=0, high=3600, whole=True, unit=" seconds"
        )
        default = model.RegionalPreference()
        return model.RegionalPreference(
            prefer_local=default.prefer_local if prefer is None else prefer,
            local_wait=default.local_wait if wait is None else int(wait),
        )

    # -- numbers --

    def numbers(self, doc: CommentedMap) -> dict[str, model.Number]:
        out: dict[str, model.Number] = {}
        seen: dict[str, Pos] = {}
        value = doc.get("numbers")
        if value is None:
            return out
        if not isinstance(value, CommentedSeq):
            self.error(
                self.value_pos(doc, "numbers"),
                "`numbers` must be a list, one `- number: ...` entry per phone number",
            )
            return out
        kinds = [k.value for k in NumberKind]
        for i, body in enumerate(value):
            pos = self.item_pos(value, i)
            if not isinstance(body, CommentedMap):
                self.error(pos, "each entry of `numbers` must be a section starting `- number:`")
                continue
            raw = body.get("number")
            where = f"number {raw}" if raw is not None else "this number"
            self.section(
                body,
                where,
                ("number", "type", "start", "region", "partner", "note"),
                ("number", "type", "start"),
                pos,
            )
            before = len(self.problems)
            number: str | None = None
            if isinstance(raw, int) and not isinstance(raw, bool):
                self.error(
                    self.value_pos(body, "number"),
                    f'write the phone number in quotes, like "0{raw}"; without them YAML '
                    "reads it as a number and drops a leading 0",
                )
            elif isinstance(raw, str):
                number = model.normalize_number(raw)
                if not re.fullmatch(r"[\d\s\-+()]+", raw) or len(number) < 3:
                    self.error(
                        self.value_pos(body, "number"),
                        f"{raw!r} is not a phone number (digits, spaces and - only)",
                    )
                    number = None
            elif raw is not None:
                self.error(
                    self.value_pos(body, "number"),
                    f"`number` must be a phone number in quotes, not {_type_name(raw)}",
                )
            kind_text = self.text(body, "type", where)
            kind: NumberKind | None = None
            if kind_text is not None:
                if kind_text in kinds:
                    kind = NumberKind(kind_text)
                else:
                    self.error(
                        self.value_pos(body, "type"),
                        f"unknown number type {kind_text!r}{_suggest(kind_text, kinds)}; "
                        f"use one of {', '.join(kinds)}",
                    )
            entry = self.ref(body, "start", "node", where)
            region = self.text(body, "region", where)
            partner = self.text(body, "partner", where)
            if kind is NumberKind.LOCAL and region is None:
                self.error(pos, f"{where} is a local number and needs a `region:`")
            if kind is not NumberKind.LOCAL and kind is not None and "region" in body:
                self.error(
                    self.key_pos(body, "region"), f"{where}: only local numbers have a region"
                )
            if kind is NumberKind.PARTNER and partner is None:
                self.error(
                    pos,
                    f"{where} is a partner number and needs a `partner:` name "
                    "(calls are counted per partner)",
                )
            if kind is not NumberKind.PARTNER and kind is not None and "partner" in body:
                self.error(
                    self.key_pos(body, "partner"), f"{where}: only partner numbers have a partner"
                )
            if number is not None:
                if number in seen:
                    self.error(
                        self.value_pos(body, "number"),
                        f"number {raw} is listed twice (also on line {seen[number][0]})",
                    )
                    continue
                seen[number] = self.value_pos(body, "number")
            if len(self.problems) != before or number is None or kind is None or entry is None:
                continue
            out[number] = model.Number(
                number=number, kind=kind, entry=entry, region=region, partner=partner
            )
        return out

    # -- destinations --

    def destinations(self, doc: CommentedMap) -> dict[str, model.Destination]:
        out: dict[str, model.Destination] = {}
        for name, body, where in self.entries(
            doc, "destinations", "destination", "a section with `uri:` (and `description:`)",
            ("uri", "description"), ("uri",),
        ):  # fmt: skip
            uri = self.text(body, "uri", where)
            description = self.text(body, "description", where) or ""
            if uri is None:
                continue
            if not SIP_URI.fullmatch(uri.strip()):
                self.error(
                    self.value_pos(body, "uri"),
                    f"{uri!r} in {where} is not a SIP address; write it like "
                    '"sip:0800113@sip.provider.nl"',
                )
                continue
            out[name] = model.Destination(name=name, uri=uri.strip(), description=description)
        return out

    # -- nodes --

    def nodes(
        self,
        doc: CommentedMap,
        queues: Mapping[str, model.Queue],
        schedules: Mapping[str, model.Schedule],
    ) -> dict[str, model.Node]:
        out: dict[str, model.Node] = {}
        section = self.mapping(doc, "flow", "`flow`")
        if section is None:
            return out
        kinds = [k.value for k in NodeKind]
        for name, body in section.items():
            name = str(name)
            where = f"step {name!r}"
            pos = self.key_pos(section, name)
            if not isinstance(body, CommentedMap):
                self.error(
                    self.value_pos(section, name),
                    f"{where} must be a section starting with `type:`",
                )
                continue
            kind_text = self.text(body, "type", where)
            if kind_text is None:
                if "type" not in body:
                    self.error(pos, f"{where} needs a `type:` ({', '.join(kinds)})")
                continue
            if kind_text not in kinds:
                self.error(
                    self.value_pos(body, "type"),
                    f"unknown step type {kind_text!r}{_suggest(kind_text, kinds)}; "
                    f"use one of {', '.join(kinds)}",
                )
                continue
            kind = NodeKind(kind_text)
            self.section(body, where, COMMON_NODE_KEYS + NODE_KEYS[kind], NODE_REQUIRED[kind], pos)
            before = len(self.problems)
            info = _NodeInfo(pos, [])
            self.node_info[name] = info
            node = self.node(name, kind, body, where, info, queues, schedules)
            if node is not None and len(self.problems) == before:
                out[name] = node
        return out

    def node(
        self,
        name: str,
        kind: NodeKind,
        body: CommentedMap,
        where: str,
        info: _NodeInfo,
        queues: Mapping[str, model.Queue],
        schedules: Mapping[str, model.Schedule],
    ) -> model.Node | None:
        lang = self.language(body, "language", where)

        def prompts(key: str = "prompts") -> tuple[str, ...]:
            found = self.names(body, key, where)
            info.prompts.extend(found)
            return tuple(n for n, _ in found)

        def one_prompt(key: str) -> str | None:
            found = self.names(body, key, where)
            if len(found) > 1:
                self.error(self.value_pos(body, key), f"`{key}` in {where} takes one prompt")
            info.prompts.extend(found[:1])
            return found[0][0] if found else None

        def node_ref(key: str) -> str:
            return self.ref(body, key, "node", where) or ""

        if kind is NodeKind.PLAY:
            played = prompts()
            if not played and "prompts" in body:
                self.error(self.value_pos(body, "prompts"), f"{where} plays no prompts")
            return model.PlayNode(name=name, language=lang, prompts=played, next=node_ref("next"))
        if kind is NodeKind.MENU:
            played = prompts()
            keys = self.menu_keys(body, where)
            timeout = self.number(
                body, "timeout", where, low=1, high=MAX_MENU_TIMEOUT, whole=False, unit=" seconds"
            )
            retries = self.number(body, "retries", where, low=0, high=MAX_RETRIES, whole=True)
            return model.MenuNode(
                name=name,
                language=lang,
                prompts=played,
                keys=keys,
                timeout=5.0 if timeout is None else timeout,
                retries=2 if retries is None else int(retries),
                invalid_prompt=one_prompt("invalid_key"),
                no_input_prompt=one_prompt("no_input"),
                default=node_ref("default"),
            )
        if kind is NodeKind.HOURS:
            if ("schedule" in body) == ("queue" in body):
                self.error(
                    info.pos,
                    f"{where} needs either `schedule:` or `queue:` (one of them) "
                    "to know whose opening hours to check",
                )
                return None
            queue = self.ref(body, "queue", "queue", where)
            schedule = self.ref(body, "schedule", "schedule", where)
            if queue is not None:
                schedule = queues[queue].schedule if queue in queues else ""
            return model.HoursNode(
                name=name,
                language=lang,
                schedule=schedule or "",
                queue=queue,
                open=node_ref("open"),
                closed=node_ref("closed"),
            )
        if kind is NodeKind.QUEUE:
            return model.QueueNode(
                name=name,
                language=lang,
                prompts=prompts(),
                queue=self.ref(body, "queue", "queue", where) or "",
            )
        if kind is NodeKind.TRANSFER:
            on_failure = self.ref(body, "on_failure", "node", where)
            return model.TransferNode(
                name=name,
                language=lang,
                prompts=prompts(),
                destination=self.ref(body, "destination", "destination", where) or "",
                on_failure=on_failure,
            )
        if kind is NodeKind.VOICEMAIL:
            seconds = self.number(
                body,
                "max_seconds",
                where,
                low=5,
                high=MAX_VOICEMAIL_SECONDS,
                whole=True,
                unit=" seconds",
            )
            finish = self.text(body, "finish_key", where) or "#"
            if finish not in MENU_KEYS or len(finish) != 1:
                self.error(
                    self.value_pos(body, "finish_key"),
                    f"`finish_key` in {where} must be one key: 0-9, * or #",
                )
            return model.VoicemailNode(
                name=name,
                language=lang,
                prompts=prompts(),
                mailbox=self.text(body, "mailbox", where) or "",
                max_seconds=120 if seconds is None else int(seconds),
                finish_key=finish,
                saved_prompts=prompts("after_message"),
            )
        if kind is NodeKind.HANGUP:
            return model.HangupNode(name=name, language=lang, prompts=prompts())
        return model.GotoNode(name=name, language=lang, next=node_ref("next"))

    def menu_keys(self, body: CommentedMap, where: str) -> dict[str, str]:
        section = self.mapping(body, "keys", f"`keys` of {where}")
        out: dict[str, str] = {}
        if section is None:
            return out
        for key in section:
            text = str(key)
            if isinstance(key, bool) or text not in MENU_KEYS or len(text) != 1:
                self.error(
                    self.key_pos(section, key),
                    f'{text!r} in {where} is not a phone key; use one of 0-9, "*" or "#" '
                    "(in quotes)",
                )
                continue
            target = self.ref(section, key, "node", f"key {text} of {where}")
            if target is not None:
                out[text] = target
        if not out and not section:
            self.error(self.value_pos(body, "keys"), f"{where} has no keys")
        return out

    # -- cross references --

    def check_refs(
        self,
        schedules: Mapping[str, Any],
        queues: Mapping[str, Any],
        destinations: Mapping[str, Any],
        nodes: Mapping[str, Any],
    ) -> None:
        # Names defined, even if their own definition had errors (no knock-on messages).
        defined: dict[str, Callable[[], Iterable[str]]] = {
            "schedule": lambda: self._defined("schedules", schedules),
            "queue": lambda: self._defined("queues", queues),
            "destination": lambda: self._defined("destinations", destinations),
            "node": lambda: self._defined("flow", nodes),
        }
        section_name = {
            "schedule": "schedules",
            "queue": "queues",
            "destination": "destinations",
            "node": "flow",
        }
        for ref in self.refs:
            names = set(defined[ref.what]())
            if ref.name in names:
                continue
            hint = _suggest(ref.name, names)
            if ref.what == "destination":
                hint += (
                    "; a transfer may only go to a destination listed under "
                    "`destinations:`, never to a number or address written here"
                )
            self.error(
                ref.pos,
                f"{ref.context} names {ref.what} {ref.name!r}, which is not defined under "
                f"`{section_name[ref.what]}:`{hint}",
            )

    def _defined(self, section: str, parsed: Mapping[str, Any]) -> set[str]:
        names = set(parsed)
        raw = self._doc_section.get(section) if self._doc_section is not None else None
        if isinstance(raw, CommentedMap):
            names |= {str(k) for k in raw}
        return names

    _doc_section: CommentedMap | None = None

    # -- the call graph --

    def check_graph(
        self,
        nodes: Mapping[str, model.Node],
        queues: Mapping[str, model.Queue],
        numbers: Mapping[str, model.Number],
        default_entry: str,
    ) -> None:
        # Silent loops: play/goto/hours/transfer-failure edges only (no key press, no wait).
        silent: dict[str, list[str]] = {}
        quiet: dict[str, list[str]] = {}  # silent edges plus menu defaults (timeouts only)
        for name, node in nodes.items():
            if isinstance(node, model.MenuNode):
                silent[name] = []
                quiet[name] = [node.default]
            else:
                silent[name] = list(model.successors(node))
                quiet[name] = list(silent[name])
        for cycle in _cycles(silent):
            path = " -> ".join([*cycle, cycle[0]])
            self.error(
                self.node_info[cycle[0]].pos,
                f"endless loop: {path} goes round forever without the caller pressing a key "
                "or waiting; send one of these steps somewhere else",
            )
        for cycle in _cycles(quiet):
            if any(isinstance(nodes[n], model.MenuNode) for n in cycle):
                path = " -> ".join([*cycle, cycle[0]])
                self.warn(
                    self.node_info[cycle[0]].pos,
                    f"a caller who presses nothing goes round {path} forever; consider a "
                    "menu `default:` that leads to a queue",
                )
        reachable = self.reachable(nodes, queues, numbers, default_entry)
        for name in nodes:
            if name not in reachable:
                self.warn(
                    self.node_info[name].pos,
                    f"step {name!r} is never reached (no number, menu or other step leads to it)",
                )

    @staticmethod
    def edges(node: model.Node, queues: Mapping[str, model.Queue]) -> list[str]:
        out = list(model.successors(node))
        if isinstance(node, model.QueueNode):
            overflow = queues[node.queue].overflow
            if overflow:
                out.append(overflow)
        return out

    def reachable(
        self,
        nodes: Mapping[str, model.Node],
        queues: Mapping[str, model.Queue],
        numbers: Mapping[str, model.Number],
        default_entry: str,
    ) -> set[str]:
        todo = [default_entry, *(n.entry for n in numbers.values())]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self.edges(nodes[name], queues))
        return seen

    def check_prompts(
        self,
        doc: CommentedMap,
        nodes: Mapping[str, model.Node],
        queues: Mapping[str, model.Queue],
        numbers: Mapping[str, model.Number],
        default_entry: str,
    ) -> None:
        library = self.prompt_library(doc)
        if library is None:
            return
        # Which languages a caller can be in at each node: entries start in the default
        # language; a node with `language:` sets it for itself and what follows.
        langs: dict[str, set[str]] = {name: set() for name in nodes}
        todo: list[tuple[str, str]] = [
            (entry, self.languages[0])
            for entry in {default_entry, *(n.entry for n in numbers.values())}
        ]
        while todo:
            name, lang = todo.pop()
            node = nodes[name]
            lang = node.language or lang
            if lang in langs[name]:
                continue
            langs[name].add(lang)
            todo.extend((nxt, lang) for nxt in self.edges(node, queues))
        for name, info in self.node_info.items():
            node_langs = langs.get(name) or {nodes[name].language or self.languages[0]}
            for prompt, pos in info.prompts:
                missing = sorted(
                    lang for lang in node_langs if not library.has(lang, prompt, fallback=False)
                )
                if not missing:
                    continue
                if all(not library.has(lang, prompt, fallback=False) for lang in self.languages):
                    self.error(
                        pos,
                        f"prompt {prompt!r} does not exist: there is no {prompt}.wav in the "
                        f"recordings{_suggest(prompt, self._known_prompts(library))}",
                    )
                else:
                    self.error(
                        pos,
                        f"prompt {prompt!r} has no recording in {', '.join(missing)} "
                        f"(recordings/{missing[0]}/{prompt}.wav is missing), but callers reach "
                        f"step {name!r} in that language",
                    )

    @staticmethod
    def _known_prompts(library: PromptCheck) -> list[str]:
        from pbx.media.prompts import REQUIRED_PROMPTS

        return list(REQUIRED_PROMPTS)

    def prompt_library(self, doc: CommentedMap) -> PromptCheck | None:
        if self.prompt_check is not None:
            return self.prompt_check
        directory = self.recordings
        if directory is None and isinstance(doc.get("recordings"), str):
            directory = self.base / doc["recordings"]
        if directory is None:
            from pbx.media.prompts import DEFAULT_RECORDINGS

            directory = DEFAULT_RECORDINGS
        try:
            return _library(directory.resolve())
        except (FileNotFoundError, ValueError) as exc:
            pos = self.value_pos(doc, "recordings") if "recordings" in doc else (1, 1)
            self.error(pos, f"cannot check prompts: {exc}")
            return None


def _overlap(today: list[TimeRange], yesterday: list[TimeRange]) -> str | None:
    """ "A overlaps B" for the first two ranges that overlap on a day (counting the part of
    yesterday's ranges after midnight), else None."""
    spans = [
        (r.start, r.end + MINUTES_PER_DAY if r.crosses_midnight else r.end, str(r)) for r in today
    ]
    spans += [(0, r.end, f"{r} (from the day before)") for r in yesterday if r.crosses_midnight]
    spans.sort()
    for (_s1, e1, t1), (s2, _e2, t2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            return f"{t1} overlaps {t2}"
    return None


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan), in file order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        # Iterative DFS: a long chain of steps must not hit Python's recursion limit.
        work: list[tuple[str, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, i = work[-1]
            succ = [s for s in graph.get(node, []) if s in graph]
            if i < len(succ):
                work[-1] = (node, i + 1)
                nxt = succ[i]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, []):
                    found.append(_cycle_in(set(component), graph))

    for name in graph:
        if name not in index:
            visit(name)
    order = list(graph)
    found.sort(key=lambda c: order.index(c[0]))
    return found


def _cycle_in(component: set[str], graph: Mapping[str, list[str]]) -> list[str]:
    """A simple cycle through the component's first node (in file order)."""
    start = next(n for n in graph if n in component)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = next(s for s in graph[node] if s in component)
        if nxt == start:
            return path
        if nxt in seen:  # cut to the loop proper
            return path[path.index(nxt) :]
        path.append(nxt)
        seen.add(nxt)
        node = nxt
