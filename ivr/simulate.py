"""Walk a dialplan on paper: who hears what, which keys are taken, where the call ends.

Pure: the time and the keys are given. Follows the runtime's semantics (ivr/runtime.py with
ivr/collect.Menu): a menu has 1 + retries attempts; each attempt plays the menu prompts and
waits for one key; a wrong key plays the invalid-key prompt, silence (a timeout, which
consumes no key) plays the no-input prompt, both after every failed attempt including the
last; then the menu's default. A step with `language:` switches the caller's language first.
Transfers are assumed to succeed and callers to leave a voicemail message.

Keys: one character per key press ("0"-"9", "*", "#"); "-" means the caller lets that prompt
time out. When the keys run out the caller presses nothing more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from ivr import model
from ivr.schedule import is_open, local_time

__all__ = ["MAX_STEPS", "NO_KEY", "Ending", "Heard", "Step", "simulate"]

NO_KEY = "-"
MAX_STEPS = 200  # a plan with a menu-default loop (a warning) would otherwise never end


class Ending(enum.StrEnum):
    QUEUE = "queue"
    TRANSFER = "transfer"
    VOICEMAIL = "voicemail"
    HANGUP = "hangup"
    LOOP = "loop"  # still in the IVR after MAX_STEPS steps


@dataclass(frozen=True)
class Heard:
    prompt: str
    language: str

    def __str__(self) -> str:
        return f"{self.prompt} [{self.language}]"


@dataclass(frozen=True)
class Step:
    node: str
    kind: model.NodeKind
    language: str  # the caller's language during this step
    heard: tuple[Heard, ...] = ()
    keys: str = ""  # keys consumed here ("-" for each timeout)
    note: str = ""  # what was decided, e.g. "open", "key 2", "no input twice, default"
    ending: Ending | None = None  # set on the last step
    target: str | None = None  # queue name, destination name or mailbox at the end

    def describe(self) -> str:
        parts = [f"{self.node} ({self.kind.value}, {self.language})"]
        if self.heard:
            parts.append("hears " + ", ".join(map(str, self.heard)))
        if self.keys:
            parts.append(f"keys {self.keys}")
        if self.note:
            parts.append(self.note)
        if self.ending is not None:
            parts.append(f"=> {self.ending.value}" + (f" {self.target}" if self.target else ""))
        return "; ".join(parts)


def simulate(plan: model.Dialplan, number: str, at: datetime, keys: str = "") -> list[Step]:
    """The path of a call to `number` at instant `at` (naive = the plan's wall time) with
    the caller pressing `keys`. The last step has `ending` set."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=plan.timezone)
    name, dialled = plan.entry_for(number)
    lang = plan.default_language
    pending = list(keys)
    steps: list[Step] = []
    if dialled is None:
        first_note = "unknown number: default entry"
    elif dialled.region:
        first_note = f"{dialled.kind.value} number, region {dialled.region}"
    elif dialled.partner:
        first_note = f"partner number of {dialled.partner}"
    else:
        first_note = f"{dialled.kind.value} number"

    def heard(prompts: tuple[str, ...]) -> tuple[Heard, ...]:
        return tuple(Heard(p, lang) for p in prompts)

    while len(steps) < MAX_STEPS:
        node = plan.nodes[name]
        lang = node.language or lang
        note = first_note if not steps else ""
        if isinstance(node, model.PlayNode):
            steps.append(Step(name, node.kind, lang, heard(node.prompts), note=note))
            name = node.next
        elif isinstance(node, model.GotoNode):
            steps.append(Step(name, node.kind, lang, note=note))
            name = node.next
        elif isinstance(node, model.HoursNode):
            opened = is_open(plan.schedules[node.schedule], at)
            whose = f"queue {node.queue}" if node.queue else f"schedule {node.schedule}"
            wall = local_time(plan.schedules[node.schedule], at).strftime("%a %H:%M %Z")
            decided = f"{whose} {'open' if opened else 'closed'} at {wall}"
            holiday = plan.schedules[node.schedule].holiday_on(
                local_time(plan.schedules[node.schedule], at).date()
            )
            if holiday is not None:
                decided += f" ({holiday})"
            steps.append(Step(name, node.kind, lang, note=_join(note, decided)))
            name = node.open if opened else node.closed
        elif isinstance(node, model.MenuNode):
            step, name = _menu(node, lang, pending, note)
            steps.append(step)
        elif isinstance(node, model.QueueNode):
            queue = plan.queues[node.queue]
            extra = [f"{queue.language} volunteers"]
            if dialled is not None and dialled.region and queue.regional.prefer_local:
                extra.append(f"region {dialled.region} first")
            if dialled is not None and dialled.partner:
                extra.append(f"counted for partner {dialled.partner}")
            if queue.max_wait is not None and queue.overflow is not None:  # the way out
                unstaffed = queue.unstaffed_wait
                sooner = "" if unstaffed is None else f" ({unstaffed} s with nobody on shift)"
                extra.append(f"after {queue.max_wait} s{sooner}: {queue.overflow}")
            steps.append(
                Step(
                    name,
                    node.kind,
                    lang,
                    heard(node.prompts),
                    note=_join(note, *extra),
                    ending=Ending.QUEUE,
                    target=node.queue,
                )
            )
            return steps
        elif isinstance(node, model.TransferNode):
            uri = plan.destinations[node.destination].uri
            steps.append(
                Step(
                    name,
                    node.kind,
                    lang,
                    heard(node.prompts),
                    note=_join(note, uri),
                    ending=Ending.TRANSFER,
                    target=node.destination,
                )
            )
            return steps
        elif isinstance(node, model.VoicemailNode):
            limit = (
                f"message of at most {node.max_seconds} s, kept encrypted; before the beep "
                "the caller hears how long it is kept (voicemail_retention)"
            )
            steps.append(
                Step(
                    name,
                    node.kind,
                    lang,
                    heard(node.prompts + node.saved_prompts),
                    note=_join(note, limit),
                    ending=Ending.VOICEMAIL,
                    target=node.mailbox,
                )
            )
            return steps
        else:
            steps.append(
                Step(name, node.kind, lang, heard(node.prompts), note=note, ending=Ending.HANGUP)
            )
            return steps
    steps.append(
        Step(
            name,
            plan.nodes[name].kind,
            lang,
            note="the call goes round in a loop",
            ending=Ending.LOOP,
        )
    )
    return steps


def _menu(node: model.MenuNode, lang: str, pending: list[str], note: str) -> tuple[Step, str]:
    heard: list[Heard] = []
    used = ""
    outcomes: list[str] = []
    for _attempt in range(node.retries + 1):
        heard.extend(Heard(p, lang) for p in node.prompts)
        key = pending.pop(0) if pending else None
        if key is not None:
            used += key
        if key is not None and key != NO_KEY and key in node.keys:
            outcomes.append(f"key {key}")
            step = Step(
                node.name, node.kind, lang, tuple(heard), used, _join(note, ", ".join(outcomes))
            )
            return step, node.keys[key]
        if key is None or key == NO_KEY:
            outcomes.append("no input")
            retry = node.no_input_prompt
        else:
            outcomes.append(f"invalid key {key}")
            retry = node.invalid_prompt
        if retry:
            heard.append(Heard(retry, lang))
    outcomes.append(f"default {node.default}")
    step = Step(node.name, node.kind, lang, tuple(heard), used, _join(note, ", ".join(outcomes)))
    return step, node.default


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
