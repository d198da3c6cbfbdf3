"""The call flow read from the plan's `flow:` section: one `ivr.model` node per step.

Every step's settings are read with their positions; the names a step uses (next steps,
queues, schedules, destinations) are recorded in `References` for checking once everything is
read, and the prompts it plays, with their positions, in `NodeInfo` for `ivr.check_prompts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ruamel.yaml.comments import CommentedMap

from ivr import model
from ivr.model import NodeKind
from ivr.references import References
from ivr.yaml_reader import Pos, Reader, suggest

__all__ = ["MENU_KEYS", "FlowReader", "NodeInfo"]

MENU_KEYS = "0123456789*#"
MAX_MENU_TIMEOUT = 60.0
MAX_RETRIES = 10
MAX_VOICEMAIL_SECONDS = 600
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


@dataclass
class NodeInfo:
    """Where a step is defined, and every prompt it plays with the prompt's position."""

    pos: Pos
    prompts: list[tuple[str, Pos]]


class FlowReader:
    def __init__(self, reader: Reader, refs: References) -> None:
        self.r = reader
        self.refs = refs
        self.node_info: dict[str, NodeInfo] = {}  # every step read, even one with errors

    def nodes(
        self,
        doc: CommentedMap,
        queues: Mapping[str, model.Queue],
        schedules: Mapping[str, model.Schedule],
    ) -> dict[str, model.Node]:
        out: dict[str, model.Node] = {}
        section = self.r.mapping(doc, "flow", "`flow`")
        if section is None:
            return out
        kinds = [k.value for k in NodeKind]
        for name, body in section.items():
            name = str(name)
            where = f"step {name!r}"
            pos = self.r.key_pos(section, name)
            if not isinstance(body, CommentedMap):
                self.r.error(
                    self.r.value_pos(section, name),
                    f"{where} must be a section starting with `type:`",
                )
                continue
            kind_text = self.r.text(body, "type", where)
            if kind_text is None:
                if "type" not in body:
                    self.r.error(pos, f"{where} needs a `type:` ({', '.join(kinds)})")
                elif body["type"] is None:
                    self.r.empty(body, "type", where)
                continue
            if kind_text not in kinds:
                self.r.error(
                    self.r.value_pos(body, "type"),
                    f"unknown step type {kind_text!r}{suggest(kind_text, kinds)}; "
                    f"use one of {', '.join(kinds)}",
                )
                continue
            kind = NodeKind(kind_text)
            self.r.section(
                body, where, COMMON_NODE_KEYS + NODE_KEYS[kind], NODE_REQUIRED[kind], pos
            )
            before = len(self.r.problems)
            info = NodeInfo(pos, [])
            self.node_info[name] = info
            node = self.node(name, kind, body, where, info, queues, schedules)
            if node is not None and len(self.r.problems) == before:
                out[name] = node
        return out

    def node(
        self,
        name: str,
        kind: NodeKind,
        body: CommentedMap,
        where: str,
        info: NodeInfo,
        queues: Mapping[str, model.Queue],
        schedules: Mapping[str, model.Schedule],
    ) -> model.Node | None:
        lang = self.refs.language(body, "language", where)

        def prompts(key: str = "prompts") -> tuple[str, ...]:
            found = self.r.names(body, key, where)
            info.prompts.extend(found)
            return tuple(n for n, _ in found)

        def one_prompt(key: str) -> str | None:
            found = self.r.names(body, key, where)
            if len(found) > 1:
                self.r.error(self.r.value_pos(body, key), f"`{key}` in {where} takes one prompt")
            info.prompts.extend(found[:1])
            return found[0][0] if found else None

        def node_ref(key: str) -> str:
            return self.refs.use(body, key, "node", where) or ""

        if kind is NodeKind.PLAY:
            played = prompts()
            if not played and body.get("prompts") is not None:  # (`prompts:` alone: empty)
                self.r.error(self.r.value_pos(body, "prompts"), f"{where} plays no prompts")
            return model.PlayNode(name=name, language=lang, prompts=played, next=node_ref("next"))
        if kind is NodeKind.MENU:
            played = prompts()
            keys = self.menu_keys(body, where)
            timeout = self.r.number(
                body, "timeout", where, low=1, high=MAX_MENU_TIMEOUT, whole=False, unit=" seconds"
            )
            retries = self.r.number(body, "retries", where, low=0, high=MAX_RETRIES, whole=True)
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
                self.r.error(
                    info.pos,
                    f"{where} needs either `schedule:` or `queue:` (one of them) "
                    "to know whose opening hours to check",
                )
                return None
            queue = self.refs.use(body, "queue", "queue", where)
            schedule = self.refs.use(body, "schedule", "schedule", where)
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
                queue=self.refs.use(body, "queue", "queue", where) or "",
            )
        if kind is NodeKind.TRANSFER:
            on_failure = self.refs.use(body, "on_failure", "node", where)
            return model.TransferNode(
                name=name,
                language=lang,
                prompts=prompts(),
                destination=self.refs.use(body, "destination", "destination", where) or "",
                on_failure=on_failure,
            )
        if kind is NodeKind.VOICEMAIL:
            seconds = self.r.number(
                body,
                "max_seconds",
                where,
                low=5,
                high=MAX_VOICEMAIL_SECONDS,
                whole=True,
                unit=" seconds",
            )
            finish = self.r.text(body, "finish_key", where) or "#"
            if finish not in MENU_KEYS or len(finish) != 1:
                self.r.error(
                    self.r.value_pos(body, "finish_key"),
                    f"`finish_key` in {where} must be one key: 0-9, * or #",
                )
            return model.VoicemailNode(
                name=name,
                language=lang,
                prompts=prompts(),
                mailbox=self.r.text(body, "mailbox", where) or "",
                max_seconds=120 if seconds is None else int(seconds),
                finish_key=finish,
                saved_prompts=prompts("after_message"),
            )
        if kind is NodeKind.HANGUP:
            return model.HangupNode(name=name, language=lang, prompts=prompts())
        return model.GotoNode(name=name, language=lang, next=node_ref("next"))

    def menu_keys(self, body: CommentedMap, where: str) -> dict[str, str]:
        section = self.r.mapping(body, "keys", f"`keys` of {where}")
        out: dict[str, str] = {}
        if section is None:
            return out
        for key in section:
            text = str(key)
            if isinstance(key, bool) or text not in MENU_KEYS or len(text) != 1:
                self.r.error(
                    self.r.key_pos(section, key),
                    f'{text!r} in {where} is not a phone key; use one of 0-9, "*" or "#" '
                    "(in quotes)",
                )
                continue
            target = self.refs.use(section, key, "node", f"key {text} of {where}")
            if target is not None:
                out[text] = target
        if not out and not section:
            self.r.error(self.r.value_pos(body, "keys"), f"{where} has no keys")
        return out
