"""Names a plan uses and where they must be defined: steps (nodes), queues, schedules,
destinations, and the plan's languages.

Every use is recorded with its position while the plan is read; once all sections are read,
`check` reports each name that no section defines, with a suggestion for a near miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from ivr.prompts import LANGUAGES
from ivr.yaml_reader import Pos, Reader, suggest

__all__ = ["Ref", "References"]

SECTION_OF = {
    "schedule": "schedules",
    "queue": "queues",
    "destination": "destinations",
    "node": "flow",
}


@dataclass(frozen=True)
class Ref:
    """A name used somewhere that must exist in some section."""

    name: str
    pos: Pos
    what: str  # "node", "queue", "schedule", "destination"
    context: str


class References:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.refs: list[Ref] = []
        self.languages: tuple[str, ...] = LANGUAGES  # until the plan's `languages:` is read

    def use(self, m: CommentedMap, key: Any, what: str, where: str) -> str | None:
        """The name under `key`, recorded as a use of a `what` (checked later)."""
        name = self.reader.text(m, key, where)
        if name is not None:
            self.refs.append(Ref(name, self.reader.value_pos(m, key), what, f"`{key}` in {where}"))
        return name

    def language(self, m: CommentedMap, key: str, where: str) -> str | None:
        """The language under `key`, which must be one of the plan's languages."""
        lang = self.reader.text(m, key, where)
        if lang is not None and lang not in self.languages:
            self.reader.error(
                self.reader.value_pos(m, key),
                f"language {lang!r} in {where} is not one of the plan's languages "
                f"({', '.join(self.languages)}){suggest(lang, self.languages)}",
            )
            return None
        return lang

    def check(self, doc: CommentedMap, parsed: Mapping[str, Mapping[str, Any]]) -> None:
        """Report every use of a name that is not defined. `parsed` holds what was built of
        each section ("schedule" -> schedules, ...); a name counts as defined even if its own
        definition had errors (no knock-on messages)."""
        defined = {
            what: self._defined(doc, section, parsed[what]) for what, section in SECTION_OF.items()
        }
        for ref in self.refs:
            names = defined[ref.what]
            if ref.name in names:
                continue
            hint = suggest(ref.name, names)
            if ref.what == "destination":
                hint += (
                    "; a transfer may only go to a destination listed under "
                    "`destinations:`, never to a number or address written here"
                )
            self.reader.error(
                ref.pos,
                f"{ref.context} names {ref.what} {ref.name!r}, which is not defined under "
                f"`{SECTION_OF[ref.what]}:`{hint}",
            )

    @staticmethod
    def _defined(doc: CommentedMap, section: str, parsed: Mapping[str, Any]) -> set[str]:
        names = set(parsed)
        raw = doc.get(section)
        if isinstance(raw, CommentedMap):
            names |= {str(k) for k in raw}
        return names
