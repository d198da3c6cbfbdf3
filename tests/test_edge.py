"""A helpline node behind Kamailio (the shipped deploy/kamailio/kamailio.cfg) on loopback.

Kamailio on 127.0.0.1 faces the carrier (sipp on 127.0.0.4) and the volunteer's handset (PJSIP
on 127.0.0.2); the node listens on 127.0.0.11 and trusts Kamailio as its edge proxy. The
handset registers and logs in to a shift through Kamailio, a carrier call enters through
Kamailio and reaches it, the caller's voice is heard on the handset (media straight between
the node and each side), the handset never sees the caller's number, and the node's keepalive
OPTIONS reach the handset through the Path Kamailio put on its REGISTER.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from tests.helpers.audio import active_part, read_wav, tone_share
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.polling import until
from tests.helpers.raw_call import body_length, sdp
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, free_port
from tests.helpers.volunteers import PASSWORD
from tests.peers.kamailio import Kamailio
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.rtp_pcap import media_pcap, pcap_duration_ms
from tests.peers.sipp import start_sipp

EDGE_HOST = "127.0.0.1"
NODE_HOST = "127.0.0.11"
CARRIER_HOST = "127.0.0.4"
CALLER_NUMBER = "0612345678"


async def test_a_trunk_call_through_kamailio_reaches_a_volunteer_registered_through_it(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    pcap = media_pcap(
        tmp_path / "press1.pcap", tone_hz=1000, tone_ms=12000, digits="1", lead_ms=500,
        digits_first=True,
    )  # fmt: skip
    async with ivr_helpline(
        make_helpline, DEFAULT_PLAN, sip_host=NODE_HOST, sip_port=free_port(NODE_HOST),
        tls_port=None, trunk_sources=[f"{CARRIER_HOST}/32"], edge_proxies=[f"{EDGE_HOST}/32"],
        keepalive_interval=1.0,
    ) as helpline:  # fmt: skip
        service = helpline.service
        edge = Kamailio([(NODE_HOST, helpline.port)], trunk_nets=[f"{CARRIER_HOST}/32"])
        try:
            await asyncio.to_thread(edge.start)
            await helpline.add_volunteer("yara", PASSWORD, languages=["nl"])
            async with AsyncPjsuaPhone("yara") as volunteer:
                await volunteer.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
                assert await volunteer.register(EDGE_HOST, edge.port, "yara", PASSWORD) == 200
                # the node knows the handset's real address, and the way back to it
                (binding,) = service.registrar.contacts("yara", service.switchboard.wall_clock())
                assert binding.source.host == HANDSET_HOST
                assert binding.source.port == volunteer.port
                assert binding.next_hop.host == EDGE_HOST
                assert binding.next_hop.port == edge.port
                assert f"received=sip:{HANDSET_HOST}:{volunteer.port}" in binding.path[0]

                assert await volunteer.make_call(f"sip:*1@{EDGE_HOST}:{edge.port}") == 200
                assert await volunteer.wait_disconnected(timeout=20) == 200
                service.drain_roster_events()
                assert service.roster.get("yara").offerable

                # keepalives (every second here) go out through Kamailio and are answered
                probes = volunteer_options_seen(volunteer.log_text(10**7))
                try:
                    await until(
                        lambda: volunteer_options_seen(volunteer.log_text(10**7)) >= probes + 2,
                        timeout=10,
                    )
                except AssertionError:
                    Path("/tmp/h1_pjsua.log").write_text(volunteer.log_text(10**7))
                    raise
                assert binding.reachable

                caller = start_sipp(
                    "uac_call_rtp", edge.target, local_ip=CARRIER_HOST, service="09000767",
                    keys={"caller": CALLER_NUMBER, "caller_display": CALLER_NUMBER},
                    files={"media.pcap": pcap}, pause_ms=pcap_duration_ms(pcap) + 2000,
                    timeout_s=40,
                )  # fmt: skip
                incoming = await volunteer.wait_incoming(timeout=20)
                assert incoming.display == "Hulplijn NL"  # the queue, nothing of the caller
                assert CALLER_NUMBER not in incoming.invite
                assert CARRIER_HOST not in incoming.invite
                await volunteer.answer(200)
                await volunteer.record(tmp_path / "heard.wav")
                await asyncio.sleep(1.5)
                heard = await volunteer.stop_record()
                result = await asyncio.to_thread(caller.wait, 40)
                result.assert_ok()  # the caller's BYE after its pause ended the call
                await volunteer.wait_disconnected(timeout=10)
                # Kamailio's own address is no trunk address here: the call was taken as the
                # carrier's by its real source (else it would have been challenged, 407); and
                # both legs are over
                assert not service.switchboard.legs
        except BaseException:
            print(edge.describe())
            raise
        finally:
            edge.close()
    assert tone_share(active_part(read_wav(heard)[0]), 1000) > 0.8  # the caller's voice


def volunteer_options_seen(log: str) -> int:
    """OPTIONS requests the handset received (pjsua logs each incoming request)."""
    return log.count("Request msg OPTIONS")


async def test_the_edge_headers_count_only_from_a_configured_edge(
    make_helpline: MakeHelpline,
) -> None:
    """Someone talking to the node directly cannot claim to be the carrier (X-Helpline-Source)
    nor make the node route a handset's calls through a host of their choosing (Path)."""
    async with make_helpline(
        sip_host=NODE_HOST, sip_port=free_port(NODE_HOST), tls_port=None,
        trunk_sources=[f"{CARRIER_HOST}/32"], edge_proxies=[f"{EDGE_HOST}/32"],
    ) as helpline:  # fmt: skip
        node = (NODE_HOST, helpline.port)
        claim = f"X-Helpline-Source: udp:{CARRIER_HOST}:5060;trunk=1\n"
        stranger, edge = RawHandset("127.0.0.3"), RawHandset(EDGE_HOST)
        try:
            stranger.send(invite(stranger, node, claim), node)
            refused = await asyncio.to_thread(stranger.recv_until, "SIP/2.0")
            assert refused.startswith("SIP/2.0 407")  # a stranger: challenged as a handset
            edge.send(invite(edge, node, claim), node)
            first = await asyncio.to_thread(edge.recv_until, "SIP/2.0", 10)  # the carrier's call
            assert first.startswith(("SIP/2.0 100", "SIP/2.0 18", "SIP/2.0 200")), first

            await helpline.add_volunteer("yara", PASSWORD)
            answer = await asyncio.to_thread(
                stranger.register, node, "yara", PASSWORD, contact_port=stranger.port,
                extra="Path: <sip:127.0.0.9:5060;lr>\n",
            )  # fmt: skip
            assert answer.startswith("SIP/2.0 200") and "Path:" not in answer
            service = helpline.service
            (binding,) = service.registrar.contacts("yara", service.switchboard.wall_clock())
            assert binding.path == ()
            assert binding.next_hop.host == "127.0.0.3"
        finally:
            stranger.close()
            edge.close()


def invite(sender: RawHandset, node: tuple[str, int], extra: str) -> str:
    host, port = node
    body = sdp(sender.port + 2)
    return (
        f"INVITE sip:09000767@{host}:{port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {sender.host}:{sender.port};branch=z9hG4bK{secrets.token_hex(6)}\n"
        f"From: <sip:{CALLER_NUMBER}@{sender.host}>;tag={secrets.token_hex(4)}\n"
        f"To: <sip:09000767@{host}>\nCall-ID: {secrets.token_hex(8)}\nCSeq: 1 INVITE\n"
        f"Contact: <sip:c@{sender.host}:{sender.port}>\nMax-Forwards: 70\n{extra}"
        f"Content-Type: application/sdp\nContent-Length: {body_length(body)}\n\n{body}"
    )


async def test_without_an_edge_a_handsets_path_is_not_followed(
    make_helpline: MakeHelpline,
) -> None:
    """The single-process default: a Path a handset puts on its REGISTER is dropped, and the
    node calls it at the address its REGISTER came from, as before."""
    async with make_helpline() as helpline:
        await helpline.add_volunteer("yara", PASSWORD)
        handset = RawHandset(HANDSET_HOST)
        try:
            answer = await asyncio.to_thread(
                handset.register, (helpline.host, helpline.port), "yara", PASSWORD,
                contact_port=handset.port, extra="Path: <sip:127.0.0.9:5060;lr>\n",
            )  # fmt: skip
        finally:
            handset.close()
        assert answer.startswith("SIP/2.0 200") and "Path:" not in answer
        service = helpline.service
        (binding,) = service.registrar.contacts("yara", service.switchboard.wall_clock())
        assert binding.path == ()
        assert (binding.next_hop.host, binding.next_hop.port) == (HANDSET_HOST, handset.port)
