"""G.711 codec: reference values, agreement with sox, and audio content through transcoding."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pbx.media import g711, tones
from pbx.media.g711 import SILENCE, Codec

ALL_CODES = bytes(range(256))
ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


def samples(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


def test_payload_types_are_the_rtp_static_ones() -> None:
    assert (int(Codec.PCMU), int(Codec.PCMA)) == (0, 8)


@pytest.mark.parametrize(
    ("codec", "code", "linear"),
    [
        # G.711 reference decoder outputs (as in the Sun/ITU reference and audioop)
        (Codec.PCMU, 0xFF, 0),
        (Codec.PCMU, 0x7F, 0),
        (Codec.PCMU, 0x80, 32124),
        (Codec.PCMU, 0x00, -32124),
        (Codec.PCMU, 0xFE, 8),
        (Codec.PCMU, 0x7E, -8),
        (Codec.PCMA, 0xD5, 8),
        (Codec.PCMA, 0x55, -8),
        (Codec.PCMA, 0xAA, 32256),
        (Codec.PCMA, 0x2A, -32256),
    ],
)
def test_decode_reference_values(codec: Codec, code: int, linear: int) -> None:
    assert samples(g711.decode(codec, bytes([code]))) == [linear]


@pytest.mark.parametrize(
    ("codec", "linear", "code"),
    [
        (Codec.PCMU, 0, 0xFF),
        (Codec.PCMU, 32767, 0x80),
        (Codec.PCMU, -32768, 0x00),
        (Codec.PCMA, 0, 0xD5),
        (Codec.PCMA, 32767, 0xAA),
        (Codec.PCMA, -32768, 0x2A),
    ],
)
def test_encode_reference_values(codec: Codec, linear: int, code: int) -> None:
    assert g711.encode(codec, struct.pack("<h", linear)) == bytes([code])


@pytest.mark.parametrize("codec", list(Codec))
def test_silence_byte_decodes_to_near_zero(codec: Codec) -> None:
    assert g711.encode(codec, tones.silence(20)) == bytes([SILENCE[codec]]) * 160
    assert all(abs(s) <= 8 for s in samples(g711.decode(codec, bytes([SILENCE[codec]]))))


@pytest.mark.parametrize("codec", list(Codec))
def test_every_code_survives_decode_then_encode(codec: Codec) -> None:
    again = g711.encode(codec, g711.decode(codec, ALL_CODES))
    for code in range(256):
        if codec is Codec.PCMU and code == 0x7F:  # "negative zero" decodes to 0 -> 0xFF
            assert again[code] == 0xFF
        else:
            assert again[code] == code


@pytest.mark.parametrize("codec", list(Codec))
def test_quantisation_error_is_bounded_over_the_whole_range(codec: Codec) -> None:
    decoded = samples(g711.decode(codec, g711.encode(codec, ALL_SAMPLES)))
    for x, y in zip(range(-32768, 32768), decoded, strict=True):
        # Logarithmic companding: error below ~1/16 of the value plus the finest step.
        assert abs(x - y) <= abs(x) / 16 + 16, (x, y)
    assert decoded == sorted(decoded)  # monotonic


def _sox(args: list[str], data: bytes, tmp_path: Path) -> bytes:
    src, dst = tmp_path / "in.raw", tmp_path / "out.raw"
    src.write_bytes(data)
    subprocess.run(
        ["sox", "-D", *args[0].split(), str(src), *args[1].split(), str(dst)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return dst.read_bytes()


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
@pytest.mark.parametrize(("codec", "sox_name"), [(Codec.PCMU, "u-law"), (Codec.PCMA, "a-law")])
def test_agrees_with_sox(codec: Codec, sox_name: str, tmp_path: Path) -> None:
    sox_decoded = _sox(
        [f"-t raw -r 8000 -e {sox_name} -b 8 -c 1", "-t raw -e signed -b 16"], ALL_CODES, tmp_path
    )
    assert g711.decode(codec, ALL_CODES) == sox_decoded
    sox_encoded = _sox(
        ["-t raw -r 8000 -e signed -b 16 -c 1", f"-t raw -e {sox_name}"], ALL_SAMPLES, tmp_path
    )
    ours = g711.encode(codec, ALL_SAMPLES)
    # sox rounds at decision boundaries where the G.711 reference truncates: the decoded
    # values may differ by one quantisation step there, and only there.
    ours_lin = samples(g711.decode(codec, ours))
    sox_lin = samples(g711.decode(codec, sox_encoded))
    differing = 0
    for x, a, b in zip(range(-32768, 32768), ours_lin, sox_lin, strict=True):
        if a != b:
            differing += 1
            assert abs(a - b) <= abs(x) / 16 + 16, (x, a, b)
    assert differing < len(ours) // 50


@pytest.mark.parametrize(("src", "dst"), [(Codec.PCMA, Codec.PCMU), (Codec.PCMU, Codec.PCMA)])
def test_transcode_equals_decode_then_encode(src: Codec, dst: Codec) -> None:
    assert g711.transcode(ALL_CODES, src, dst) == g711.encode(dst, g711.decode(src, ALL_CODES))


@pytest.mark.parametrize("codec", list(Codec))
def test_transcode_to_same_codec_is_identity(codec: Codec) -> None:
    assert g711.transcode(ALL_CODES, codec, codec) == ALL_CODES


@pytest.mark.parametrize(("src", "dst"), [(Codec.PCMA, Codec.PCMU), (Codec.PCMU, Codec.PCMA)])
@pytest.mark.parametrize("freq", [425.0, 1000.0, 2000.0])
def test_tone_survives_encode_transcode_decode(src: Codec, dst: Codec, freq: float) -> None:
    pcm = tones.sine(freq, 200, amplitude=0.3)
    out = g711.decode(dst, g711.transcode(g711.encode(src, pcm), src, dst))
    assert len(out) == len(pcm)
    candidates = [350.0, 425.0, 697.0, 1000.0, 1209.0, 1633.0, 2000.0]
    assert tones.dominant_frequency(out, candidates) == freq
    assert tones.rms(out) == pytest.approx(tones.rms(pcm), rel=0.05)


def test_dtmf_dual_tone_keeps_both_components_through_pcmu() -> None:
    pcm = tones.dual_tone(770, 1336, 100)
    out = g711.ulaw_decode(g711.ulaw_encode(pcm))
    low = tones.dominant_frequency(out, [697, 770, 852, 941])
    high = tones.dominant_frequency(out, [1209, 1336, 1477, 1633])
    assert (low, high) == (770, 1336)


def test_odd_length_pcm_is_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        g711.ulaw_encode(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="even"):
        g711.alaw_encode(b"\x01")


def test_empty_input() -> None:
    for codec in Codec:
        assert g711.encode(codec, b"") == b""
        assert g711.decode(codec, b"") == b""


def test_accepts_bytearray_and_memoryview() -> None:
    pcm = tones.sine(1000, 20)
    assert g711.alaw_encode(bytearray(pcm)) == g711.alaw_encode(pcm)
    assert g711.ulaw_encode(memoryview(pcm)) == g711.ulaw_encode(pcm)
