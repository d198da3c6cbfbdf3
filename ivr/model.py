"""The dialplan as loaded from dialplan.yaml: immutable, validated, cross-referenced.

`ivr.loader.load_dialplan` builds a `Dialplan`; nothing else should construct one from
untrusted input. Once loaded, every name in it resolves: node names, queue names, schedule
names, destination names and prompts (for every language a caller can be in at that node).

Plan-wide
---------
Dialplan
    timezone: ZoneInfo            wall-clock zone of every schedule (default Europe/Amsterdam)
    languages: tuple[str, ...]    languages in use; the first is the language a call starts in
    schedules: name -> Schedule   named opening hours
    queues: name -> Queue
    numbers: dialled number (digits only) -> Number
    default_entry: str            node for a dialled number not in `numbers`
    destinations: name -> Destination   the ONLY external targets a transfer may dial
    nodes: name -> Node           the call flow
    source: Path | None           file it came from (for messages)
    warnings: tuple[str, ...]     non-fatal findings, as `file:line:col: warning: ...` lines

Opening hours
-------------
TimeRange(start, end)    minutes after local midnight; end > start, or end <= start for a
                         range crossing midnight ("22:00-02:00"); end may be 1440 ("24:00").
                         A range belongs to the day it starts on.
DayHours(ranges)         ranges of one day; empty = closed all day.
Schedule(name, timezone, week, exceptions, holidays, calendar)
    week: 7 DayHours, Monday first
    exceptions: date -> DayHours that replaces that date's weekly hours (other hours on a
    date). `ivr.schedule.is_open(schedule, at)` answers "open at this instant?".
    holidays: public holiday name (case-folded; "public holidays" for any) -> DayHours, on
    the days `calendar` says the holiday falls; a dated exception wins over a holiday's.

Queues, numbers, destinations
-----------------------------
Queue(name, language, schedule, priority, skill, max_wait, unstaffed_wait, overflow, regional)
    priority: higher is offered to volunteers first; skill: volunteers need it (e.g. "113")
    or None; max_wait: seconds before the caller is sent to node `overflow` (a loaded plan
    always has both); unstaffed_wait: the same, sooner, while nobody who serves the queue
    is on shift (None: max_wait only).
    regional: RegionalPreference(prefer_local, local_wait) - first offer the call to
    volunteers of the caller's own region for `local_wait` seconds, then nationally.
Number(number, kind, entry, region, partner)
    kind: NumberKind (national, local, partner, night_113, info_line); `region` is set for
    local numbers, `partner` (a name calls are counted under) for partner numbers.
Destination(name, uri, description)   uri is a sip:/sips: URI.

Nodes (the call flow)
---------------------
Every node has `name` (its key in the plan) and `language`: when not None, entering the node
switches the caller's language to it before anything is played; prompts play in the caller's
current language. Prompt names are files recordings/<lang>/<name>.wav.

PlayNode(prompts, next)                  play prompts, then go to `next`.
MenuNode(prompts, keys, timeout, retries, invalid_prompt, no_input_prompt, default)
    play prompts and wait `timeout` seconds for one key. A key in `keys` (key -> node) goes
    there. An unknown key plays `invalid_prompt`, silence plays `no_input_prompt` (either may
    be None); both count as a failed attempt. There are 1 + `retries` attempts; the error
    prompt is played after every failed attempt including the last; then go to `default`.
HoursNode(schedule, queue, open, closed) go to `open` if schedule `schedule` is open now,
    else to `closed`. `queue` is set when the admin named a queue (its schedule was used).
QueueNode(prompts, queue)                play prompts, then the call waits in `queue` (the
    queue's `overflow` node takes over after its max_wait).
TransferNode(prompts, destination, on_failure)  play prompts, then transfer to the configured
    destination named `destination`; on failure go to `on_failure` (None = hang up).
VoicemailNode(prompts, mailbox, max_seconds, finish_key, saved_prompts)  play prompts, beep,
    record at most `max_seconds` (the caller ends early with `finish_key`), play
    `saved_prompts`, hang up. `mailbox` names where messages go (e.g. "info_line").
HangupNode(prompts)                      play prompts, then hang up.
GotoNode(next)                           go to `next` (with `language` set: a language switch).

`edges(node, queues)` lists every way a call can leave a node (an `Edge`: target node, why,
and the key for a menu key); the loader's checks, the diagram and `successors` all use it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import ClassVar, Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "ANY_HOLIDAY",
    "MINUTES_PER_DAY",
    "DayHours",
    "Destination",
    "Edge",
    "EdgeKind",
    "Dialplan",
    "GotoNode",
    "HangupNode",
    "HolidayNames",
    "HoursNode",
    "MenuNode",
    "Node",
    "NodeKind",
    "Number",
    "NumberKind",
    "PlayNode",
    "Queue",
    "QueueNode",
    "RegionalPreference",
    "Schedule",
    "TimeRange",
    "TransferNode",
    "VoicemailNode",
    "edges",
    "prompts_of",
    "successors",
]

MINUTES_PER_DAY = 24 * 60


# --- opening hours -------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    start: int  # minutes after midnight, 0..1439
    end: int  # 1..1440; end <= start means the range runs on past midnight

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class DayHours:
    ranges: tuple[TimeRange, ...] = ()

    @property
    def closed(self) -> bool:
        return not self.ranges


class HolidayNames(Protocol):
    """Which public holidays fall on a day (`ivr.holiday_calendar.HolidayCalendar` fits)."""

    def names_on(self, day: date) -> tuple[str, ...]: ...  # as written, e.g. "King's Day"


ANY_HOLIDAY = "public holidays"  # an exception for every public holiday not named on its own


@dataclass(frozen=True)
class Schedule:
    name: str
    timezone: ZoneInfo
    week: tuple[DayHours, ...]  # 7 entries, Monday = 0 (date.weekday())
    exceptions: Mapping[date, DayHours] = field(default_factory=dict)
    # Exceptions by holiday name (case-folded; ANY_HOLIDAY for all), looked up in `calendar`.
    holidays: Mapping[str, DayHours] = field(default_factory=dict)
    calendar: HolidayNames | None = field(default=None, compare=False)

    def hours_on(self, day: date) -> DayHours:
        """The hours that apply on `day`: its dated exception if any, else the exception of a
        holiday on that day, else the weekly hours."""
        hours = self.exceptions.get(day)
        if hours is not None:
            return hours
        holiday = self.holiday_on(day)
        if holiday is not None:
            named = self.holidays.get(holiday.casefold())
            return named if named is not None else self.holidays[ANY_HOLIDAY]
        return self.week[day.weekday()]

    def holiday_on(self, day: date) -> str | None:
        """The public holiday whose exception gives the hours of `day` (None: none does, or a
        dated exception overrides it)."""
        if not self.holidays or self.calendar is None or day in self.exceptions:
            return None
        names = self.calendar.names_on(day)
        for name in names:
            if name.casefold() in self.holidays:
                return name
        return names[0] if names and ANY_HOLIDAY in self.holidays else None


# --- queues, numbers, destinations ---------------------------------------------------


@dataclass(frozen=True)
class RegionalPreference:
    prefer_local: bool = True
    local_wait: int = 30  # seconds offered to the caller's own region before the whole country


class VolunteerLost(enum.StrEnum):
    """What a caller gets when the volunteer's handset vanishes mid-call."""

    REQUEUE = "requeue"  # told so, then first in line for the next volunteer
    GOODBYE = "goodbye"  # told so, then the call ends


@dataclass(frozen=True, kw_only=True)
class Queue:
    name: str
    language: str
    schedule: str
    priority: int = 0
    skill: str | None = None
    max_wait: int | None = None  # seconds; None = no limit
    unstaffed_wait: int | None = None  # seconds, while nobody who serves it is on shift
    overflow: str | None = None  # node name, taken after max_wait
    regional: RegionalPreference = RegionalPreference()
    display: str = ""  # what the volunteer's handset shows; "" = "Hulplijn <LANGUAGE>"
    ring_timeout: int = 20  # seconds a volunteer's handset rings before the next one is tried
    wrap_up: int = 30  # seconds after a call before that volunteer is offered the next one
    time_limit: int | None = None  # seconds of conversation after which the volunteer hears a tone
    announce_every: int = 60  # seconds between position / estimated-wait announcements
    volunteer_lost: VolunteerLost = VolunteerLost.REQUEUE

    @property
    def shown_as(self) -> str:
        return self.display or f"Hulplijn {self.language.upper()}"


class NumberKind(enum.StrEnum):
    NATIONAL = "national"
    LOCAL = "local"
    PARTNER = "partner"
    NIGHT_113 = "night_113"
    INFO_LINE = "info_line"


@dataclass(frozen=True, kw_only=True)
class Number:
    number: str  # digits only (spaces and dashes from the file removed)
    kind: NumberKind
    entry: str  # node name
    region: str | None = None  # local numbers
    partner: str | None = None  # partner numbers: calls are counted per partner


@dataclass(frozen=True, kw_only=True)
class Destination:
    name: str
    uri: str  # sip:/sips: URI
    description: str = ""
    # the keys a volunteer presses in a call to hand the caller over here; a destination with
    # keys is one volunteers may transfer to (also with their handset's transfer key, REFER)
    volunteer_keys: str = ""


# --- nodes ---------------------------------------------------------------------------


class NodeKind(enum.StrEnum):
    PLAY = "play"
    MENU = "menu"
    HOURS = "hours"
    QUEUE = "queue"
    TRANSFER = "transfer"
    VOICEMAIL = "voicemail"
    HANGUP = "hangup"
    GOTO = "goto"


@dataclass(frozen=True, kw_only=True)
class PlayNode:
    kind: ClassVar[NodeKind] = NodeKind.PLAY
    name: str
    language: str | None = None
    prompts: tuple[str, ...]
    next: str


@dataclass(frozen=True, kw_only=True)
class MenuNode:
    kind: ClassVar[NodeKind] = NodeKind.MENU
    name: str
    language: str | None = None
    prompts: tuple[str, ...]
    keys: Mapping[str, str]  # one key ("0".."9", "*", "#") -> node name
    timeout: float = 5.0  # seconds to wait for a key after the prompts
    retries: int = 2
    invalid_prompt: str | None = None
    no_input_prompt: str | None = None
    default: str  # node after the last failed attempt


@dataclass(frozen=True, kw_only=True)
class HoursNode:
    kind: ClassVar[NodeKind] = NodeKind.HOURS
    name: str
    language: str | None = None
    schedule: str  # always set (a queue's schedule when `queue` is given)
    queue: str | None = None
    open: str
    closed: str


@dataclass(frozen=True, kw_only=True)
class QueueNode:
    kind: ClassVar[NodeKind] = NodeKind.QUEUE
    name: str
    language: str | None = None
    prompts: tuple[str, ...] = ()
    queue: str


@dataclass(frozen=True, kw_only=True)
class TransferNode:
    kind: ClassVar[NodeKind] = NodeKind.TRANSFER
    name: str
    language: str | None = None
    prompts: tuple[str, ...] = ()
    destination: str  # a key of Dialplan.destinations, never a raw number
    on_failure: str | None = None


@dataclass(frozen=True, kw_only=True)
class VoicemailNode:
    kind: ClassVar[NodeKind] = NodeKind.VOICEMAIL
    name: str
    language: str | None = None
    prompts: tuple[str, ...] = ()
    mailbox: str
    max_seconds: int = 120
    finish_key: str = "#"
    saved_prompts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HangupNode:
    kind: ClassVar[NodeKind] = NodeKind.HANGUP
    name: str
    language: str | None = None
    prompts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GotoNode:
    kind: ClassVar[NodeKind] = NodeKind.GOTO
    name: str
    language: str | None = None
    next: str


Node = (
    PlayNode
    | MenuNode
    | HoursNode
    | QueueNode
    | TransferNode
    | VoicemailNode
    | HangupNode
    | GotoNode
)


class EdgeKind(enum.StrEnum):
    """Why a call follows an edge out of a node."""

    NEXT = "next"  # play/goto: after the prompts
    KEY = "key"  # menu: the caller pressed `Edge.key`
    DEFAULT = "default"  # menu: after the last failed attempt
    OPEN = "open"  # hours: the schedule is open now
    CLOSED = "closed"
    FAILED = "failed"  # transfer: the destination did not answer
    OVERFLOW = "overflow"  # queue: the queue's max_wait passed


@dataclass(frozen=True)
class Edge:
    target: str  # node name
    kind: EdgeKind
    key: str = ""  # the phone key of a KEY edge


def edges(node: Node, queues: Mapping[str, Queue] | None = None) -> tuple[Edge, ...]:
    """Every way a call can leave `node`, in the plan's order. A queue's overflow (a setting of
    the queue, not of the node) is included when `queues` is given."""
    if isinstance(node, PlayNode | GotoNode):
        return (Edge(node.next, EdgeKind.NEXT),)
    if isinstance(node, MenuNode):
        keys = (Edge(target, EdgeKind.KEY, key) for key, target in node.keys.items())
        return (*keys, Edge(node.default, EdgeKind.DEFAULT))
    if isinstance(node, HoursNode):
        return (Edge(node.open, EdgeKind.OPEN), Edge(node.closed, EdgeKind.CLOSED))
    if isinstance(node, TransferNode):
        return (Edge(node.on_failure, EdgeKind.FAILED),) if node.on_failure else ()
    if isinstance(node, QueueNode) and queues is not None:
        overflow = queues[node.queue].overflow
        if overflow:
            return (Edge(overflow, EdgeKind.OVERFLOW),)
    return ()


def successors(node: Node) -> tuple[str, ...]:
    """Names of the nodes a call can go to from `node` (not counting queue overflow)."""
    return tuple(edge.target for edge in edges(node))


def prompts_of(node: Node) -> tuple[str, ...]:
    """Every prompt `node` can play."""
    if isinstance(node, MenuNode):
        extra = tuple(p for p in (node.invalid_prompt, node.no_input_prompt) if p)
        return (*node.prompts, *extra)
    if isinstance(node, VoicemailNode):
        return (*node.prompts, *node.saved_prompts)
    if isinstance(node, HoursNode | GotoNode):
        return ()
    return node.prompts


# --- the plan ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Dialplan:
    timezone: ZoneInfo
    languages: tuple[str, ...]
    schedules: Mapping[str, Schedule]
    queues: Mapping[str, Queue]
    numbers: Mapping[str, Number]
    default_entry: str
    destinations: Mapping[str, Destination]
    nodes: Mapping[str, Node]
    source: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def entry_for(self, dialled: str) -> tuple[str, Number | None]:
        """(entry node, Number) for a dialled number; unknown numbers get (default_entry, None).

        Spaces, dashes and a leading "+31"/"0031" are ignored when matching.
        """
        number = self.numbers.get(normalize_number(dialled))
        if number is None:
            return self.default_entry, None
        return number.entry, number


def normalize_number(text: str) -> str:
    """Digits only; +31 / 0031 (the Netherlands) become a leading 0."""
    digits = "".join(ch for ch in text if ch.isdigit() or ch == "+")
    if digits.startswith("+31"):
        digits = "0" + digits[3:]
    elif digits.startswith("0031"):
        digits = "0" + digits[4:]
    return digits.replace("+", "")
