"""Recorded prompts, loaded once at start-up and served as raw telephony PCM.

Layout: `recordings/<lang>/<name>.wav` (8 kHz, mono, 16-bit PCM) plus `PROMPTS.txt` with the
text of every prompt. A fallback language (Dutch) stands in: a language that lacks a prompt
plays the fallback's one rather than silence, so a half-translated language never leaves a
caller hanging.

This is the media side only: which prompts the helpline needs, its languages and how it says
numbers are its catalogue, `ivr.prompts`, next to the dialplan.
"""

from __future__ import annotations

import wave
from pathlib import Path

from pbx.media.audioconvert import TELEPHONY_CHANNELS, TELEPHONY_RATE, TELEPHONY_SAMPLE_WIDTH

DEFAULT_RECORDINGS = Path(__file__).parents[2] / "recordings"
TEXT_FILE = "PROMPTS.txt"

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

    def __init__(self, recordings: Path = DEFAULT_RECORDINGS, *, fallback: str = "nl") -> None:
        # "nl": the helpline's fallback (ivr.prompts.self.fallback; media imports no ivr)
        self.directory = Path(recordings)
        self.fallback = fallback
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
        """Whether `get(lang, name)` finds audio (by default counting the fallback)."""
        if name in self._pcm.get(lang, {}):
            return True
        return fallback and name in self._pcm.get(self.fallback, {})

    def get(self, lang: str, name: str) -> bytes:
        """PCM of prompt `name` in `lang`, else the fallback's; KeyError if neither exists."""
        for candidate in (lang, self.fallback):
            pcm = self._pcm.get(candidate, {}).get(name)
            if pcm is not None:
                return pcm
        raise KeyError(
            f"prompt {name!r} not found for language {lang!r} nor fallback "
            f"{self.fallback!r} in {self.directory}"
        )

    def duration(self, lang: str, name: str) -> float:
        """Seconds of audio `get(lang, name)` returns."""
        return len(self.get(lang, name)) / BYTES_PER_SECOND

    def text(self, lang: str, name: str) -> str:
        """What the prompt says, from PROMPTS.txt (with the fallback); KeyError if unknown.

        Also the source for text-only uses such as `time_limit_notice` on a handset display.
        """
        for candidate in (lang, self.fallback):
            text = self._texts.get(candidate, {}).get(name)
            if text is not None:
                return text
        raise KeyError(f"no text for prompt {name!r} in language {lang!r} nor {self.fallback!r}")
