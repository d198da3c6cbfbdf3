"""IvrRuntime: walks a dialplan (ivr.model) for one call on its MediaLeg.

The runtime only plays, listens, records and decides; where the call goes afterwards (a
queue, a transfer, hang-up) is the IvrOutcome it returns, and the call handler acts on it.
To continue after a failed transfer or a queue's overflow, the handler starts a new
IvrRuntime at that node with the outcome's language.

Time comes from an injected clock and opening hours from an injected check (by default
ivr.schedule.is_open), so tests choose both. Keys typed ahead are kept for the next menu
(a caller who knows the menu need not wait for it); a key also interrupts a play node's
prompts, but not the prompts of nodes that end the IVR (queue, transfer, voicemail,
hang-up): those are information the caller should hear.

The path it records holds node names only: it goes to logs and metrics, never caller data.
A voicemail message goes, as audio in memory, to the `Mailboxes` handed in (which keep it
encrypted); the caller is told how long it is kept before the beep.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from ivr import model
from ivr.collect import DigitBuffer, Menu, MenuEnd
from ivr.prompts import number_names
from ivr.schedule import is_open as schedule_is_open
from pbx.media import tones
from pbx.media.leg import MediaLeg
from pbx.media.player import PlaybackEnd, play
from pbx.media.prompts import PromptLibrary
from pbx.media.recorder import RecordingEnd, RecordingResult, record

__all__ = ["BEEP", "IvrOutcome", "IvrRuntime", "Mailboxes", "OpenCheck", "OutcomeKind"]

log = structlog.get_logger("ivr.runtime")

OpenCheck = Callable[[model.Schedule, datetime], bool]

# Nodes passed without playing anything before we call it a loop (goto a -> goto a): a
# dialplan mistake must neither spin the event loop nor keep a caller in silence.
MAX_SILENT_STEPS = 64
# Nodes in one run at most, as in ivr.simulate: a menu whose default leads back to itself
# would otherwise hold a silent caller (a phone left off the hook) for ever.
MAX_STEPS = 200
BEEP = tones.sine(1000, 250)  # "speak after the tone"


class Mailboxes(Protocol):
    """Where voicemail messages go (`pbx.voicemail.desk.VoicemailDesk` fits)."""

    @property
    def accepting(self) -> bool:
        """False when messages cannot be kept safely (no encryption key configured)."""

    @property
    def retention_days(self) -> int:
        """How long a message is kept, as the caller is told it."""

    async def deposit(self, line: str, pcm: bytes) -> str:
        """Keep a message (8 kHz 16-bit PCM) for `line`; its id. Raises if it was not kept."""


class OutcomeKind(enum.StrEnum):
    QUEUE = "queue"  # wait in `queue`
    TRANSFER = "transfer"  # dial `destination`; on failure continue at `on_failure`
    VOICEMAIL = "voicemail"  # message left (or none, `voicemail` None); then hang up
    HANGUP = "hangup"  # the plan ended the call
    ABANDONED = "abandoned"  # the caller hung up in the IVR
    FAILED = "failed"  # the plan could not go on (unknown node, loop); `detail` says why


@dataclass(frozen=True)
class IvrOutcome:
    kind: OutcomeKind
    node: str  # where the call left the IVR
    path: tuple[str, ...]  # node names in the order visited
    language: str  # the caller's language at the end
    queue: str | None = None
    region: str | None = None  # context passed in: the local branch of a local number
    partner: str | None = None  # context passed in: the partner a forwarded call counts for
    destination: str | None = None  # a Dialplan.destinations name, never a number
    on_failure: str | None = None  # node for the handler to continue at if the transfer fails
    mailbox: str | None = None
    voicemail: str | None = None  # the message id, None when nothing was kept
    voicemail_seconds: float = 0.0
    detail: str = ""

    def describe(self) -> str:
        """One line for logs; holds no caller data."""
        match self.kind:
            case OutcomeKind.ABANDONED:
                return f"abandoned in IVR at node {self.node}"
            case OutcomeKind.QUEUE:
                return f"to queue {self.queue} ({self.language}) from node {self.node}"
            case OutcomeKind.TRANSFER:
                return f"transfer to {self.destination} from node {self.node}"
            case OutcomeKind.VOICEMAIL:
                return (
                    f"voicemail for {self.mailbox}: {self.voicemail_seconds:.1f} s "
                    f"at node {self.node}"
                )
            case OutcomeKind.FAILED:
                return f"IVR failed at node {self.node}: {self.detail}"
            case _:
                return f"hung up by IVR at node {self.node}"


class _Abandoned(Exception):
    """The leg closed (caller hung up) while a node was running."""


class IvrRuntime:
    """Executes ``plan`` from node ``entry`` for the call on ``leg``: ``await rt.run()``.

    One instance per call and entry; ``run`` returns once and never raises because the
    caller hung up. Cancelling the task running it stops any prompt or recording.
    """

    def __init__(
        self,
        leg: MediaLeg,
        plan: model.Dialplan,
        entry: str,
        *,
        language: str,
        prompts: PromptLibrary,
        now: Callable[[], datetime],
        mailboxes: Mailboxes,
        is_open: OpenCheck = schedule_is_open,
        region: str | None = None,
        partner: str | None = None,
        voicemail_silence: float | None = 5.0,
        digits: DigitBuffer | None = None,
    ) -> None:
        self.leg = leg
        self.plan = plan
        self.entry = entry
        self.language = language
        self.prompts = prompts
        self.now = now
        self.is_open = is_open
        self.mailboxes = mailboxes
        self.region = region
        self.partner = partner
        self.voicemail_silence = voicemail_silence
        self.path: list[str] = []
        # keys pressed before the walk began (e.g. right as the call was answered) count too
        self._digits = digits if digits is not None else DigitBuffer(leg)
        self._ran = False

    # ------------------------------------------------------------------------- walk
    async def run(self) -> IvrOutcome:
        if self._ran:
            raise RuntimeError("an IvrRuntime runs once; start a new one to continue a call")
        self._ran = True
        outcome = await self._walk()
        log.debug("ivr_done", outcome=outcome.describe(), path=outcome.path)
        return outcome

    async def _walk(self) -> IvrOutcome:
        name = self.entry
        silent_steps = 0
        with self._digits:
            try:
                while True:
                    if self.leg.closed:
                        raise _Abandoned
                    node = self.plan.nodes.get(name)
                    if node is None:
                        return self._outcome(OutcomeKind.FAILED, name, detail="unknown node")
                    if len(self.path) >= MAX_STEPS:
                        return self._outcome(OutcomeKind.FAILED, name, detail="dialplan loop")
                    self.path.append(name)
                    if node.language is not None:
                        self.language = node.language
                    step = await self._step(node)
                    if isinstance(step, IvrOutcome):
                        return step
                    name, audible = step
                    silent_steps = 0 if audible else silent_steps + 1
                    if silent_steps > MAX_SILENT_STEPS:
                        return self._outcome(OutcomeKind.FAILED, name, detail="dialplan loop")
                    if not audible:
                        await asyncio.sleep(0)  # a chain of silent nodes still yields
            except _Abandoned:
                return self._outcome(OutcomeKind.ABANDONED, self.path[-1] if self.path else name)

    async def _step(self, node: model.Node) -> tuple[str, bool] | IvrOutcome:
        """Run one node: (next node, whether anything was played) or the final outcome."""
        if isinstance(node, model.PlayNode):
            return node.next, await self._play(node.prompts, barge_in=True)
        if isinstance(node, model.MenuNode):
            return await self._menu(node), True
        if isinstance(node, model.GotoNode):
            return node.next, False
        if isinstance(node, model.HoursNode):
            schedule = self.plan.schedules.get(node.schedule)
            if schedule is None:
                return self._outcome(OutcomeKind.FAILED, node.name, detail="unknown schedule")
            return (node.open if self.is_open(schedule, self.now()) else node.closed), False
        if isinstance(node, model.QueueNode):
            await self._play(node.prompts, barge_in=False)
            self._digits.clear()
            return self._outcome(OutcomeKind.QUEUE, node.name, queue=node.queue)
        if isinstance(node, model.TransferNode):
            await self._play(node.prompts, barge_in=False)
            self._digits.clear()
            return self._outcome(
                OutcomeKind.TRANSFER,
                node.name,
                destination=node.destination,
                on_failure=node.on_failure,
            )
        if isinstance(node, model.VoicemailNode):
            return await self._voicemail(node)
        await self._play(node.prompts, barge_in=False)  # HangupNode
        return self._outcome(OutcomeKind.HANGUP, node.name)

    # ------------------------------------------------------------------------ media
    def _pcm(self, names: Sequence[str]) -> list[bytes]:
        pcm = []
        for name in names:
            try:
                pcm.append(self.prompts.get(self.language, name))
            except KeyError:
                # The loader checks prompts; if one vanished anyway, the caller goes on
                # without it rather than being dropped.
                log.error("ivr_prompt_missing", prompt=name, language=self.language)
        return pcm

    async def _play(self, names: Sequence[str], *, barge_in: bool) -> bool:
        """Play prompts by name; False if there was nothing to play. A key pressed during
        them stays buffered for the next menu."""
        pcm = self._pcm(names)
        if not pcm:
            return False
        result = await play(self.leg, pcm, barge_in=barge_in)
        if result.reason is PlaybackEnd.LEG_CLOSED or self.leg.closed:
            raise _Abandoned
        return True

    async def _menu(self, node: model.MenuNode) -> str:
        result = await Menu(
            self.leg,
            self._pcm(node.prompts),
            node.keys.keys(),
            timeout=node.timeout,
            retries=node.retries,
            invalid_prompt=self._pcm([node.invalid_prompt] if node.invalid_prompt else []),
            no_input_prompt=self._pcm([node.no_input_prompt] if node.no_input_prompt else []),
            buffer=self._digits,
        ).run()
        if result.reason is MenuEnd.LEG_CLOSED:
            raise _Abandoned
        if result.reason is MenuEnd.CHOSEN and result.choice is not None:
            return node.keys[result.choice]
        return node.default

    async def _voicemail(self, node: model.VoicemailNode) -> IvrOutcome:
        if not self.mailboxes.accepting:  # never a message that could not be kept safely
            log.error("voicemail_unavailable", mailbox=node.mailbox, reason="no recipient key")
            await self._play(["voicemail_unavailable"], barge_in=False)
            return self._outcome(OutcomeKind.VOICEMAIL, node.name, mailbox=node.mailbox)
        await self._play(node.prompts, barge_in=False)
        days = self.mailboxes.retention_days  # "your message is kept N days, then deleted"
        await self._play(
            ["voicemail_kept_intro", *number_names(days), "day" if days == 1 else "days",
             "voicemail_kept_outro"],
            barge_in=False,
        )  # fmt: skip
        await self._play_pcm([BEEP])
        recorded: RecordingResult = await record(
            self.leg,
            max_seconds=node.max_seconds,
            silence_seconds=self.voicemail_silence,
            stop_digits=node.finish_key,
        )
        self._digits.clear()  # the finish key is not a menu choice
        kept: str | None = None
        if recorded.duration > 0:  # nothing said: no empty messages for the info line
            try:
                kept = await self.mailboxes.deposit(node.mailbox, recorded.pcm)
            except Exception as exc:  # a full disk must not cost the caller a clean ending
                log.error("voicemail_not_kept", mailbox=node.mailbox, error=type(exc).__name__)
        if recorded.reason is not RecordingEnd.LEG_CLOSED and kept is not None:
            # The message is saved whether or not they stay to hear the thanks.
            with contextlib.suppress(_Abandoned):
                await self._play(node.saved_prompts, barge_in=False)
        if kept is None and self.leg.closed:
            raise _Abandoned
        return self._outcome(
            OutcomeKind.VOICEMAIL,
            node.name,
            mailbox=node.mailbox,
            voicemail=kept,
            voicemail_seconds=recorded.duration,
        )

    async def _play_pcm(self, pcm: list[bytes]) -> None:
        result = await play(self.leg, pcm, barge_in=False)
        if result.reason is PlaybackEnd.LEG_CLOSED:
            raise _Abandoned

    def _outcome(
        self,
        kind: OutcomeKind,
        node: str,
        *,
        queue: str | None = None,
        destination: str | None = None,
        on_failure: str | None = None,
        mailbox: str | None = None,
        voicemail: str | None = None,
        voicemail_seconds: float = 0.0,
        detail: str = "",
    ) -> IvrOutcome:
        return IvrOutcome(
            kind,
            node,
            tuple(self.path),
            self.language,
            queue=queue,
            region=self.region,
            partner=self.partner,
            destination=destination,
            on_failure=on_failure,
            mailbox=mailbox,
            voicemail=voicemail,
            voicemail_seconds=voicemail_seconds,
            detail=detail,
        )
