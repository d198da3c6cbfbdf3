"""SRTP with SDES on volunteers' legs, against real handsets registered over TLS.

baresip (Debian, `srtp` module, `mediaenc=srtp-mand`) and PJSIP (pjsua2, SRTP mandatory, keys
only over TLS) register over TLS, log in with *1, and take a call from a trunk caller (PJSIP,
plain RTP over UDP) with the service requiring SRTP. Audio is checked by content both ways, and a
capture on the loopback interface shows what an eavesdropper on the volunteer's broadband would
get: the volunteer-side RTP payload does not decode as G.711 to the handset's tone, while the
carrier side (plain RTP) does. PJSIP's volunteer types a PIN (RFC 4733 inside SRTP) to log in;
a tampered SRTP packet is dropped and counted.
"""

from __future__ import annotations

import asyncio
import audioop
import urllib.request
import warnings
from pathlib import Path

from pbx.sip.peer import TransportKind
from queues.roster import VolunteerState
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.loopback_sniffer import Datagram, LoopbackSniffer, send_spoofed
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.helpers.volunteers import PASSWORD
from tests.peers.baresip import Baresip
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.softphone import SipAccount

CALLER_TONE, HANDSET_TONE = 1000, 400
SERVICE_HOST = "127.0.0.1"

warnings.filterwarnings("ignore", category=DeprecationWarning, module="audioop")


def decoded(datagrams: list[Datagram]) -> bytes:
    """The G.711 payloads of RTP-looking datagrams, decoded as their payload type says."""
    pcm = b""
    for d in datagrams:
        payload = d.rtp_payload
        if payload is None or d.payload_type not in (0, 8) or len(payload) != 160:
            continue
        pcm += audioop.ulaw2lin(payload, 2) if d.payload_type == 0 else audioop.alaw2lin(payload, 2)
    return pcm


def g711_share(datagrams: list[Datagram], tone: int) -> float:
    pcm = active_part(decoded(datagrams))
    return tone_share(pcm[-16000:], tone) if len(pcm) >= 16000 else 0.0


async def trunk_call(helpline: Running, caller: AsyncPjsuaPhone) -> range:
    """A carrier's call, plain RTP over UDP, for the Dutch queue; the caller's RTP ports."""
    rtp = free_port()
    await caller.start(free_port(), user="0612345678", rtp_port=rtp)
    assert await caller.make_call(f"sip:09000767@{helpline.host}:{helpline.port}") == 200
    await caller.send_dtmf("1")  # Dutch, during the welcome
    await caller.play_tone(CALLER_TONE)
    return range(rtp, rtp + 1)  # it was free: PJSIP binds the first port of its range


async def test_baresip_over_tls_with_srtp_takes_a_trunk_call(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    metrics = free_port()
    async with (
        captured_logs() as logs,
        make_helpline(call_flow="ivr", srtp="require", metrics_port=metrics) as helpline,
    ):
        await helpline.add_volunteer("vera", PASSWORD)
        port = helpline.service.stack.port(TransportKind.TLS)
        account = SipAccount("vera", PASSWORD, helpline.host, port, "tls")
        with LoopbackSniffer() as sniffer:
            async with (
                Baresip(account, bind=HANDSET_HOST, tone_hz=HANDSET_TONE, mediaenc="srtp-mand")
                as phone,
                AsyncPjsuaPhone("caller") as caller,
            ):  # fmt: skip
                await phone.wait_registered()
                login = await phone.dial("*1")
                await phone.wait_ended(timeout=20, after=await phone.wait_established(after=login))
                assert helpline.service.roster.get("vera").state is VolunteerState.AVAILABLE

                ring = phone.mark()
                caller_ports = await trunk_call(helpline, caller)
                answered = await phone.wait_established(timeout=20, after=ring)
                await until(lambda: bool(log_events(logs, "call_connected")))
                assert 'helpline_media_legs{protection="srtp"} 1.0' in await scrape(metrics)
                await inject_tampered(sniffer, phone.rtp_ports, sniffer.mark())
                await until(lambda: helpline_counter(metrics, "helpline_srtp_auth_failures") >= 1.0)
                await caller.record(tmp_path / "caller.wav")
                await asyncio.sleep(2.0)
                caller_heard = await caller.stop_record()
                await caller.hangup()
                await phone.wait_ended(after=answered)
                handset_heard = read_wav(phone.heard())
    pcm, rate = handset_heard
    heard = active_part(pcm, rate=rate)[-2 * rate :]
    assert tone_share(heard, CALLER_TONE, rate) > 0.8  # the caller, through SRTP
    assert tone_share(active_part(read_wav(caller_heard)[0]), HANDSET_TONE) > 0.8
    assert_encrypted_on_volunteer_side(sniffer, helpline, phone.rtp_ports, caller_ports)


async def scrape(port: int) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    return (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()


def helpline_counter(port: int, name: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith(name))


async def inject_tampered(sniffer: LoopbackSniffer, handset_ports: range, after: int) -> None:
    """One of the handset's SRTP packets, moved ahead in sequence (not a replay) with a payload
    bit flipped, sent with the handset's address and port (spoofed) to the service's port as a
    man in the middle on the volunteer's Wi-Fi might: it must fail authentication."""

    def srtp() -> list[Datagram]:  # of the call in progress (not the *1 call before it)
        return [
            d
            for d in sniffer.between(HANDSET_HOST, SERVICE_HOST, after)
            if d.src[1] in handset_ports and d.rtp_payload and len(d.data) > 172
        ]

    try:
        await until(lambda: bool(srtp()))
    except AssertionError:
        seen = sniffer.between(HANDSET_HOST, SERVICE_HOST, after)
        ports = sorted({(d.src[1], d.dst[1], len(d.data)) for d in seen})[:20]
        raise AssertionError(f"no SRTP from {handset_ports}: {ports}, {sniffer.errors}") from None
    captured = srtp()[-1]
    packet = bytearray(captured.data)
    seq = (int.from_bytes(packet[2:4], "big") + 1000) & 0xFFFF
    packet[2:4] = seq.to_bytes(2, "big")
    packet[40] ^= 0x01
    send_spoofed(bytes(packet), captured.src, captured.dst)


def assert_encrypted_on_volunteer_side(
    sniffer: LoopbackSniffer, helpline: Running, handset_ports: range, caller_ports: range
) -> None:
    # other services may run on this machine: only this service's, handset's and caller's ports
    ours = range(helpline.settings.rtp_port_min, helpline.settings.rtp_port_max + 1)
    volunteer_side = [
        d
        for d in sniffer.between(HANDSET_HOST, SERVICE_HOST)
        if d.src[1] in handset_ports and d.dst[1] in ours
    ]
    assert len([d for d in volunteer_side if d.rtp_payload]) > 50
    assert g711_share(volunteer_side, HANDSET_TONE) < 0.2, "volunteer RTP decodes as G.711"
    # the same tone, relayed to the carrier in plain RTP, is there for anyone to hear
    carrier_side = [
        d
        for d in sniffer.between(SERVICE_HOST, SERVICE_HOST)
        if d.src[1] in ours and d.dst[1] in caller_ports and d.rtp_payload
    ]
    assert g711_share(carrier_side, HANDSET_TONE) > 0.8


async def test_pjsip_over_tls_with_srtp_takes_a_trunk_call(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with captured_logs() as logs, make_helpline(call_flow="ivr", srtp="require") as helpline:
        await helpline.add_volunteer("vera", PASSWORD, pin="4711")
        tls = helpline.service.stack.port(TransportKind.TLS)
        handset_rtp = free_port(HANDSET_HOST)
        with LoopbackSniffer() as sniffer:
            async with AsyncPjsuaPhone("vera") as phone, AsyncPjsuaPhone("caller") as caller:
                await phone.start(
                    free_port(HANDSET_HOST), "tls", bind=HANDSET_HOST, srtp=2,
                    rtp_port=handset_rtp,
                )  # fmt: skip
                assert await phone.register(helpline.host, tls, "vera", PASSWORD) == 200
                assert await phone.make_call(f"sip:*1@{helpline.host}:{tls};transport=tls") == 200
                await phone.send_dtmf("4711#")  # RFC 4733 inside SRTP: the PIN gets through
                assert await phone.wait_disconnected(timeout=30) == 200
                assert helpline.service.roster.get("vera").state is VolunteerState.AVAILABLE

                caller_ports = await trunk_call(helpline, caller)
                incoming = await phone.wait_incoming(timeout=20)
                assert "RTP/SAVP" in incoming.sdp and "a=crypto:" in incoming.sdp
                await phone.answer(200)
                await phone.play_tone(HANDSET_TONE)
                await until(lambda: bool(log_events(logs, "call_connected")))
                await phone.record(tmp_path / "handset.wav")
                await caller.record(tmp_path / "caller.wav")
                await asyncio.sleep(2.0)
                handset_heard = await phone.stop_record()
                caller_heard = await caller.stop_record()
                await caller.hangup()
                await phone.wait_disconnected(timeout=10)
    assert tone_share(active_part(read_wav(handset_heard)[0]), CALLER_TONE) > 0.8
    assert tone_share(active_part(read_wav(caller_heard)[0]), HANDSET_TONE) > 0.8
    handset_ports = range(handset_rtp, handset_rtp + 10)  # a port pair per call, in order
    assert_encrypted_on_volunteer_side(sniffer, helpline, handset_ports, caller_ports)


async def test_require_refuses_plain_rtp_with_488_and_a_shift_over_udp(
    make_helpline: MakeHelpline,
) -> None:
    """``require`` set for one volunteer only (the others keep the global ``offer``)."""
    async with (
        captured_logs() as logs,
        make_helpline(call_flow="ivr", srtp="offer", srtp_volunteers={"vera": "require"})
        as helpline,
    ):  # fmt: skip
        await helpline.add_volunteer("vera", PASSWORD)
        await helpline.add_volunteer("otto", PASSWORD)
        tls = helpline.service.stack.port(TransportKind.TLS)
        async with AsyncPjsuaPhone("vera") as plain_tls, AsyncPjsuaPhone("vera-udp") as on_udp:
            await plain_tls.start(free_port(HANDSET_HOST), "tls", bind=HANDSET_HOST)
            assert await plain_tls.register(helpline.host, tls, "vera", PASSWORD) == 200
            await plain_tls.make_call(f"sip:*1@{helpline.host}:{tls};transport=tls")
            assert await plain_tls.wait_disconnected(timeout=10) == 488
            await until(lambda: bool(log_events(logs, "srtp_required_refused")))
            assert log_events(logs, "srtp_required_refused")[0]["reason"] == "plain_rtp_offered"

            await on_udp.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await on_udp.register(helpline.host, helpline.port, "vera", PASSWORD) == 200
            await on_udp.make_call(f"sip:*1@{helpline.host}:{helpline.port}")
            assert await on_udp.wait_disconnected(timeout=10) == 403
            assert log_events(logs, "shift_refused_unencrypted_transport")
        assert "vera" not in helpline.service.roster
        async with AsyncPjsuaPhone("otto") as otto:  # no override: plain RTP over UDP is fine
            await otto.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await otto.register(helpline.host, helpline.port, "otto", PASSWORD) == 200
            assert await otto.make_call(f"sip:*1@{helpline.host}:{helpline.port}") == 200
            assert await otto.wait_disconnected(timeout=30) == 200
        assert helpline.service.roster.get("otto").state is VolunteerState.AVAILABLE
