"""Building the model: an `ivr.model.Dialplan` from the YAML tree of a plan.

`PlanBuilder.build` reads every section with a `Reader` (each wrong value is a problem with its
position), records the names each section uses in `References` and checks them once all are
read. It returns the plan, or None when any error was found; the graph and prompt checks
(`ivr.check_graph`, `ivr.check_prompts`) then run on the plan it built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ivr import model
from ivr.build_flow import FlowReader
from ivr.build_schedules import read_schedules
from ivr.holiday_calendar import DEFAULT_COUNTRY, HolidayCalendar, UnknownCountry
from ivr.model import Dialplan, NumberKind
from ivr.references import References
from ivr.yaml_reader import Pos, Reader, suggest, type_name

__all__ = ["DEFAULT_TIMEZONE", "TOP_KEYS", "PlanBuilder"]

DEFAULT_TIMEZONE = "Europe/Amsterdam"
VOLUNTEER_KEYS = re.compile(r"^[*#][0-9*#]{1,3}$")
SIP_URI = re.compile(r"^sips?:[^@\s:;]+@[A-Za-z0-9.\-\[\]:]+(;[^\s]*)?$")
TOP_KEYS = (
    "timezone",
    "languages",
    "public_holidays",
    "recordings",  # read by nothing now: prompts are checked in what the caller hands in
    "schedules",
    "queues",
    "numbers",
    "unknown_number",
    "destinations",
    "flow",
)


class PlanBuilder:
    def __init__(self, reader: Reader) -> None:
        self.r = reader
        self.refs = References(reader)
        self.flow = FlowReader(reader, self.refs)
        self.keys_taken: dict[str, str] = {}  # volunteer_keys -> whose (queue or destination)

    def build(self, doc: Any) -> Dialplan | None:
        """The plan in `doc` without its warnings (the checks add them), or None on errors."""
        if doc is None:
            self.r.error((1, 1), "the dialplan is empty")
            return None
        if not isinstance(doc, CommentedMap):
            self.r.error(
                self.r.pos_of(doc), "the dialplan must be a section of `name: value` lines"
            )
            return None
        self.r.section(
            doc,
            "the dialplan",
            TOP_KEYS,
            ("schedules", "queues", "numbers", "unknown_number", "flow"),
        )
        zone = self.timezone(doc)
        self.read_languages(doc)
        schedules = read_schedules(self.r, doc, zone, self.holiday_calendar(doc))
        queues = self.queues(doc)
        numbers = self.numbers(doc)
        destinations = self.destinations(doc)
        nodes = self.flow.nodes(doc, queues, schedules)
        default_entry = self.refs.use(doc, "unknown_number", "node", "the dialplan")
        defined: dict[str, Mapping[str, Any]] = {
            "schedule": schedules,
            "queue": queues,
            "destination": destinations,
            "node": nodes,
        }
        self.refs.check(doc, defined)
        if self.r.has_errors():
            return None
        assert zone is not None and default_entry is not None
        return Dialplan(
            timezone=zone,
            languages=self.refs.languages,
            schedules=schedules,
            queues=queues,
            numbers=numbers,
            default_entry=default_entry,
            destinations=destinations,
            nodes=nodes,
            source=Path(self.r.file),
        )

    def timezone(self, doc: CommentedMap) -> ZoneInfo | None:
        name = self.r.text(doc, "timezone", "the dialplan")
        if name is None:
            if "timezone" in doc:
                return None
            name = DEFAULT_TIMEZONE
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.r.error(
                self.r.value_pos(doc, "timezone"),
                f"unknown time zone {name!r}; use a name like 'Europe/Amsterdam'",
            )
            return None

    def holiday_calendar(self, doc: CommentedMap) -> HolidayCalendar | None:
        """The public holidays schedules may name: `public_holidays:` (a country code)."""
        country = self.r.text(doc, "public_holidays", "the dialplan")
        if country is None:
            if "public_holidays" in doc:
                return None
            country = DEFAULT_COUNTRY
        try:
            return HolidayCalendar(country)
        except UnknownCountry:
            self.r.error(
                self.r.value_pos(doc, "public_holidays"),
                f"no public holidays known for {country!r}; use a country code like NL",
            )
            return None

    def read_languages(self, doc: CommentedMap) -> None:
        if "languages" not in doc:
            return
        found = self.r.names(doc, "languages", "the dialplan")
        langs: list[str] = []
        for lang, pos in found:
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                self.r.error(pos, f"{lang!r} is not a language code (use e.g. nl, ar, fa, tr)")
            elif lang in langs:
                self.r.error(pos, f"language {lang!r} is listed twice")
            else:
                langs.append(lang)
        if langs:
            self.refs.languages = tuple(langs)
        elif not found:
            self.r.error(self.r.value_pos(doc, "languages"), "`languages` must name at least one")

    # -- queues --

    def queues(self, doc: CommentedMap) -> dict[str, model.Queue]:
        out: dict[str, model.Queue] = {}
        allowed = (
            "language",
            "schedule",
            "priority",
            "skill",
            "max_wait",
            "unstaffed_wait",
            "overflow",
            "regional",
            "display",
            "ring_timeout",
            "wrap_up",
            "time_limit",
            "announce_every",
            "volunteer_lost",
            "volunteer_keys",
            "note",
        )
        for name, body, where in self.r.entries(
            doc, "queues", "queue", "a section of settings", allowed, ("language", "schedule")
        ):
            before = len(self.r.problems)
            lang = self.refs.language(body, "language", where)
            schedule = self.refs.use(body, "schedule", "schedule", where)
            priority = self.r.number(body, "priority", where, low=0, high=100, whole=True)
            skill = self.r.text(body, "skill", where)
            max_wait = self.r.number(
                body, "max_wait", where, low=1, high=24 * 3600, whole=True, unit=" seconds"
            )
            unstaffed = self.r.number(
                body, "unstaffed_wait", where, low=0, high=24 * 3600, whole=True, unit=" seconds"
            )
            overflow = self.refs.use(body, "overflow", "node", where)
            for missing in ("max_wait", "overflow"):
                if missing not in body:  # every queue has a way out: nobody waits forever
                    self.r.error(
                        self.r.key_pos(doc["queues"], name),
                        f"{where} needs `{missing}:`: every queue needs a way out "
                        "(after max_wait seconds the caller goes to the overflow step, e.g. "
                        "another queue, a transfer or voicemail)",
                    )
            regional = self.regional(body, where)
            display = self.r.text(body, "display", where)
            ring_timeout = self.r.number(
                body, "ring_timeout", where, low=5, high=120, whole=True, unit=" seconds"
            )
            wrap_up = self.r.number(
                body, "wrap_up", where, low=0, high=3600, whole=True, unit=" seconds"
            )
            time_limit = self.r.number(
                body, "time_limit", where, low=1, high=24 * 3600, whole=True, unit=" seconds"
            )
            announce = self.r.number(
                body, "announce_every", where, low=15, high=3600, whole=True, unit=" seconds"
            )
            lost = self.r.choice(body, "volunteer_lost", where, model.VolunteerLost)
            keys = self.volunteer_keys(body, where, f"queue {name!r}")
            if len(self.r.problems) != before or lang is None or schedule is None:
                continue
            out[name] = model.Queue(
                name=name,
                language=lang,
                schedule=schedule,
                priority=int(priority or 0),
                skill=skill,
                max_wait=int(max_wait) if max_wait is not None else None,
                unstaffed_wait=int(unstaffed) if unstaffed is not None else None,
                overflow=overflow,
                regional=regional,
                display=display or "",
                ring_timeout=int(ring_timeout or 20),
                wrap_up=int(wrap_up if wrap_up is not None else 30),
                time_limit=int(time_limit) if time_limit is not None else None,
                announce_every=int(announce or 60),
                volunteer_lost=lost or model.VolunteerLost.REQUEUE,
                volunteer_keys=keys,
            )
        return out

    def regional(self, body: CommentedMap, where: str) -> model.RegionalPreference:
        section = self.r.mapping(body, "regional", f"`regional` of {where}")
        if section is None:
            return model.RegionalPreference()
        where = f"`regional` of {where}"
        self.r.section(section, where, ("prefer_local", "local_wait"))
        prefer = self.r.flag(section, "prefer_local", where)
        wait = self.r.number(
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
            self.r.error(
                self.r.value_pos(doc, "numbers"),
                "`numbers` must be a list, one `- number: ...` entry per phone number",
            )
            return out
        kinds = [k.value for k in NumberKind]
        for i, body in enumerate(value):
            pos = self.r.item_pos(value, i)
            if not isinstance(body, CommentedMap):
                self.r.error(pos, "each entry of `numbers` must be a section starting `- number:`")
                continue
            raw = body.get("number")
            where = f"number {raw}" if raw is not None else "this number"
            self.r.section(
                body,
                where,
                ("number", "type", "start", "region", "partner", "note"),
                ("number", "type", "start"),
                pos,
            )
            before = len(self.r.problems)
            number: str | None = None
            if isinstance(raw, int) and not isinstance(raw, bool):
                self.r.error(
                    self.r.value_pos(body, "number"),
                    f'write the phone number in quotes, like "0{raw}"; without them YAML '
                    "reads it as a number and drops a leading 0",
                )
            elif isinstance(raw, str):
                number = model.normalize_number(raw)
                if not re.fullmatch(r"[\d\s\-+()]+", raw) or len(number) < 3:
                    self.r.error(
                        self.r.value_pos(body, "number"),
                        f"{raw!r} is not a phone number (digits, spaces and - only)",
                    )
                    number = None
            elif raw is not None:
                self.r.error(
                    self.r.value_pos(body, "number"),
                    f"`number` must be a phone number in quotes, not {type_name(raw)}",
                )
            kind_text = self.r.text(body, "type", where)
            kind: NumberKind | None = None
            if kind_text is not None:
                if kind_text in kinds:
                    kind = NumberKind(kind_text)
                else:
                    self.r.error(
                        self.r.value_pos(body, "type"),
                        f"unknown number type {kind_text!r}{suggest(kind_text, kinds)}; "
                        f"use one of {', '.join(kinds)}",
                    )
            entry = self.refs.use(body, "start", "node", where)
            region = self.r.text(body, "region", where)
            partner = self.r.text(body, "partner", where)
            if kind is NumberKind.LOCAL and region is None:
                self.r.error(pos, f"{where} is a local number and needs a `region:`")
            if kind is not NumberKind.LOCAL and kind is not None and "region" in body:
                self.r.error(
                    self.r.key_pos(body, "region"), f"{where}: only local numbers have a region"
                )
            if kind is NumberKind.PARTNER and partner is None:
                self.r.error(
                    pos,
                    f"{where} is a partner number and needs a `partner:` name "
                    "(calls are counted per partner)",
                )
            if kind is not NumberKind.PARTNER and kind is not None and "partner" in body:
                self.r.error(
                    self.r.key_pos(body, "partner"), f"{where}: only partner numbers have a partner"
                )
            if number is not None:
                if number in seen:
                    self.r.error(
                        self.r.value_pos(body, "number"),
                        f"number {raw} is listed twice (also on line {seen[number][0]})",
                    )
                    continue
                seen[number] = self.r.value_pos(body, "number")
            if len(self.r.problems) != before or number is None or kind is None or entry is None:
                continue
            out[number] = model.Number(
                number=number, kind=kind, entry=entry, region=region, partner=partner
            )
        return out

    # -- destinations --

    def destinations(self, doc: CommentedMap) -> dict[str, model.Destination]:
        out: dict[str, model.Destination] = {}
        for name, body, where in self.r.entries(
            doc, "destinations", "destination", "a section with `uri:` (and `description:`)",
            ("uri", "description", "volunteer_keys"), ("uri",),
        ):  # fmt: skip
            uri = self.r.text(body, "uri", where)
            description = self.r.text(body, "description", where) or ""
            keys = self.volunteer_keys(body, where, f"destination {name!r}")
            if uri is None:
                continue
            if not SIP_URI.fullmatch(uri.strip()):
                self.r.error(
                    self.r.value_pos(body, "uri"),
                    f"{uri!r} in {where} is not a SIP address; write it like "
                    '"sip:0800113@sip.provider.nl"',
                )
                continue
            out[name] = model.Destination(
                name=name, uri=uri.strip(), description=description, volunteer_keys=keys
            )
        return out

    def volunteer_keys(self, body: CommentedMap, where: str, owner: str) -> str:
        """A destination's or a queue's `volunteer_keys`: phone keys, starting with * or # (so
        that a volunteer cannot hit them by accident), and no other destination's or queue's."""
        keys = self.r.text(body, "volunteer_keys", where)
        if keys is None:
            return ""
        keys = keys.strip()
        if not VOLUNTEER_KEYS.fullmatch(keys):
            self.r.error(
                self.r.value_pos(body, "volunteer_keys"),
                f"`volunteer_keys` in {where} must be * or # and then one to three keys "
                f'(0-9, *, #), like "*7"; not {keys!r}',
            )
            return ""
        overlapping = [k for k in self.keys_taken if model.keys_overlap(k, keys)]
        if (other := self.keys_taken.get(keys)) is None and overlapping:
            self.r.error(
                self.r.value_pos(body, "volunteer_keys"),
                f"`volunteer_keys` {keys!r} in {where} and {overlapping[0]!r} of "
                f"{self.keys_taken[overlapping[0]]} overlap (pressing one presses the other "
                "first); choose keys that neither starts nor ends the other",
            )
            return ""
        if other is not None:
            self.r.error(
                self.r.value_pos(body, "volunteer_keys"),
                f"`volunteer_keys` {keys!r} in {where} are already {other}'s: each "
                "destination and queue needs its own keys",
            )
            return ""
        self.keys_taken[keys] = owner
        return keys
