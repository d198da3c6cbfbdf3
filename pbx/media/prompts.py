"""Recorded prompts, loaded once at start-up and served as raw telephony PCM.

Layout: `recordings/<lang>/<name>.wav` (8 kHz, mono, 16-bit PCM) plus `PROMPTS.txt` with the
text of every prompt. Dutch is the fallback: a language that lacks a prompt plays the Dutch
one rather than silence, so a half-translated language never leaves a caller hanging.
"""

from __future__ import annotations

import wave
from pathlib import Path

from pbx.media.audioconvert import TELEPHONY_CHANNELS, TELEPHONY_RATE, TELEPHONY_SAMPLE_WIDTH

DEFAULT_RECORDINGS = Path(__file__).parents[2] / "recordings"
TEXT_FILE = "PROMPTS.txt"

LANGUAGES = ("nl", "ar", "fa", "tr")
FALLBACK_LANGUAGE = "nl"
MAX_SPOKEN_NUMBER = 20

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
    "info_line_open",
    "info_line_closed",
    "voicemail_instructions",
    "voicemail_saved",
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
)
REQUIRED_PROMPTS: tuple[str, ...] = CALLER_PROMPTS + DIGIT_PROMPTS + VOLUNTEER_PROMPTS

BYTES_PER_SECOND = TELEPHONY_RATE * TELEPHONY_SAMPLE_WIDTH * TELEPHONY_CHANNELS


def read_telephony_wav(path: Path) -> bytes:
    """Return the PCM frames of `path`, or raise ValueError naming the file if it is not an
    8 kHz mono 16-bit PCM WAV with at least some audio in it."""
    try:
        with wave.open(str(path), "rb") as wav:
            params = wav.getparams()
            pcm = wav.readframes(params.nframes)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    found = (params.framerate, params.nchannels, params.sampwidth * 8)
    wanted = (TELEPHONY_RATE, TELEPHONY_CHANNELS, TELEPHONY_SAMPLE_WIDTH * 8)
    if found != wanted:
        raise ValueError(
            f"{path}: is {found[0]} Hz, {found[1]} channel(s), {found[2]}-bit; prompts must be "
            f"{wanted[0]} Hz, mono, {wanted[2]}-bit PCM (use `helpline prompts convert`)"
        )
    if not pcm:
        raise ValueError(f"{path}: contains no audio")
    return pcm


def read_prompt_texts(path: Path) -> dict[str, str]:
    """Parse a PROMPTS.txt: `name: text` per line; blank lines and `#` comments are skipped."""
    texts: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, text = line.partition(":")
        name, text = name.strip(), text.strip()
        if not sep or not name.isidentifier() or not text:
            raise ValueError(f"{path}:{lineno}: expected `name: text`, got {raw!r}")
        if name in texts:
            raise ValueError(f"{path}:{lineno}: prompt {name!r} is defined twice")
        texts[name] = text
    return texts


class PromptLibrary:
    """All prompts of a recordings directory, held in memory as 8 kHz 16-bit mono PCM."""

    def __init__(self, recordings: Path = DEFAULT_RECORDINGS) -> None:
        self.directory = Path(recordings)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory}: recordings directory not found")
        self._pcm: dict[str, dict[str, bytes]] = {}
        self._texts: dict[str, dict[str, str]] = {}
        for lang_dir in sorted(self.directory.iterdir()):
            if not lang_dir.is_dir() or lang_dir.name.startswith("."):
                continue
            wavs = {wav.stem: read_telephony_wav(wav) for wav in sorted(lang_dir.glob("*.wav"))}
            text_file = lang_dir / TEXT_FILE
            texts = read_prompt_texts(text_file) if text_file.is_file() else {}
            if wavs or texts:
                self._pcm[lang_dir.name] = wavs
                self._texts[lang_dir.name] = texts

    def languages(self) -> set[str]:
        return set(self._pcm)

    def names(self, lang: str) -> set[str]:
        """Prompts recorded for `lang` itself (no fallback)."""
        return set(self._pcm.get(lang, {}))

    def has(self, lang: str, name: str, *, fallback: bool = True) -> bool:
        """Whether `get(lang, name)` finds audio (by default counting the Dutch fallback)."""
        if name in self._pcm.get(lang, {}):
            return True
        return fallback and name in self._pcm.get(FALLBACK_LANGUAGE, {})

    def get(self, lang: str, name: str) -> bytes:
        """PCM of prompt `name` in `lang`, else the Dutch one; KeyError if neither exists."""
        for candidate in (lang, FALLBACK_LANGUAGE):
            pcm = self._pcm.get(candidate, {}).get(name)
            if pcm is not None:
                return pcm
        raise KeyError(
            f"prompt {name!r} not found for language {lang!r} nor fallback "
            f"{FALLBACK_LANGUAGE!r} in {self.directory}"
        )

    def duration(self, lang: str, name: str) -> float:
        """Seconds of audio `get(lang, name)` returns."""
        return len(self.get(lang, name)) / BYTES_PER_SECOND

    def text(self, lang: str, name: str) -> str:
        """What the prompt says, from PROMPTS.txt (with the Dutch fallback); KeyError if unknown.

        Also the source for text-only uses such as `time_limit_notice` on a handset display.
        """
        for candidate in (lang, FALLBACK_LANGUAGE):
            text = self._texts.get(candidate, {}).get(name)
            if text is not None:
                return text
        raise KeyError(
            f"no text for prompt {name!r} in language {lang!r} nor {FALLBACK_LANGUAGE!r}"
        )

    def number(self, lang: str, n: int) -> list[bytes]:
        """A playlist saying `n`; values are clamped to 0..MAX_SPOKEN_NUMBER."""
        n = min(max(n, 0), MAX_SPOKEN_NUMBER)
        return [self.get(lang, f"digit_{n}")]

    def position(self, lang: str, n: int) -> list[bytes]:
        """Playlist "you are number n in line"; n <= 1 says "you are next".

        Beyond MAX_SPOKEN_NUMBER a number would be a lie, so it says the wait is unknown.
        """
        if n <= 1:
            return [self.get(lang, "position_next")]
        if n > MAX_SPOKEN_NUMBER:
            return [self.get(lang, "wait_unknown")]
        return [
            self.get(lang, "position_intro"),
            *self.number(lang, n),
            self.get(lang, "position_outro"),
        ]

    def wait_time(self, lang: str, minutes: int | None) -> list[bytes]:
        """Playlist "the expected waiting time is about n minutes", in each language's grammar.

        None or more than MAX_SPOKEN_NUMBER minutes says the wait is unknown (honest rather
        than a clamped figure); less than a minute is spoken as one minute.
        """
        if minutes is None or minutes > MAX_SPOKEN_NUMBER:
            return [self.get(lang, "wait_unknown")]
        minutes = max(minutes, 1)
        intro = self.get(lang, "wait_intro")
        if lang == "ar":
            # Arabic: "about a minute" has no numeral; 3..10 take the plural, others the singular.
            if minutes == 1:
                return [intro, self.get(lang, "minute")]
            unit = "minutes" if 3 <= minutes <= 10 else "minute"
        else:
            # Dutch distinguishes 1 from many; Farsi and Turkish use the singular after any
            # numeral, so their "minutes" and "minute" prompts say the same word.
            unit = "minute" if minutes == 1 else "minutes"
        return [intro, *self.number(lang, minutes), self.get(lang, unit)]
