"""Demo traffic: callers arriving at a rate with HELPLINE.md's mix, and volunteers on shift.

Each caller is its own simulated phone on the trunk address; each volunteer's handset is a
simulated phone on another loopback address. Everything they do goes over real SIP and RTP."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx.demo.phone import BACKLINE, CALLER, Call, SimPhone

# HELPLINE.md: mostly Dutch, a few percent Arabic, Farsi, Turkish (the language menu's keys)
LANGUAGES: list[tuple[str, str, float]] = [("nl", "1", 0.91), ("ar", "2", 0.03),
                                           ("fa", "3", 0.03), ("tr", "4", 0.03)]  # fmt: skip
ASKS_113 = 0.05  # share of callers dialling the 113 night line
NATIONAL = "0900-0767"
LOCAL = ["020-6250000", "010-4362323", "030-2333444", "050-5771000"]
PARTNER = ["088-1234500", "088-5550100"]
LINE_113 = "0800-0113001"
REGIONS = ["Amsterdam", "Rotterdam", "Utrecht", "Groningen"]
SERVICE_LEVEL_SECONDS = 30.0  # answered within this wait counts towards the service level
DEMO_PASSWORD = "demo-volunteer-password"
REGISTER_EXPIRES = 600  # seconds; handsets register again at half of it, as real ones do


@dataclass(frozen=True)
class TrafficConfig:
    callers_per_minute: float = 4.0
    volunteers: int = 6
    talk_seconds: float = 40.0  # mean conversation length
    patience_seconds: float = 90.0  # mean time a caller waits before hanging up
    miss_share: float = 0.08  # offers a volunteer lets ring out
    handover_share: float = 0.05  # answered calls a volunteer hands over to 113 (keys *9)
    trunk_host: str = "127.0.0.1"
    handset_host: str = "127.0.0.2"
    seed: int | None = None
    backline_port: int = 0  # where the simulated 113 listens (0: any free port)
    first_callers: int = 0  # callers arriving in the first minute on top of the rate (warm start)


@dataclass
class Summary:
    offered: int = 0  # calls the service took (200 to the INVITE)
    refused: int = 0
    answered: int = 0  # a volunteer was heard
    abandoned: int = 0  # hung up while waiting (including `cut_waiting`)
    cut_waiting: int = 0  # still waiting when the run closed: they hung up then
    other: int = 0  # ended by the service without a volunteer (closed line, voicemail, ...)
    waits: list[float] = field(default_factory=list)
    by_language: Counter[str] = field(default_factory=Counter)
    answered_by_language: Counter[str] = field(default_factory=Counter)
    by_entry: Counter[str] = field(default_factory=Counter)
    volunteer_answers: int = 0
    volunteer_misses: int = 0
    handed_over: int = 0  # volunteers pressed the hand-over keys
    backline_answered: int = 0  # the simulated 113 took the call

    @property
    def unfinished(self) -> int:
        """Calls still going when the demo stopped waiting for them (cut off at its end)."""
        return self.offered - self.answered - self.abandoned - self.other

    @property
    def service_level(self) -> float | None:
        """Share of answered and abandoned calls answered within SERVICE_LEVEL_SECONDS."""
        total = self.answered + self.abandoned
        if total == 0:
            return None
        return sum(1 for w in self.waits if w <= SERVICE_LEVEL_SECONDS) / total

    @property
    def average_wait(self) -> float | None:
        return sum(self.waits) / len(self.waits) if self.waits else None

    def render(self) -> str:
        level = self.service_level
        avg = self.average_wait
        lines = [
            f"offered {self.offered}, answered {self.answered}, abandoned {self.abandoned}, "
            f"other {self.other}, refused {self.refused}, cut off at the end {self.unfinished}"
            + (f" (of the abandoned, {self.cut_waiting} were waiting at the close)"
               if self.cut_waiting else ""),
            "service level ("
            f"{SERVICE_LEVEL_SECONDS:.0f} s): " + ("-" if level is None else f"{level:.0%}"),
            "average wait of answered calls: " + ("-" if avg is None else f"{avg:.1f} s"),
            "per language: " + ", ".join(
                f"{lang} {self.by_language[lang]} offered/{self.answered_by_language[lang]} "
                "answered" for lang in sorted(self.by_language)
            ),
            "per entry: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_entry.items())),
            f"volunteers: {self.volunteer_answers} answered, {self.volunteer_misses} let ring out,"
            f" {self.handed_over} handed over to 113 ({self.backline_answered} taken by 113)",
        ]  # fmt: skip
        return "\n".join(lines)


def volunteer_names(count: int) -> list[str]:
    return [f"demo{i:02d}" for i in range(1, count + 1)]


def volunteer_profile(index: int) -> dict[str, object]:
    """Everyone speaks Dutch; a few also Arabic, Farsi, Turkish; one in four is 113-trained."""
    extra = ["ar", "fa", "tr", None][index % 4]
    return {
        "languages": ["nl"] + ([extra] if extra else []),
        "region": REGIONS[index % len(REGIONS)],
        "skills": ["113"] if index % 4 == 0 else [],
    }


BACKLINE_HOST = "127.0.0.3"  # the simulated 113 (a destination the service dials out to)


def demo_plan(plan: Path, into: Path, backline: tuple[str, int]) -> Path:
    """A copy of `plan` whose backline_113 destination is the simulated 113 on loopback."""
    text, count = re.subn(
        r'(\n  backline_113:\n    uri: )"[^"]*"',
        rf'\1"sip:113@{backline[0]}:{backline[1]}"',
        plan.read_text(),
    )
    if count != 1:
        raise ValueError(f"{plan}: no backline_113 destination to point at the simulated 113")
    into.write_text(text)
    return into


class PickUps:
    """Volunteers' answers not yet heard by any caller: calls the service may already count
    as answered (it does at the volunteer's 200, before the whisper) while their caller still
    hears only the waiting line. Callers and volunteers are not paired (the service tells a
    volunteer nothing of the caller), so this is a count over all of them.

    A caller whose patience ran out gives up only while the count is zero, checked and hung up
    in one step of the event loop (no await between): then no volunteer has sent a 200 that
    could be for this caller, any later 200 reaches the service's socket after the caller's
    BYE, and the service sees a caller who left while waiting or ringing: abandoned, as the
    caller counts it. A count above zero drops when a caller first hears a volunteer or when an
    answered volunteer's call ends without a caller (the caller left during the whisper, or
    the 200 crossed the service's CANCEL at the ring timeout). The other way round, a volunteer
    hangs up or hands over only once the count is zero: its caller has heard it, so it counts
    itself answered as the service does (not cut off as the call ends at the run's close).

    (Not covered: a caller connected a second time, after a volunteer's handset was lost or a
    hand-over failed, would keep the count above zero; simulated volunteers and 113 do
    neither.)"""

    def __init__(self) -> None:
        self.pending = 0
        self.clear = asyncio.Event()
        self.clear.set()

    def answered(self) -> None:
        self.pending += 1
        self.clear.clear()

    def resolved(self) -> None:
        self.pending = max(0, self.pending - 1)
        if self.pending == 0:
            self.clear.set()


async def _first_of(*events: asyncio.Event, timeout: float | None = None) -> bool:
    """Wait until one of `events` is set, at most `timeout` seconds; False if none was."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)


class Traffic:
    def __init__(self, config: TrafficConfig) -> None:
        self.server: tuple[str, int] = ("127.0.0.1", 0)  # set by start_volunteers
        self.config = config
        # who calls (arrival gaps, numbers, languages) apart from how phones behave, so that a
        # seed gives the same callers whatever the timing of the calls in between
        self.arrivals = random.Random(config.seed)
        self.rng = random.Random(None if config.seed is None else config.seed + 1)
        self.summary = Summary()
        self._tasks: set[asyncio.Task[None]] = set()
        self._volunteers: list[SimPhone] = []
        self._refreshers: list[asyncio.Task[None]] = []
        self.pickups = PickUps()
        self.closing = asyncio.Event()  # the run ends: waiting callers and talkers hang up
        self.backline = SimPhone(BACKLINE_HOST, self.server, user="113", on_incoming=self._at_113,
                                 voice=BACKLINE, port=config.backline_port)  # fmt: skip

    async def start_backline(self) -> tuple[str, int]:
        """The simulated 113 listens first: the plan the service loads names its address."""
        await self.backline.start()
        return BACKLINE_HOST, self.backline.port

    def _at_113(self, phone: SimPhone, call: Call) -> None:
        self._spawn(self._backline_call(phone, call))

    async def _ended_within(self, call: Call, seconds: float) -> bool:
        """Wait up to `seconds` (less once the run closes); True if the call ended meanwhile."""
        await _first_of(call.ended, self.closing, timeout=seconds)
        return call.ended.is_set()

    async def _backline_call(self, phone: SimPhone, call: Call) -> None:
        phone.ring(call)
        try:
            await asyncio.wait_for(call.ended.wait(), self.rng.uniform(1.0, 2.0))
            return
        except TimeoutError:
            pass
        phone.answer(call)
        self.summary.backline_answered += 1
        # a volunteer's hand-over starts with the volunteer (consultation): stay on the line
        # until the caller is put through (hanging up first would send the caller back to the
        # volunteer: not handed over after all), then talk with the caller
        await _first_of(call.media.protocol.heard_caller, call.ended, timeout=120)
        if not await self._ended_within(call, max(3.0, self.rng.expovariate(1 / 20))):
            await phone.hang_up(call)

    # --- volunteers -------------------------------------------------------------------------
    async def start_volunteers(self, server: tuple[str, int]) -> None:
        self.server = server
        for name in volunteer_names(self.config.volunteers):
            phone = SimPhone(
                self.config.handset_host, self.server, user=name, password=DEMO_PASSWORD,
                on_incoming=self._offered,
            )  # fmt: skip
            await phone.start()
            status = await phone.register(REGISTER_EXPIRES)
            if status != 200:
                raise RuntimeError(f"volunteer {name}: REGISTER answered {status}")
            login = await phone.dial("*1")
            if login is None:
                raise RuntimeError(f"volunteer {name}: the *1 login was refused")
            await asyncio.wait_for(login.ended.wait(), 30)  # the service confirms and hangs up
            self._volunteers.append(phone)
            self._refreshers.append(asyncio.ensure_future(self._keep_registered(phone)))

    async def _keep_registered(self, phone: SimPhone) -> None:
        """Refresh the handset's binding before it lapses (else, past REGISTER_EXPIRES, the
        service has nowhere to ring the volunteer and a long run loses its volunteers)."""
        while True:
            await asyncio.sleep(REGISTER_EXPIRES / 2)
            await phone.register(REGISTER_EXPIRES)

    def _offered(self, phone: SimPhone, call: Call) -> None:
        self._spawn(self._volunteer_call(phone, call))

    async def _volunteer_call(self, phone: SimPhone, call: Call) -> None:
        phone.ring(call)
        if self.rng.random() < self.config.miss_share:
            self.summary.volunteer_misses += 1
            await call.ended.wait()  # rings until the service tries someone else
            return
        try:
            await asyncio.wait_for(call.ended.wait(), self.rng.uniform(1.0, 4.0))
            return  # the caller gave up while it rang, or the service tried someone else
        except TimeoutError:
            pass
        if call.invite is None or not call.invite.unanswered:
            return
        self.pickups.answered()  # counted in the same step as the 200 goes out
        phone.answer(call)
        try:
            await self._talk(phone, call)
        finally:
            if not call.media.protocol.heard_caller.is_set():
                self.pickups.resolved()  # no caller was connected to this answer

    async def _talk(self, phone: SimPhone, call: Call) -> None:
        """An answered call: the whisper, then the conversation (or a hand-over to 113)."""
        await _first_of(call.media.protocol.heard_caller, call.ended)
        if call.ended.is_set():
            return  # the caller left during the whisper (or our 200 crossed a CANCEL)
        self.summary.volunteer_answers += 1
        talk = max(3.0, self.rng.expovariate(1 / self.config.talk_seconds))
        handing_over = False
        if self.rng.random() < self.config.handover_share:
            # talk a while, then hand the caller over to 113 with the keys
            if await self._ended_within(call, talk / 2) or not await self._heard(call):
                return
            if not self.closing.is_set():  # (at the close: hang up, below)
                self.summary.handed_over += 1
                call.media.press("*9")
                # warm: once 113 speaks, a word with them, then hang up (the caller goes over;
                # hanging up before 113 answers would still hand over, blind)
                await _first_of(call.media.protocol.heard_backline, call.ended, timeout=60)
                talk, handing_over = 1.0, True
        if not await self._ended_within(call, talk) and (handing_over or await self._heard(call)):
            await phone.hang_up(call)  # (handing over: the caller heard us before the keys)

    async def _heard(self, call: Call) -> bool:
        """Wait until our caller has heard us, before hanging up or handing over (else the
        caller, who counts itself answered on hearing a volunteer, could see the call end or go
        on hold first, while the service counts it answered). Callers and volunteers are not
        paired: no answer left unheard by its caller (PickUps clear) includes ours. False if
        the call ended meanwhile."""
        await _first_of(self.pickups.clear, call.ended)
        return not call.ended.is_set()

    # --- callers ----------------------------------------------------------------------------
    async def run_callers(self, seconds: float) -> None:
        """Callers arrive as a Poisson process for `seconds`; then the calls in progress end."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        for _ in range(self.config.first_callers):  # already calling as the run starts
            self._spawn(self._caller(delay=self.arrivals.uniform(0.0, 60.0)))
        while True:
            gap = self.arrivals.expovariate(self.config.callers_per_minute / 60.0)
            if loop.time() + gap >= end:
                await asyncio.sleep(max(0.0, end - loop.time()))
                break
            await asyncio.sleep(gap)
            self._spawn(self._caller())

    async def finish(self, grace: float = 30.0, close: float = 30.0) -> None:
        """Let calls in progress end for `grace` seconds; then the run closes (callers still
        waiting give up, as patience running out would have them do, and conversations end),
        for at most `close` seconds; then every phone is closed."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        self.closing.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=close)
        for task in [*self._tasks, *self._refreshers]:
            task.cancel()
        for phone in self._volunteers:
            await phone.close()
        await self.backline.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pick_call(self) -> tuple[str, str, str, str]:
        """(entry kind, number, language, keys)."""
        if self.arrivals.random() < ASKS_113:
            return "night_113", LINE_113, "nl", ""
        pick = self.arrivals.random()
        lang, key = "nl", "1"
        acc = 0.0
        for code, k, share in LANGUAGES:
            acc += share
            if pick < acc:
                lang, key = code, k
                break
        if lang != "nl":
            # "closed now; press 1 for a Dutch volunteer": typed ahead, so that whatever the
            # hour every caller who stays reaches a queue (hanging up in the closed menu would
            # be the service's "closed", which the caller cannot tell from waiting); in an
            # open queue the extra key is ignored
            key += "1"
        entry = self.arrivals.random()
        if entry < 0.6:
            return "national", NATIONAL, lang, key
        if entry < 0.9:
            return "local", self.arrivals.choice(LOCAL), lang, key
        return "partner", self.arrivals.choice(PARTNER), "nl", ""  # partners start in Dutch

    async def _caller(self, delay: float = 0.0) -> None:
        kind, number, lang, keys = self._pick_call()
        await asyncio.sleep(delay)
        phone = SimPhone(self.config.trunk_host, self.server, user="caller")
        await phone.start()
        try:
            call = await phone.dial(number, payload=CALLER)
            if call is None:
                self.summary.refused += 1
                return
            self.summary.offered += 1
            self.summary.by_language[lang] += 1
            self.summary.by_entry[kind] += 1
            await self._as_caller(phone, call, lang, keys)
        finally:
            await phone.close()

    async def _as_caller(self, phone: SimPhone, call: Call, lang: str, keys: str) -> None:
        if keys:
            await asyncio.sleep(self.rng.uniform(1.5, 3.0))  # into the language menu
            call.media.press(keys)
        waiting_since = time.monotonic()
        patience = self.rng.expovariate(1 / self.config.patience_seconds) + 5
        rtp = call.media.protocol
        outcomes = [rtp.heard_voice, rtp.heard_backline, call.ended]
        gave_up = False  # patience ran out (or the run closed): hang up once it is safe
        while True:
            if rtp.heard_voice.is_set():  # bridged to a volunteer: the service's "answered"
                self.pickups.resolved()
                self.summary.answered += 1
                self.summary.answered_by_language[lang] += 1
                self.summary.waits.append(time.monotonic() - waiting_since)
                await self._to_the_end(phone, call)
                return
            if call.ended.is_set() or rtp.heard_backline.is_set():
                self.summary.other += 1  # ended or sent on by the service (closed, 113, ...)
                await self._to_the_end(phone, call)
                return
            gave_up = gave_up or self.closing.is_set()
            if gave_up and self.pickups.clear.is_set():
                # no volunteer's answer is in flight: hanging up now, the service sees a
                # caller who left while waiting (see PickUps)
                self.summary.abandoned += 1
                self.summary.cut_waiting += self.closing.is_set()
                await phone.hang_up(call)
                return
            if gave_up:  # until no answer is in flight (or the call is answered or ends)
                await _first_of(*outcomes, self.pickups.clear)
            else:  # until patience runs out or the run closes
                left = patience - (time.monotonic() - waiting_since)
                gave_up = not await _first_of(*outcomes, self.closing, timeout=left)

    async def _to_the_end(self, phone: SimPhone, call: Call) -> None:
        """Connected (or sent on): the other side ends the call; the caller only once the run
        closes and they are still there."""
        await _first_of(self.closing, call.ended)
        if not call.ended.is_set():  # volunteers and 113 are told to stop too; else we do
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.ended.wait(), 10)
            await phone.hang_up(call)
