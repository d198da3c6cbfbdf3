"""SRTP (RFC 3711) sessions and SDES (RFC 4568) offer/answer, and SRTP media legs on loopback:
key presses (RFC 4733) and audio go through encrypted, a tampered packet never does."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from pbx.calls.media_session import MediaError, MediaFactory
from pbx.media import g711
from pbx.media.bridge import Bridge
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.offer_answer import (
    NegotiatedMedia,
    NoCommonCodec,
    SrtpRequired,
    answer_offer,
    build_offer,
    parse_answer,
)
from pbx.media.ports import PortPool
from pbx.media.rtp import RtpSender
from pbx.media.sdp import Direction, SessionDescription
from pbx.media.srtp import CryptoAttribute, LocalKeys, SrtpKeys, SrtpMode, SrtpSession, Suite
from pbx.media.tones import sine
from tests.helpers.audio import tone_share
from tests.helpers.polling import until

SUITES = list(Suite)


def packet(seq: int = 1) -> bytes:
    return RtpSender(ssrc=0x1234).packet_bytes(b"\xd5" * 160, Codec.PCMA, 160, False)[:2] + (
        seq.to_bytes(2, "big") + bytes(8) + b"\xd5" * 160
    )


def pair(suite: Suite) -> tuple[SrtpSession, SrtpSession]:
    a, b = os.urandom(suite.key_length), os.urandom(suite.key_length)
    return SrtpSession(SrtpKeys(suite, a, b)), SrtpSession(SrtpKeys(suite, b, a))


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_protected_packets_round_trip_and_tampering_is_dropped_and_counted(suite: Suite) -> None:
    ours, theirs = pair(suite)
    plain = packet(7)
    wire = ours.protect(plain)
    assert plain[12:] not in wire  # the payload is encrypted
    assert theirs.unprotect(wire) == plain
    assert theirs.unprotect(wire) is None and theirs.stats.replays == 1  # a replay
    tampered = bytearray(ours.protect(packet(8)))
    tampered[30] ^= 0x01
    assert theirs.unprotect(bytes(tampered)) is None
    assert theirs.stats.auth_failures == 1
    assert theirs.unprotect(packet(9)) is None  # plain RTP where SRTP was agreed
    assert theirs.stats.auth_failures == 2
    rtcp = bytes([0x80, 200, 0, 6]) + bytes(24)
    assert theirs.unprotect_rtcp(ours.protect_rtcp(rtcp)) == rtcp  # SRTCP


def test_crypto_lines_we_cannot_use_are_skipped() -> None:
    key = base64.b64encode(bytes(30)).decode()
    good = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31")
    assert good is not None and good.key == bytes(30) and good.tag == 1
    assert CryptoAttribute.parse(good.to_value()) == good
    for bad in (
        f"1 F8_128_HMAC_SHA1_80 inline:{key}",  # unsupported suite
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31|1:4",  # an MKI
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{key} KDR=1",  # session parameters
        f"1 AEAD_AES_128_GCM inline:{key}",  # 30 bytes where GCM-128 takes 28
        "x AES_CM_128_HMAC_SHA1_80 inline:!!!",
    ):
        assert CryptoAttribute.parse(bad) is None, bad


def offer_from_handset(proto: str, crypto: list[CryptoAttribute]) -> SessionDescription:
    offer = build_offer("127.0.0.2", 40000, crypto=crypto, savp=proto == "RTP/SAVP")
    return SessionDescription.parse(offer.to_bytes())


def test_answers_follow_the_policy() -> None:
    theirs = LocalKeys([Suite.AEAD_AES_128_GCM, Suite.AES_CM_128_HMAC_SHA1_80])
    ours = LocalKeys()
    savp = offer_from_handset("RTP/SAVP", theirs.offer())
    answer, media = answer_offer(savp, "127.0.0.1", 30000, srtp=SrtpMode.REQUIRE, keys=ours)
    # the handset's first suite that we allow, with our own key, under its tag
    assert media.srtp == SrtpKeys(
        Suite.AEAD_AES_128_GCM, ours.key(Suite.AEAD_AES_128_GCM), theirs.key(Suite.AEAD_AES_128_GCM)
    )
    assert answer.media[0].proto == "RTP/SAVP"
    assert (
        answer.media[0].attribute(
            "crypto",
        )
        is not None
    )
    assert answer.media[0].attribute("crypto").startswith("1 AEAD_AES_128_GCM inline:")  # type: ignore[union-attr]
    with pytest.raises(NoCommonCodec):  # SRTP off: an RTP/SAVP stream cannot be taken
        answer_offer(savp, "127.0.0.1", 30000, srtp=SrtpMode.OFF, keys=ours)

    best_effort = offer_from_handset("RTP/AVP", theirs.offer())
    answer, media = answer_offer(best_effort, "127.0.0.1", 30000, srtp=SrtpMode.OFFER, keys=ours)
    assert media.srtp is not None and answer.media[0].proto == "RTP/AVP"
    _, media = answer_offer(best_effort, "127.0.0.1", 30000, srtp=SrtpMode.OFF, keys=ours)
    assert media.srtp is None  # keys ignored (e.g. not over TLS)

    plain = offer_from_handset("RTP/AVP", [])
    _, media = answer_offer(plain, "127.0.0.1", 30000, srtp=SrtpMode.OFFER, keys=ours)
    assert media.srtp is None
    with pytest.raises(SrtpRequired):
        answer_offer(plain, "127.0.0.1", 30000, srtp=SrtpMode.REQUIRE, keys=ours)


def test_answers_to_our_offers() -> None:
    ours, theirs = LocalKeys(), LocalKeys([Suite.AES_CM_128_HMAC_SHA1_80])
    offer = build_offer("127.0.0.1", 30000, crypto=ours.offer(), savp=True)
    answer, _ = answer_offer(
        SessionDescription.parse(offer.to_bytes()), "127.0.0.2", 40000,
        srtp=SrtpMode.REQUIRE, keys=theirs,
    )  # fmt: skip
    media = parse_answer(answer, offer)
    suite = Suite.AES_CM_128_HMAC_SHA1_80
    assert media.srtp == SrtpKeys(suite, ours.key(suite), theirs.key(suite))
    plain_answer, _ = answer_offer(
        SessionDescription.parse(build_offer("127.0.0.1", 30000).to_bytes()), "127.0.0.2", 40000
    )
    with pytest.raises(SrtpRequired):
        parse_answer(plain_answer, offer)


def negotiated(port: int, keys: SrtpKeys) -> NegotiatedMedia:
    return NegotiatedMedia("127.0.0.1", port, Codec.PCMA, 101, 20, Direction.SENDRECV, srtp=keys)


async def test_srtp_legs_carry_audio_and_key_presses_and_drop_a_tampered_packet() -> None:
    suite = Suite.AEAD_AES_128_GCM
    a_key, b_key = os.urandom(suite.key_length), os.urandom(suite.key_length)
    failures: list[str] = []
    pool = PortPool("127.0.0.1", 41000, 41998)
    a = await MediaLeg.open(pool, on_srtp_failure=lambda: failures.append("a"))
    b = await MediaLeg.open(pool, on_srtp_failure=lambda: failures.append("b"))
    try:
        a.update(negotiated(b.local_address[1], SrtpKeys(suite, a_key, b_key)))
        b.update(negotiated(a.local_address[1], SrtpKeys(suite, b_key, a_key)))
        heard: list[bytes] = []
        digits: list[str] = []
        b.add_audio_listener(lambda payload, codec: heard.append(payload))
        b.add_dtmf_listener(digits.append)
        for _ in range(5):
            a.send_audio(b"\xd5" * 160, encoded=True)
        assert await a.send_dtmf("5")
        await until(lambda: digits == ["5"] and len(heard) == 5, timeout=5)
        assert heard[0] == b"\xd5" * 160
        assert a.protected and b.protected
        # a forged packet from the latched source (as a man in the middle would send it)
        forged = bytearray(a.endpoint.protection.protect(packet(999)))  # type: ignore[union-attr]
        forged[20] ^= 0x80
        b.endpoint.datagram_received(bytes(forged), b.endpoint.latched)  # type: ignore[arg-type]
        assert failures == ["b"] and b.endpoint.stats.srtp_dropped == 1 and len(heard) == 5
    finally:
        a.close()
        b.close()
        await asyncio.sleep(0)


async def test_a_volunteer_leg_keeps_srtp_and_its_key_through_a_reinvite() -> None:
    factory = MediaFactory(PortPool("127.0.0.1", 42000, 42998), "127.0.0.1")
    media = await factory.open(["127.0.0.2"], srtp=SrtpMode.REQUIRE)
    handset = LocalKeys([Suite.AES_CM_128_HMAC_SHA1_80])
    try:
        with pytest.raises(MediaError):  # a handset not on TLS is never offered keys
            media.offer(secure=False)
        offer = SessionDescription.parse(media.offer(secure=True))
        answer, _ = answer_offer(offer, "127.0.0.2", 40000, srtp=SrtpMode.REQUIRE, keys=handset)
        media.accept_answer(answer.to_bytes(), secure=True)
        assert media.protected and factory.legs_by_protection() == {"plain": 0, "srtp": 1}
        tx = media.leg.endpoint.protection
        # the handset puts the call on hold and back (re-INVITEs with its crypto, over TLS)
        for direction in (Direction.SENDONLY, Direction.SENDRECV):
            reoffer = build_offer(
                "127.0.0.2", 40000, crypto=handset.offer(), savp=True, direction=direction
            )
            reanswer = SessionDescription.parse(media.answer(reoffer.to_bytes()))
            assert reanswer.media[0].proto == "RTP/SAVP"
        assert media.leg.endpoint.protection is tx and tx is not None  # same contexts, same key
        assert tx.keys.tx_key == media.keys.key(Suite.AES_CM_128_HMAC_SHA1_80)
        with pytest.raises(MediaError):  # a plain re-offer: refused (488), SRTP kept
            media.answer(build_offer("127.0.0.2", 40000).to_bytes())
        assert media.protected
    finally:
        media.close()


async def test_the_bridge_relays_between_plain_and_srtp_legs_and_the_tone_goes_encrypted() -> None:
    """Carrier leg plain PCMU, volunteer leg SRTP PCMA: audio crosses (transcoded) both ways, and
    the time-limit tone injected towards the volunteer arrives through SRTP."""
    pool = PortPool("127.0.0.1", 44000, 44998)
    suite = Suite.AES_CM_128_HMAC_SHA1_80
    x, y = os.urandom(suite.key_length), os.urandom(suite.key_length)
    carrier, caller_leg = await MediaLeg.open(pool), await MediaLeg.open(pool)
    volunteer_leg, handset = await MediaLeg.open(pool), await MediaLeg.open(pool)
    legs = (carrier, caller_leg, volunteer_leg, handset)
    try:

        def media(port: int, codec: Codec, keys: SrtpKeys | None) -> NegotiatedMedia:
            return NegotiatedMedia("127.0.0.1", port, codec, 101, 20, Direction.SENDRECV, srtp=keys)

        carrier.update(media(caller_leg.local_address[1], Codec.PCMU, None))
        caller_leg.update(media(carrier.local_address[1], Codec.PCMU, None))
        volunteer_leg.update(media(handset.local_address[1], Codec.PCMA, SrtpKeys(suite, x, y)))
        handset.update(media(volunteer_leg.local_address[1], Codec.PCMA, SrtpKeys(suite, y, x)))
        at_handset: list[bytes] = []
        at_carrier: list[bytes] = []
        handset.add_audio_listener(lambda p, c: at_handset.append(g711.decode(c, p)))
        carrier.add_audio_listener(lambda p, c: at_carrier.append(g711.decode(c, p)))
        bridge = Bridge(caller_leg, volunteer_leg).start()
        caller_tone, handset_tone = sine(1000, 400), sine(400, 400)
        for i in range(0, len(caller_tone), 320):
            carrier.send_audio(caller_tone[i : i + 320])
            handset.send_audio(handset_tone[i : i + 320])
            await asyncio.sleep(0.02)
        await until(lambda: len(at_handset) >= 15 and len(at_carrier) >= 15, timeout=5)
        assert tone_share(b"".join(at_handset[-10:]), 1000) > 0.8
        assert tone_share(b"".join(at_carrier[-10:]), 400) > 0.8
        at_handset.clear()
        await asyncio.wait_for(bridge.inject_tone(volunteer_leg, sine(1400, 400)), 5)
        await until(lambda: len(at_handset) >= 15, timeout=5)
        assert tone_share(b"".join(at_handset[:15]), 1400) > 0.8
        assert volunteer_leg.protected and not caller_leg.protected
        assert handset.endpoint.stats.srtp_dropped == 0
        bridge.stop()
    finally:
        for leg in legs:
            leg.close()
        await asyncio.sleep(0)
