"""Prompts: the committed recordings, the library the PBX plays from, conversion and generation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import wave
from array import array
from pathlib import Path

import pytest

from ivr.prompts import (
    DIGIT_PROMPTS,
    LANGUAGES,
    REQUIRED_PROMPTS,
    number_names,
    playlist,
    position_names,
    wait_time_names,
)
from pbx.media.audioconvert import AudioConvertError, convert_to_telephony
from pbx.media.promptgen import generate_prompts, is_generated, split_segments, tts_text
from pbx.media.prompts import (
    DEFAULT_RECORDINGS,
    TEXT_FILE,
    PromptLibrary,
    read_prompt_texts,
)
from pbx.media.tones import dominant_frequency, goertzel_power, rms, sine

REPO = Path(__file__).resolve().parents[1]
_VENV_HELPLINE = REPO / ".venv" / "bin" / "helpline"
HELPLINE = _VENV_HELPLINE if _VENV_HELPLINE.exists() else Path(sys.executable).parent / "helpline"
FULL_SCALE = 32768
MARKER = re.compile(r"\[(nl|ar|fa|tr)\]")


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary(DEFAULT_RECORDINGS)


def wav_params(path: Path) -> tuple[int, int, int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes())


def write_wav(path: Path, pcm: bytes, rate: int = 8000, channels: int = 1, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)


def peak(pcm: bytes) -> int:
    return max(abs(v) for v in array("h", pcm))


def helpline(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELPLINE), *map(str, args)], capture_output=True, text=True, timeout=120
    )


# --- The committed recordings -------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_has_every_required_prompt(library: PromptLibrary, lang: str) -> None:
    missing = set(REQUIRED_PROMPTS) - library.names(lang)
    assert not missing, f"{lang} lacks {sorted(missing)}"
    texts = read_prompt_texts(DEFAULT_RECORDINGS / lang / TEXT_FILE)
    assert set(REQUIRED_PROMPTS) <= set(texts)
    # Every scripted line is recorded and every recording is scripted (translators work from it).
    assert set(texts) == library.names(lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_prompt_is_telephony_audible_and_plausibly_long(
    library: PromptLibrary, lang: str
) -> None:
    for name in sorted(library.names(lang)):
        path = DEFAULT_RECORDINGS / lang / f"{name}.wav"
        rate, channels, width, pcm = wav_params(path)
        assert (rate, channels, width) == (8000, 1, 2), path
        assert pcm == library.get(lang, name)
        level = rms(pcm) / FULL_SCALE
        assert level > 0.02, f"{path} is (nearly) silent: rms {level:.4f}"
        # Normalised to about -3 dBFS peak, never clipping.
        assert 0.5 < peak(pcm) / FULL_SCALE < 0.8, path
        seconds = len(pcm) / 16000
        longest = 2.0 if name in DIGIT_PROMPTS else 20.0
        assert 0.25 <= seconds <= longest, f"{path}: {seconds:.2f} s"
        spoken = re.sub("[\u064b-\u0652]", "", MARKER.sub("", library.text(lang, name)))
        if len(spoken) >= 20:  # a WAV that does not match its text is far off this rate
            per_char = seconds / len(spoken)
            assert 0.03 <= per_char <= 0.25, f"{path}: {per_char:.3f} s/char for {spoken!r}"


@pytest.mark.parametrize("lang", ["ar", "fa"])
def test_arabic_script_languages_are_written_in_arabic_script(
    library: PromptLibrary, lang: str
) -> None:
    for name in REQUIRED_PROMPTS:
        if name == "language_menu":
            continue  # shared by all languages, each option in its own language
        segments = split_segments(library.text(lang, name), lang)
        own = " ".join(s.text for s in segments if s.voice == lang)
        assert re.search("[\u0600-\u06ff]", own), f"{lang}/{name}"
        assert not re.search("[A-Za-z]", own), f"{lang}/{name}: Latin outside a [nl] name"
        # Only names (De Luisterlijn, Vraagwijzer) switch to the Dutch voice.
        assert {s.voice for s in segments} <= {lang, "nl"}


def test_language_menu_offers_each_language_in_its_own_voice(library: PromptLibrary) -> None:
    for lang in LANGUAGES:
        menu = library.text(lang, "language_menu")
        assert [s.voice for s in split_segments(menu, "nl")] == ["nl", "ar", "fa", "tr"]
    assert library.duration("nl", "language_menu") > 4 * library.duration("nl", "digit_1")


def test_turkish_and_farsi_use_the_singular_after_numbers(library: PromptLibrary) -> None:
    for lang in ("tr", "fa"):
        assert library.text(lang, "minutes") == library.text(lang, "minute")


# --- PromptLibrary ----------------------------------------------------------------------


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    write_wav(tmp_path / "nl" / "welcome.wav", sine(440, 300))
    write_wav(tmp_path / "nl" / "goodbye.wav", sine(500, 300))
    write_wav(tmp_path / "ar" / "welcome.wav", sine(600, 200))
    for n in range(21):
        write_wav(tmp_path / "nl" / f"digit_{n}.wav", sine(300 + 10 * n, 100))
    write_wav(tmp_path / "ar" / "digit_3.wav", sine(900, 100))
    (tmp_path / "nl" / TEXT_FILE).write_text("welcome: Welkom\n# comment\n\ngoodbye: Dag\n")
    (tmp_path / "ignored.txt").write_text("not a language")
    return tmp_path


def test_library_serves_own_language_then_dutch(small_dir: Path) -> None:
    lib = PromptLibrary(small_dir)
    assert lib.languages() == {"nl", "ar"}
    assert lib.names("ar") == {"welcome", "digit_3"}
    assert lib.get("ar", "welcome") == sine(600, 200)
    assert lib.get("ar", "goodbye") == sine(500, 300)  # Arabic lacks it: Dutch
    assert lib.get("tr", "welcome") == sine(440, 300)  # unknown language: Dutch
    assert lib.has("ar", "goodbye") and not lib.has("ar", "goodbye", fallback=False)
    assert not lib.has("ar", "nonexistent")
    assert lib.duration("nl", "welcome") == pytest.approx(0.3)
    assert lib.text("ar", "goodbye") == "Dag"


def test_library_missing_everywhere_is_a_clear_key_error(small_dir: Path) -> None:
    lib = PromptLibrary(small_dir)
    with pytest.raises(KeyError, match="comfort_9.*'ar'.*'nl'"):
        lib.get("ar", "comfort_9")


def test_number_playlists_clamp_to_twenty(small_dir: Path) -> None:
    lib = PromptLibrary(small_dir)
    assert playlist(lib, "nl", number_names(7)) == [sine(370, 100)]
    assert playlist(lib, "ar", number_names(3)) == [sine(900, 100)]
    assert playlist(lib, "ar", number_names(4)) == [sine(340, 100)]  # falls back to Dutch
    assert playlist(lib, "nl", number_names(57)) == playlist(lib, "nl", number_names(20))
    assert playlist(lib, "nl", number_names(-2)) == playlist(lib, "nl", number_names(0))


def test_wait_and_position_playlists(library: PromptLibrary) -> None:
    g = library.get
    assert playlist(library, "nl", wait_time_names("nl", 5)) == [
        g("nl", "wait_intro"),
        g("nl", "digit_5"),
        g("nl", "minutes"),
    ]
    assert playlist(library, "nl", wait_time_names("nl", 1)) == [
        g("nl", "wait_intro"),
        g("nl", "digit_1"),
        g("nl", "minute"),
    ]
    no_false_figure = [g("nl", "wait_unknown")]
    assert playlist(library, "nl", wait_time_names("nl", 45)) == no_false_figure
    assert playlist(library, "nl", wait_time_names("nl", None)) == [g("nl", "wait_unknown")]
    assert playlist(library, "ar", wait_time_names("ar", 1)) == [
        g("ar", "wait_intro"),
        g("ar", "minute"),
    ]
    assert playlist(library, "ar", wait_time_names("ar", 5))[-1] == g("ar", "minutes")
    assert playlist(library, "ar", wait_time_names("ar", 15))[-1] == g("ar", "minute")
    assert playlist(library, "tr", position_names(4)) == [
        g("tr", "position_intro"),
        g("tr", "digit_4"),
        g("tr", "position_outro"),
    ]
    assert playlist(library, "fa", position_names(1)) == [g("fa", "position_next")]


@pytest.mark.parametrize(
    ("rate", "channels", "width", "problem"),
    [(16000, 1, 2, "16000 Hz"), (8000, 2, 2, "2 channel"), (8000, 1, 1, "8-bit")],
)
def test_library_refuses_non_telephony_wav_naming_the_file(
    small_dir: Path, rate: int, channels: int, width: int, problem: str
) -> None:
    bad = small_dir / "ar" / "goodbye.wav"
    write_wav(bad, bytes(rate // 10 * channels * width), rate, channels, width)
    with pytest.raises(ValueError, match=rf"ar/goodbye\.wav.*{problem}"):
        PromptLibrary(small_dir)


def test_library_refuses_a_file_that_is_not_a_wav(small_dir: Path) -> None:
    (small_dir / "nl" / "closed.wav").write_bytes(b"ID3\x03 this is an mp3 renamed")
    with pytest.raises(ValueError, match=r"nl/closed\.wav.*not a PCM WAV"):
        PromptLibrary(small_dir)


# --- convert_to_telephony ---------------------------------------------------------------


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=60)


CANDIDATES = [300.0, 440.0, 700.0, 1000.0, 1500.0, 2200.0, 3000.0]


@pytest.mark.parametrize(
    ("suffix", "rate", "channels", "freq"),
    [("mp3", 44100, 2, 440), ("wav", 16000, 1, 1000), ("ogg", 48000, 2, 700)],
)
def test_convert_gives_telephony_wav_with_the_same_tone(
    tmp_path: Path, suffix: str, rate: int, channels: int, freq: int
) -> None:
    source = tmp_path / f"tone.{suffix}"
    raw = tmp_path / "raw.wav"
    run("sox", "-n", "-r", rate, "-c", channels, "-b", 16, raw, "synth", "1.0", "sine", freq,
        "vol", "0.2")  # fmt: skip
    if suffix == "wav":
        raw.rename(source)
    else:
        run("ffmpeg", "-loglevel", "error", "-y", "-i", raw, source)
    out = tmp_path / "out" / "tone.wav"
    convert_to_telephony(source, out)
    out_rate, out_channels, out_width, pcm = wav_params(out)
    assert (out_rate, out_channels, out_width) == (8000, 1, 2)
    assert len(pcm) / 16000 == pytest.approx(1.0, abs=0.08)
    assert dominant_frequency(pcm, CANDIDATES) == freq
    assert peak(pcm) / FULL_SCALE == pytest.approx(0.708, abs=0.03)  # -3 dBFS


def test_convert_filters_instead_of_aliasing(tmp_path: Path) -> None:
    # Left 440 Hz, right 5 kHz at 44.1 kHz: 5 kHz does not fit in 8 kHz telephony and must be
    # filtered out, not folded back to 3 kHz as a naive resampler would.
    source = tmp_path / "two.wav"
    run("sox", "-n", "-r", 44100, "-c", 2, "-b", 16, source, "synth", "1.0", "sine", 440,
        "sine", 5000, "vol", "0.4")  # fmt: skip
    out = tmp_path / "out.wav"
    convert_to_telephony(source, out)
    pcm = wav_params(out)[3]
    assert goertzel_power(pcm, 3000) < 0.001 * goertzel_power(pcm, 440)


def test_convert_trims_silence_at_the_ends(tmp_path: Path) -> None:
    source = tmp_path / "padded.wav"
    write_wav(source, bytes(16000) + sine(440, 500, rate=16000) + bytes(32000), rate=16000)
    out = tmp_path / "out.wav"
    convert_to_telephony(source, out)
    assert len(wav_params(out)[3]) / 16000 == pytest.approx(0.5 + 2 * 0.08, abs=0.03)
    convert_to_telephony(source, out, trim_silence=False)
    assert len(wav_params(out)[3]) / 16000 == pytest.approx(2.0, abs=0.02)


def test_convert_rejects_unreadable_and_silent_input(tmp_path: Path) -> None:
    garbage = tmp_path / "message.mp3"
    garbage.write_bytes(b"definitely not audio" * 50)
    with pytest.raises(AudioConvertError, match=r"message\.mp3: not a readable audio file"):
        convert_to_telephony(garbage, tmp_path / "out.wav")
    with pytest.raises(AudioConvertError, match=r"nothere\.wav: no such audio file"):
        convert_to_telephony(tmp_path / "nothere.wav", tmp_path / "out.wav")
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, bytes(8000))
    with pytest.raises(AudioConvertError, match="silent"):
        convert_to_telephony(quiet, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


# --- Generation ---------------------------------------------------------------------------


def test_tts_text_puts_shadda_before_its_vowel() -> None:
    # NFC order is vowel then shadda; espeak-ng drops the vowel unless shadda comes first.
    assert tts_text("\u062a\u064e\u0651") == "\u062a\u0651\u064e"
    segments = split_segments("Welkom [ar] مرحبا [nl] De Luisterlijn [ar] ، ", "fa")
    assert [(s.voice, s.text) for s in segments] == [
        ("fa", "Welkom"),
        ("ar", "مرحبا"),
        ("nl", "De Luisterlijn"),
    ]


def test_generate_speaks_new_and_changed_texts_but_keeps_real_recordings(tmp_path: Path) -> None:
    texts = tmp_path / "nl" / TEXT_FILE
    texts.parent.mkdir()
    texts.write_text("welcome: Welkom.\nclosed: Gesloten. [tr] Kapalı.\n", encoding="utf-8")
    first = generate_prompts(tmp_path, ["nl"], force=False)
    assert sorted(p.name for p in first) == ["closed.wav", "welcome.wav"]
    for path in first:
        rate, channels, width, pcm = wav_params(path)
        assert (rate, channels, width) == (8000, 1, 2) and rms(pcm) > 500
        assert is_generated(path)
    assert generate_prompts(tmp_path, None, force=False) == []  # nothing changed

    # An admin records `welcome` for real, then both texts change: only `closed` is redone.
    real = tmp_path / "take.wav"
    write_wav(real, sine(440, 700, rate=8000))
    convert_to_telephony(real, tmp_path / "nl" / "welcome.wav")
    recorded = (tmp_path / "nl" / "welcome.wav").read_bytes()
    assert not is_generated(tmp_path / "nl" / "welcome.wav")
    texts.write_text("welcome: Hallo.\nclosed: Dicht.\n", encoding="utf-8")
    assert [p.name for p in generate_prompts(tmp_path, ["nl"], force=False)] == ["closed.wav"]
    assert (tmp_path / "nl" / "welcome.wav").read_bytes() == recorded
    assert [p.name for p in generate_prompts(tmp_path, ["nl"], force=True)] == [
        "welcome.wav",
        "closed.wav",
    ]
    assert (tmp_path / "nl" / "welcome.wav").read_bytes() != recorded
    manifest = json.loads((tmp_path / "nl" / "generated.json").read_text())
    assert set(manifest["prompts"]) == {"welcome", "closed"}


# --- CLI ----------------------------------------------------------------------------------


def test_cli_list_shows_names_durations_and_nothing_missing() -> None:
    result = helpline("prompts", "list", "--lang", "ar")
    assert result.returncode == 0, result.stderr
    assert "[ar] " in result.stdout and "missing: none" in result.stdout
    assert re.search(r"^\s+welcome\s+\d+\.\d\d s\s+(synthetic|recorded)$", result.stdout, re.M)


def test_cli_list_reports_missing_prompts(small_dir: Path) -> None:
    result = helpline("prompts", "list", "--dir", small_dir)
    assert result.returncode == 1
    assert re.search(r"^\s+missing \(\d+\): .*\bcomfort_1\b", result.stdout, re.M)


def test_cli_convert_and_generate(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    run("sox", "-n", "-r", 22050, "-c", 2, source, "synth", "0.6", "sine", 1000)
    result = helpline("prompts", "convert", source, tmp_path / "nl" / "goodbye.wav")
    assert result.returncode == 0, result.stderr
    assert "8000 Hz mono 16-bit" in result.stdout
    assert wav_params(tmp_path / "nl" / "goodbye.wav")[:3] == (8000, 1, 2)

    bad = helpline("prompts", "convert", tmp_path / "missing.ogg", tmp_path / "x.wav")
    assert bad.returncode == 1 and "missing.ogg" in bad.stderr

    (tmp_path / "nl" / TEXT_FILE).write_text("goodbye: Tot ziens.\nno_input: Niets gehoord.\n")
    gen = helpline("prompts", "generate", "--dir", tmp_path, "--lang", "nl")
    assert gen.returncode == 0, gen.stderr
    assert "no_input.wav" in gen.stdout and "goodbye.wav" not in gen.stdout  # real recording kept
    assert "1 prompt(s) generated" in gen.stdout


def test_espeak_has_the_four_voices() -> None:
    assert shutil.which("espeak-ng"), "espeak-ng missing: run scripts/bootstrap.sh"
    voices = subprocess.run(
        ["espeak-ng", "--voices"], capture_output=True, text=True, check=True
    ).stdout
    for lang in LANGUAGES:
        assert re.search(rf"^\s*\d+\s+{lang}\s", voices, re.M), lang
