"""Collecting key presses from a caller: prompt with barge-in, then digits with timeouts.

Digits are buffered from the moment a DigitBuffer is attached to a leg, so a key that
interrupts a prompt, or one typed ahead during an earlier prompt, is never lost: it is
the first digit of what is collected next. DTMF from RFC 4733 and from SIP INFO reach
the leg's DTMF listeners alike, so both work here.

All timeouts come from the caller of these functions (the dialplan), never from here.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType

from pbx.media.leg import MediaLeg
from pbx.media.player import PlaybackEnd, play

__all__ = [
    "CollectEnd",
    "Collected",
    "DigitBuffer",
    "LegClosed",
    "Menu",
    "MenuEnd",
    "MenuResult",
    "collect_digits",
]


class LegClosed(Exception):
    """The leg closed (the caller hung up) while we were waiting for it."""


class DigitBuffer:
    """Queues every key pressed on ``leg`` while attached; use as a (sync) context manager."""

    def __init__(self, leg: MediaLeg) -> None:
        self.leg = leg
        self._digits: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._attached = False
        self._closed = leg.closed

    def attach(self) -> DigitBuffer:
        if not self._attached and not self._closed:
            self._attached = True
            self.leg.add_dtmf_listener(self._on_digit)
            self.leg.add_close_listener(self._on_close)
        return self

    def detach(self) -> None:
        if self._attached:
            self._attached = False
            self.leg.remove_dtmf_listener(self._on_digit)
            self.leg.remove_close_listener(self._on_close)

    def __enter__(self) -> DigitBuffer:
        return self.attach()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.detach()

    @property
    def closed(self) -> bool:
        return self._closed or self.leg.closed

    @property
    def pending(self) -> int:
        """Digits pressed and not yet taken."""
        return len(self._digits)

    def clear(self) -> None:
        self._digits.clear()

    async def next(self, timeout: float) -> str | None:
        """The next digit, waiting at most ``timeout`` s for it; None when none came.

        Raises LegClosed once the leg is closed and no buffered digit is left.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._digits:
            if self.closed:
                raise LegClosed
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
        return self._digits.popleft()

    def _on_digit(self, digit: str) -> None:
        self._digits.append(digit)
        self._wakeup.set()

    def _on_close(self, leg: MediaLeg) -> None:
        self._closed = True
        self._attached = False
        self._wakeup.set()


class CollectEnd(enum.Enum):
    COMPLETE = "complete"  # max_digits reached
    TERMINATOR = "terminator"  # a terminator key ended the entry (not part of the digits)
    TIMEOUT = "timeout"  # some digits, then the inter-digit timeout expired
    NO_INPUT = "no-input"  # nothing pressed before the first-digit timeout
    LEG_CLOSED = "leg-closed"


@dataclass(frozen=True)
class Collected:
    digits: str
    reason: CollectEnd


async def collect_digits(
    leg: MediaLeg,
    prompts: Sequence[bytes],
    *,
    max_digits: int,
    first_digit_timeout: float,
    inter_digit_timeout: float,
    terminators: str = "#",
    barge_in: bool = True,
    buffer: DigitBuffer | None = None,
) -> Collected:
    """Play ``prompts`` then collect up to ``max_digits`` keys.

    With barge-in a key stops the prompt and counts as the first digit; a key already
    typed ahead in ``buffer`` skips the prompt altogether. Without barge-in the prompt
    plays to the end, but keys pressed meanwhile are kept. The first-digit timeout runs
    from the end of the prompt, the inter-digit timeout from each key.
    """
    if max_digits < 1:
        raise ValueError(f"max_digits must be at least 1, got {max_digits}")
    digits_in = buffer if buffer is not None else DigitBuffer(leg)
    attached_here = buffer is None
    digits_in.attach()
    try:
        if digits_in.closed:
            return Collected("", CollectEnd.LEG_CLOSED)
        if prompts and not (barge_in and digits_in.pending):
            result = await play(leg, prompts, barge_in=barge_in)
            if result.reason is PlaybackEnd.LEG_CLOSED:
                return Collected("", CollectEnd.LEG_CLOSED)
        digits = ""
        while len(digits) < max_digits:
            timeout = inter_digit_timeout if digits else first_digit_timeout
            try:
                key = await digits_in.next(timeout)
            except LegClosed:
                return Collected(digits, CollectEnd.LEG_CLOSED)
            if key is None:
                return Collected(digits, CollectEnd.TIMEOUT if digits else CollectEnd.NO_INPUT)
            if key in terminators:
                return Collected(digits, CollectEnd.TERMINATOR)
            digits += key
        return Collected(digits, CollectEnd.COMPLETE)
    finally:
        if attached_here:
            digits_in.detach()


class MenuEnd(enum.Enum):
    CHOSEN = "chosen"  # a valid key; it is in MenuResult.choice
    DEFAULT = "default"  # retries used up (invalid keys or silence): take the default
    LEG_CLOSED = "leg-closed"


@dataclass(frozen=True)
class MenuResult:
    reason: MenuEnd
    choice: str | None = None
    attempts: int = 0  # prompts played (1 + the retries used)
    invalid: int = 0  # attempts that ended in a key not on the menu
    no_input: int = 0  # attempts that ended in silence


class Menu:
    """One-key menu: prompt, wait for a key; an invalid key plays ``invalid_prompt`` and
    retries, silence plays ``no_input_prompt`` and retries; after ``retries`` failed
    retries the menu ends with DEFAULT (the dialplan decides what that means).

    The invalid/no-input prompt is played on every failed attempt including the last,
    so a caller sent to the default hears why. Those prompts allow barge-in too: a key
    pressed during them is taken as the answer to the next attempt.
    """

    def __init__(
        self,
        leg: MediaLeg,
        prompt: Sequence[bytes],
        choices: Collection[str],
        *,
        timeout: float,
        retries: int,
        invalid_prompt: Sequence[bytes] = (),
        no_input_prompt: Sequence[bytes] = (),
        barge_in: bool = True,
        buffer: DigitBuffer | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        self.leg = leg
        self.prompt = list(prompt)
        self.choices = frozenset(choices)
        self.timeout = timeout
        self.retries = retries
        self.invalid_prompt = list(invalid_prompt)
        self.no_input_prompt = list(no_input_prompt)
        self.barge_in = barge_in
        self.buffer = buffer

    async def run(self) -> MenuResult:
        digits_in = self.buffer if self.buffer is not None else DigitBuffer(self.leg)
        attached_here = self.buffer is None
        digits_in.attach()
        invalid = no_input = 0
        try:
            for attempt in range(1, self.retries + 2):
                got = await collect_digits(
                    self.leg,
                    self.prompt,
                    max_digits=1,
                    first_digit_timeout=self.timeout,
                    inter_digit_timeout=self.timeout,
                    terminators="",
                    barge_in=self.barge_in,
                    buffer=digits_in,
                )
                if got.reason is CollectEnd.LEG_CLOSED:
                    return MenuResult(MenuEnd.LEG_CLOSED, None, attempt, invalid, no_input)
                if got.reason is CollectEnd.COMPLETE and got.digits in self.choices:
                    return MenuResult(MenuEnd.CHOSEN, got.digits, attempt, invalid, no_input)
                if got.reason is CollectEnd.COMPLETE:
                    invalid += 1
                    # A burst of wrong keys must not answer the next attempts on its own.
                    digits_in.clear()
                    retry_prompt = self.invalid_prompt
                else:
                    no_input += 1
                    retry_prompt = self.no_input_prompt
                if retry_prompt and not (self.barge_in and digits_in.pending):
                    played = await play(self.leg, retry_prompt, barge_in=self.barge_in)
                    if played.reason is PlaybackEnd.LEG_CLOSED:
                        return MenuResult(MenuEnd.LEG_CLOSED, None, attempt, invalid, no_input)
            return MenuResult(MenuEnd.DEFAULT, None, self.retries + 1, invalid, no_input)
        finally:
            if attached_here:
                digits_in.detach()
