"""Media that cannot be hijacked ("RTP bleed"), through the real service over real sockets.

A trunk caller (raw SIP handset on 127.0.0.1) and a registered volunteer (on the handsets'
address, 127.0.0.2), each with a real RTP socket, are connected through the service. A stranger
on a third address, 127.0.0.3, sprays RTP at every port of
the service's media range, before the parties' first packet and while they are silent: nothing
of it is heard by either party, the stranger hears nothing back, and each of its packets is
counted as a stray. SDP connection addresses that are names or of no usable scope get a 488.
"""

from __future__ import annotations

import asyncio
from typing import cast

from pbx.media import g711, tones
from pbx.media.g711 import Codec
from pbx.media.rtp import RtpPacket, RtpSender
from tests.helpers.audio import active_part, loud_part, tone_share
from tests.helpers.polling import until
from tests.helpers.raw_call import body_length, connect, sdp
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running

HIJACKER = "127.0.0.3"  # neither the trunk's address (127.0.0.1) nor the handsets'
CALLER_HZ, VOLUNTEER_HZ, ATTACK_HZ = 400, 800, 1000


def handset_sdp(port: int) -> str:
    """The volunteer's answer: its media on the handsets' address, like its signalling."""
    return sdp(port).replace("IN IP4 127.0.0.1", f"IN IP4 {HANDSET_HOST}")


class RtpSocket(asyncio.DatagramProtocol):
    """A real UDP socket that sends G.711 tones and keeps every RTP packet it receives."""

    def __init__(self) -> None:
        self.received: list[RtpPacket] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.sender = RtpSender()

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> RtpSocket:
        peer = cls()
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: peer, local_addr=(host, 0)
        )
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(RtpPacket.parse(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send_tone(self, to: tuple[str, int], hz: float, packets: int) -> None:
        """``packets`` 20 ms PCMA frames of a tone, sent at once."""
        assert self.transport is not None
        pcm = tones.sine(hz, 20 * packets, amplitude=0.5)
        for i in range(packets):
            frame = g711.encode(Codec.PCMA, pcm[320 * i : 320 * (i + 1)])
            self.transport.sendto(self.sender.packet_bytes(frame, Codec.PCMA, 160, i == 0), to)

    async def talk(self, to: tuple[str, int], hz: float, packets: int) -> None:
        """The same, paced at 20 ms like a real handset."""
        for _ in range(packets):
            self.send_tone(to, hz, 1)
            await asyncio.sleep(0.02)

    def heard(self) -> bytes:
        audio = [p for p in self.received if p.payload_type in (Codec.PCMA, Codec.PCMU)]
        return b"".join(g711.decode(Codec(p.payload_type), p.payload) for p in audio)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def strays(helpline: Running) -> float:
    value = helpline.service.metrics.registry.get_sample_value("helpline_rtp_stray_packets_total")
    return value or 0.0


async def test_rtp_from_a_stranger_never_reaches_or_takes_over_a_call(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(digest_algorithms=["MD5"], volunteer_whisper="") as helpline:
        await helpline.add_volunteer("noor", "pass-word-rtp")
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        c_rtp, v_rtp, attacker = (
            await RtpSocket.open(),
            await RtpSocket.open(HANDSET_HOST),
            await RtpSocket.open(HIJACKER),
        )
        try:
            caller_dialog, volunteer_dialog = await connect(
                helpline, caller, volunteer, "noor", "pass-word-rtp",
                volunteer_sdp=handset_sdp(v_rtp.port), caller_sdp=sdp(c_rtp.port),
            )  # fmt: skip
            to_caller_leg, to_volunteer_leg = (
                caller_dialog.service_rtp,
                volunteer_dialog.service_rtp,
            )
            low, high = helpline.settings.rtp_port_min, helpline.settings.rtp_port_max
            spray = [(helpline.host, port) for port in range(low - low % 2, high, 2)]

            # 1. Before either party's first packet: the whole range, 10 packets a port.
            for target in spray:
                attacker.send_tone(target, ATTACK_HZ, 10)
            await until(lambda: strays(helpline) == 20, timeout=5)

            # 2. The parties talk (the stranger keeps interleaving its packets).
            for _ in range(25):
                c_rtp.send_tone(to_caller_leg, CALLER_HZ, 1)
                v_rtp.send_tone(to_volunteer_leg, VOLUNTEER_HZ, 1)
                attacker.send_tone(to_caller_leg, ATTACK_HZ, 1)
                attacker.send_tone(to_volunteer_leg, ATTACK_HZ, 1)
                await asyncio.sleep(0.02)

            # 3. Both parties fall silent for a second; the stranger talks, paced like a phone
            # whose NAT binding moved (what the old silence-based relatching gave in to).
            await asyncio.gather(
                attacker.talk(to_caller_leg, ATTACK_HZ, 50),
                attacker.talk(to_volunteer_leg, ATTACK_HZ, 50),
            )
            # 4. The parties talk again, and are heard.
            await asyncio.gather(
                c_rtp.talk(to_caller_leg, CALLER_HZ, 15),
                v_rtp.talk(to_volunteer_leg, VOLUNTEER_HZ, 15),
            )
            await until(lambda: strays(helpline) == 20 + 2 * 25 + 2 * 50, timeout=5)
            await asyncio.sleep(0.3)  # the last relayed packets
            # every loud frame: the other party's tone or, had it leaked, the stranger's (the
            # caller's line filler plays quiet comfort noise while the volunteer is silent)
            volunteer_heard, caller_heard = loud_part(v_rtp.heard()), loud_part(c_rtp.heard())
        finally:
            for s in (c_rtp, v_rtp, attacker):
                s.close()
            volunteer.close()
            caller.close()
    assert attacker.received == []  # the service never sent the stranger anything
    assert len(volunteer_heard) >= 2 * 8000 * 0.5 and len(caller_heard) >= 2 * 8000 * 0.5
    assert tone_share(volunteer_heard, CALLER_HZ) > 0.8, "the volunteer hears the caller"
    assert tone_share(volunteer_heard, ATTACK_HZ) < 0.02, "and nothing of the stranger"
    assert tone_share(caller_heard, VOLUNTEER_HZ) > 0.8, "the caller hears the volunteer"
    assert tone_share(caller_heard, ATTACK_HZ) < 0.02, "and nothing of the stranger"


async def test_a_reinvite_moves_the_stream_and_opens_no_window_for_a_stranger(
    make_helpline: MakeHelpline,
) -> None:
    """The caller's re-INVITE names a new RTP port: our media follows it; a stranger spraying
    right after the re-INVITE (before the caller's first packet there) still gets nothing."""
    async with make_helpline(digest_algorithms=["MD5"], volunteer_whisper="") as helpline:
        await helpline.add_volunteer("joop", "pass-word-mov")
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        c_old, c_new = await RtpSocket.open(), await RtpSocket.open()
        v_rtp = await RtpSocket.open(HANDSET_HOST)
        attacker = await RtpSocket.open(HIJACKER)
        try:
            caller_dialog, volunteer_dialog = await connect(
                helpline, caller, volunteer, "joop", "pass-word-mov",
                volunteer_sdp=handset_sdp(v_rtp.port), caller_sdp=sdp(c_old.port),
            )  # fmt: skip
            to_caller_leg, to_volunteer_leg = (
                caller_dialog.service_rtp,
                volunteer_dialog.service_rtp,
            )
            await c_old.talk(to_caller_leg, CALLER_HZ, 5)
            caller_dialog.request("INVITE", sdp(c_new.port, version=2))
            ok = await asyncio.to_thread(caller.recv_until, "SIP/2.0 200", 5)
            assert "INVITE" in ok.split("CSeq:", 1)[1].split("\r\n", 1)[0]
            caller_dialog.ack()
            attacker.send_tone(to_caller_leg, ATTACK_HZ, 20)  # the window a relatch would open
            await until(lambda: strays(helpline) == 20, timeout=5)
            await asyncio.gather(
                c_new.talk(to_caller_leg, CALLER_HZ, 25),
                v_rtp.talk(to_volunteer_leg, VOLUNTEER_HZ, 25),
            )
            await asyncio.sleep(0.3)
            new_heard, volunteer_heard = active_part(c_new.heard()), active_part(v_rtp.heard())
        finally:
            for s in (c_old, c_new, v_rtp, attacker):
                s.close()
            volunteer.close()
            caller.close()
    assert attacker.received == []
    assert len(new_heard) >= 20 * 320 and tone_share(new_heard, VOLUNTEER_HZ) > 0.8  # moved
    assert tone_share(volunteer_heard, CALLER_HZ) > 0.8
    assert tone_share(volunteer_heard, ATTACK_HZ) < 0.02


def _invite(caller: RawHandset, helpline: Running, connection: str, call_id: str) -> str:
    offer = sdp(41030).replace("c=IN IP4 127.0.0.1", f"c={connection}")
    return (
        f"INVITE sip:09000767@{helpline.host}:{helpline.port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {caller.host}:{caller.port};branch=z9hG4bK{call_id};rport\n"
        f"From: <sip:anonymous@{caller.host}>;tag={call_id}\nTo: <sip:09000767@{helpline.host}>\n"
        f"Call-ID: {call_id}@{caller.host}\nCSeq: 1 INVITE\nMax-Forwards: 70\n"
        f"Contact: <sip:c@{caller.host}:{caller.port}>\nContent-Type: application/sdp\n"
        f"Content-Length: {body_length(offer)}\n\n{offer}"
    )


async def test_sdp_naming_a_host_or_an_unusable_address_gets_488(helpline: Running) -> None:
    """No DNS lookup per packet, no media to multicast or broadcast: refused with the reason."""
    caller = RawHandset()
    try:
        for n, (connection, reason) in enumerate(
            [
                ("IN IP4 media.example.com", "host names are refused"),
                ("IN IP4 224.0.1.75", "multicast"),
                ("IN IP4 255.255.255.255", "broadcast"),
            ]
        ):
            caller.send(
                _invite(caller, helpline, connection, f"badc{n}"), (helpline.host, helpline.port)
            )
            final = await asyncio.to_thread(caller.recv_until, "SIP/2.0 4", 5)
            status = final.split("\r\n", 1)[0]
            assert status.startswith("SIP/2.0 488 Not Acceptable Here"), status
            assert reason in status, status
        assert helpline.service.switchboard.legs == {}  # nothing was set up for them
    finally:
        caller.close()


async def test_rfc2543_hold_address_is_answered_as_hold_not_refused(
    make_helpline: MakeHelpline,
) -> None:
    """c=0.0.0.0 is the old way to say "hold": the call is set up, we answer recvonly."""
    async with make_helpline(digest_algorithms=["MD5"], volunteer_whisper="") as helpline:
        await helpline.add_volunteer("ilse", "pass-word-hld")
        volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
        try:
            offer = sdp(41040).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
            caller_dialog, _ = await connect(
                helpline, caller, volunteer, "ilse", "pass-word-hld", caller_sdp=offer
            )
            assert "a=recvonly" in caller_dialog.service_sdp
            assert caller_dialog.service_rtp[1] != 0
        finally:
            volunteer.close()
            caller.close()
