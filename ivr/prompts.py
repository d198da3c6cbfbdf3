"""The helpline's prompt catalogue: its languages, the prompts it speaks and how it says numbers.

This is the helpline's side of prompts, next to the dialplan that plays them. The audio itself
lives in `recordings/<lang>/<name>.wav` and is loaded and played by `pbx.media.prompts`
(`PromptLibrary`), which knows nothing of these names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = [
    "CALLER_PROMPTS",
    "DIGIT_PROMPTS",
    "FALLBACK_LANGUAGE",
    "LANGUAGES",
    "MAX_SPOKEN_NUMBER",
    "REQUIRED_PROMPTS",
    "VOLUNTEER_PROMPTS",
    "KnownPrompts",
    "PromptAudio",
    "number_names",
    "playlist",
    "position_names",
    "wait_time_names",
]

LANGUAGES = ("nl", "ar", "fa", "tr")  # a plan without `languages:` uses these; the first leads
FALLBACK_LANGUAGE = "nl"  # a language lacking a prompt plays this one, so it must have them all
MAX_SPOKEN_NUMBER = 20  # digit prompts go up to 20; beyond, no number is spoken

CALLER_PROMPTS: tuple[str, ...] = (
    "welcome",
    "language_menu",
    "closed",
    "all_busy_hold",
    "position_intro",
    "position_outro",
    "position_next",
    "wait_intro",
    "minutes",
    "minute",
    "wait_unknown",
    "comfort_1",
    "comfort_2",
    "comfort_3",
    "overflow_national",
    "max_wait_message",
    "overflow_to_dutch",
    "info_line_open",
    "info_line_closed",
    "voicemail_instructions",
    "voicemail_saved",
    "voicemail_callback",
    "voicemail_kept_intro",
    "voicemail_kept_outro",
    "day",
    "days",
    "voicemail_unavailable",
    "invalid_key",
    "no_input",
    "goodbye",
    "partner_greeting",
    "night_line_113",
    "transfer_113",
    "transfer_info_line",
    "transfer_failed",
    "volunteer_lost",
    "volunteer_lost_goodbye",
    "handover_hold",
)
DIGIT_PROMPTS: tuple[str, ...] = tuple(f"digit_{n}" for n in range(MAX_SPOKEN_NUMBER + 1))
VOLUNTEER_PROMPTS: tuple[str, ...] = (
    "shift_login_ok",
    "shift_logout_ok",
    "paused",
    "resumed",
    "enter_pin",
    "wrong_pin",
    "pin_locked",
    "auto_paused",
    "not_logged_in",
    "time_limit_notice",
    "queue_announce",
    "queue_announce_113",
    "queue_announce_partner",
    "handover_busy",
    "handover_unreachable",
    "handover_no_answer",
    "handover_refused",
)
REQUIRED_PROMPTS: tuple[str, ...] = CALLER_PROMPTS + DIGIT_PROMPTS + VOLUNTEER_PROMPTS


class KnownPrompts(Protocol):
    """Which prompts are recorded in which language: what the dialplan loader checks against
    (`pbx.media.prompts.PromptLibrary` fits). The caller hands it in."""

    def has(self, lang: str, name: str, *, fallback: bool = True) -> bool: ...


class PromptAudio(Protocol):
    """The audio of a prompt in a language (`pbx.media.prompts.PromptLibrary` fits)."""

    def get(self, lang: str, name: str) -> bytes: ...


def playlist(audio: PromptAudio, lang: str, names: Iterable[str]) -> list[bytes]:
    """The audio of `names`, in order, in `lang`."""
    return [audio.get(lang, name) for name in names]


def number_names(n: int) -> list[str]:
    """The prompts saying `n`; values are clamped to 0..MAX_SPOKEN_NUMBER."""
    n = min(max(n, 0), MAX_SPOKEN_NUMBER)
    return [f"digit_{n}"]


def position_names(n: int) -> list[str]:
    """ "You are number n in line"; n <= 1 says "you are next".

    Beyond MAX_SPOKEN_NUMBER a number would be a lie, so it says the wait is unknown.
    """
    if n <= 1:
        return ["position_next"]
    if n > MAX_SPOKEN_NUMBER:
        return ["wait_unknown"]
    return ["position_intro", *number_names(n), "position_outro"]


def wait_time_names(lang: str, minutes: int | None) -> list[str]:
    """ "The expected waiting time is about n minutes", in each language's grammar.

    None or more than MAX_SPOKEN_NUMBER minutes says the wait is unknown (honest rather than a
    clamped figure); less than a minute is spoken as one minute.
    """
    if minutes is None or minutes > MAX_SPOKEN_NUMBER:
        return ["wait_unknown"]
    minutes = max(minutes, 1)
    if lang == "ar":
        # Arabic: "about a minute" has no numeral; 3..10 take the plural, others the singular.
        if minutes == 1:
            return ["wait_intro", "minute"]
        unit = "minutes" if 3 <= minutes <= 10 else "minute"
    else:
        # Dutch distinguishes 1 from many; Farsi and Turkish use the singular after any
        # numeral, so their "minutes" and "minute" prompts say the same word.
        unit = "minute" if minutes == 1 else "minutes"
    return ["wait_intro", *number_names(minutes), unit]
