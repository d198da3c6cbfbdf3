"""The shift desk: volunteers log in, log out and pause from the handset itself.

Feature codes a registered, authenticated handset dials (nothing else is dialled out):
  *1  log in to a shift (asks for the PIN first when the volunteer has one)
  *0  log out
  *2  pause, or resume from a pause
Each is answered, confirmed with a spoken prompt in the volunteer's language, and hung up. A
volunteer whom the service paused after missed calls first hears why.

Wrong PINs are counted per volunteer across calls (hanging up and calling again does not reset
them): past the limit, `*1` is refused with a spoken notice for a back-off that doubles each
time, so a stolen handset or leaked SIP password cannot be used to guess the PIN.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ivr.collect import CollectEnd, collect_digits
from pbx.calls.legs import InboundLeg, watch_call_task
from pbx.calls.media_session import AnchoredMedia, MediaFactory
from pbx.media.player import play
from pbx.media.prompts import PromptLibrary
from pbx.media.srtp import SrtpMode
from pbx.profile import Profile, verify_pin
from pbx.sip.auth_guard import Lockout
from pbx.sip.peer import TransportKind
from pbx.sip.stack import failure_site
from queues.roster import AUTO_PAUSED, Roster, RosterError, Volunteer, VolunteerState

log = structlog.get_logger("pbx.calls.shift")

LOGIN, LOGOUT, PAUSE = "*1", "*0", "*2"
PIN_ATTEMPTS = 3  # PINs asked for in one call (the lockout counts across calls)


def pin_lockout(failures: int = 3, backoff: float = 60.0, max_backoff: float = 3600.0) -> Lockout:
    """Wrong-PIN counts per volunteer (keys are existing accounts: bounded by them)."""
    return Lockout(failures, backoff, max_backoff, forget_after=86400.0, max_keys=100_000)


class PinCheck(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong_pin"
    LOCKED = "pin_locked"


@dataclass
class ShiftDesk:
    roster: Roster
    media: MediaFactory
    prompts: PromptLibrary
    profiles: Callable[[], dict[str, Profile]]  # in memory, refreshed from the database
    now: Callable[[], float]
    on_change: Callable[[], None] = lambda: None  # the dispatcher looks at the roster again
    pins: Lockout = field(default_factory=pin_lockout)  # wrong PINs, across calls
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def volunteer_call(self, leg: InboundLeg, username: str, dialed: str) -> None:
        code = dialed.replace("%2A", "*").strip()
        if code not in (LOGIN, LOGOUT, PAUSE):
            # a volunteer's handset can reach the feature codes, nothing else (toll fraud)
            leg.reject(404, "Not Found - No such feature code")
            return
        watch_call_task(asyncio.create_task(self._serve(leg, username, code)), leg, self.tasks)

    async def _serve(self, leg: InboundLeg, username: str, code: str) -> None:
        profile = self.profiles().get(username)
        if profile is None:
            leg.reject(403, "Forbidden - Unknown or disabled volunteer")
            return
        srtp = self.media.srtp.for_volunteer(username)
        if srtp is SrtpMode.REQUIRE and leg.transport is not TransportKind.TLS:
            # keys never travel in the clear, so no SRTP is possible: no shift either
            log.warning(
                "shift_refused_unencrypted_transport", user=username, code=code,
                transport=str(leg.transport),
            )  # fmt: skip
            leg.reject(403, "Forbidden - TLS and SRTP required")
            return
        anchored = await self.media.open_for(leg, srtp=srtp)
        if anchored is None:
            return
        media, sdp = anchored
        language = next(
            (lang for lang in profile.languages if lang in self.prompts.languages()), "nl"
        )
        try:
            if not await leg.answer(sdp or media.offer()):
                return
            told = self._auto_paused_notice(username)
            prompt = await self._act(media, profile, code, language)
            self.on_change()  # a volunteer who just became available is offered a call at once
            names = [*told, prompt]
            log.info("feature_code_done", user=username, code=code, prompts=names)
            await play(media.leg, [self.prompts.get(language, n) for n in names], barge_in=False)
            await leg.hangup("feature_code_done")
        except Exception as exc:
            log.error(
                "feature_code_failed", user=username, error=type(exc).__name__,
                at=failure_site(exc),
            )  # fmt: skip
            await leg.hangup("internal_error")
        finally:
            media.close()

    def _auto_paused_notice(self, username: str) -> list[str]:
        """A volunteer paused for missing calls hears why the next time they dial in."""
        try:
            volunteer = self.roster.get(username)
        except RosterError:
            return []
        paused = volunteer.state is VolunteerState.PAUSED
        return ["auto_paused"] if paused and volunteer.pause_reason == AUTO_PAUSED else []

    async def _act(self, media: AnchoredMedia, profile: Profile, code: str, language: str) -> str:
        """Change the volunteer's state; the name of the prompt that confirms it."""
        now = self.now()
        user = profile.username
        if code == LOGIN:
            if profile.pin_hash:
                check = await self._check_pin(media, user, profile.pin_hash, language)
                if check is not PinCheck.OK:
                    log.info("shift_login_refused", user=user, reason=check.value)
                    return str(check)
            if user in self.roster and self.roster.get(user).state is not VolunteerState.LOGGED_OUT:
                return "shift_login_ok"  # already on shift (e.g. from another handset)
            self.roster.login(
                Volunteer(
                    user, frozenset(profile.languages), frozenset(profile.skills), profile.region
                ),
                now,
            )
            return "shift_login_ok"
        try:
            state = self.roster.get(user).state
        except RosterError:
            return "not_logged_in"
        if state is VolunteerState.LOGGED_OUT:
            return "not_logged_in"
        try:
            if code == LOGOUT:
                self.roster.logout(user, now)
                return "shift_logout_ok"
            if state is VolunteerState.PAUSED:
                self.roster.resume(user, now)
                return "resumed"
            self.roster.pause(user, now)
            return "paused"
        except RosterError as exc:  # ringing or in a call on another handset: not now
            log.info("feature_code_refused", user=user, code=code, why=str(exc))
            return "invalid_key"

    async def _check_pin(
        self, media: AnchoredMedia, user: str, pin_hash: str, language: str
    ) -> PinCheck:
        if self.pins.locked_for(user, self.now()) > 0:
            return PinCheck.LOCKED  # not even asked: no guessing while locked
        for attempt in range(PIN_ATTEMPTS):
            prompt = "enter_pin" if attempt == 0 else "wrong_pin"
            got = await collect_digits(
                media.leg, [self.prompts.get(language, prompt)], max_digits=12,
                first_digit_timeout=8.0, inter_digit_timeout=4.0, terminators="#",
            )  # fmt: skip
            if got.reason is CollectEnd.LEG_CLOSED:
                return PinCheck.WRONG
            if not got.digits:
                continue
            ok: bool = await asyncio.to_thread(verify_pin, got.digits, pin_hash)
            if ok:
                self.pins.succeeded(user, self.now())
                return PinCheck.OK
            if self.pins.failed(user, self.now()):
                log.warning("pin_locked_out", user=user)
                return PinCheck.LOCKED
        return PinCheck.WRONG
