"""A flood from one address is banned before it costs work, while the carrier's calls go through;
per-address TCP connection caps; connections that never register are closed early."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import socket
import time
from pathlib import Path

from prometheus_client import generate_latest
from structlog.testing import capture_logs

from pbx.sip.peer import TransportKind
from tests.helpers.polling import until
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import MakeHelpline
from tests.peers.flooder import flood_in_process
from tests.peers.rtp_pcap import tone_samples, write_ulaw
from tests.peers.sipp import run_sipp_async, start_sipp

FLOODER = "127.0.0.2"  # not a trunk; 127.0.0.1 is
CALLS = 20


async def test_flooder_is_banned_and_trunk_calls_with_media_still_set_up(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with make_helpline(call_flow="ivr", ban_seconds=6.0, ban_max_seconds=12.0) as helpline:
        admission = helpline.service.admission
        audio = write_ulaw(tmp_path / "audio.ulaw", tone_samples(700, 1000))
        # the carrier places CALLS calls with media from 127.0.0.1 while 127.0.0.2 floods
        trunk = start_sipp(
            "uac_call_rtpstream", helpline.target, calls=CALLS, rate=10, max_concurrent=CALLS,
            service="09000767", files={"audio.ulaw": audio}, pause_ms=1000, timeout_s=60,
        )  # fmt: skip
        with capture_logs() as logs:
            result = await flood_in_process(
                FLOODER, (helpline.host, helpline.port), rate=10_000, seconds=2.5, drain=0.5
            )
            # banned now, as the metrics show (the ban lasts 6 s from the flood's first 0.1 s)
            exposed = generate_latest(helpline.service.metrics.registry).decode()
            calls = await asyncio.to_thread(trunk.wait)
        assert "helpline_sip_banned_sources 1.0" in exposed
        assert "helpline_sip_bans_total 1.0" in exposed
        dropped = re.search(r'helpline_sip_dropped_total\{reason="banned"\} (\S+)', exposed)
        assert dropped and float(dropped.group(1)) > 0, exposed
        # one log line for the ban, naming the flooder (never a trunk: they are exempt)
        bans = [e for e in logs if e["event"] == "source_banned"]
        assert [(e["source"], e["offence"]) for e in bans] == [(FLOODER, 1)], bans
        calls.assert_ok()  # every one of the carrier's calls was answered and ended cleanly
        assert calls.successful == CALLS
        # banned at once (the flooder's last answer came within a second of its first packet),
        # after at most its burst allowance was answered
        assert admission.stats.bans == 1
        assert result.last_answer is not None and result.last_answer < 1.0, result
        # the burst allowance, plus what the bucket refilled while it was being spent
        allowance = helpline.settings.admission_request_burst + int(
            helpline.settings.admission_requests_per_second * result.last_answer + 1
        )
        assert result.sent >= 10_000, result
        assert result.answered <= allowance, result
        assert admission.stats.dropped["banned"] > result.sent // 2  # the rest: dropped unread
        # the dropped packets left no transactions behind
        assert helpline.service.stack.layer.stats.server_created <= allowance + 4 * CALLS
        # the ban lapses after ban_seconds, and the address is answered again
        loop = asyncio.get_running_loop()
        await until(lambda: not admission.is_banned(FLOODER, loop.time()), timeout=8)
        (await run_sipp_async("uac_options", helpline.target, local_ip=FLOODER)).assert_ok()
        # the trunk was never limited
        assert not admission.is_banned("127.0.0.1", loop.time())


async def test_a_flood_below_the_ban_rate_cannot_take_the_trunks_reserved_transactions(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(
        call_flow="ivr", max_transactions=60, trunk_reserved_transactions=30,
        admission_requests_per_second=10_000, admission_request_burst=10_000,
    ) as helpline:  # fmt: skip
        # 200 requests; those not refused statelessly (OPTIONS and the like) leave a
        # transaction for 64*T1 (6.4 s here): the flooder may fill the table only up to
        # max_transactions - trunk_reserved_transactions, the rest is refused
        result = await flood_in_process(
            FLOODER, (helpline.host, helpline.port), rate=2000, seconds=0.1, drain=0.2
        )
        layer = helpline.service.stack.layer
        assert result.sent == 200 and not helpline.service.admission.stats.bans
        assert len(layer) <= 30 and layer.stats.rejected_overload > 0
        # the carrier's call still gets the reserved capacity and is answered
        (await run_sipp_async("uac_call", helpline.target, service="09000767", pause_ms=300))\
            .assert_ok()  # fmt: skip


async def test_dialogs_above_the_high_water_mark_are_kept_for_the_trunks(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(call_flow="ivr", max_dialogs=1, trunk_reserved_dialogs=1) as helpline:
        outsider = RawHandset(FLOODER)
        try:
            sdp = SDP.replace("\n", "\r\n")
            outsider.send(
                INVITE.format(host=helpline.host, port=helpline.port, me=outsider.host,
                              myport=outsider.port, length=len(sdp), sdp=SDP),
                (helpline.host, helpline.port),
            )  # fmt: skip
            refused = await asyncio.to_thread(outsider.recv_until, "SIP/2.0 5", 5)
            assert refused.startswith("SIP/2.0 503 Service Unavailable - Call limit"), refused
        finally:
            outsider.close()
        (await run_sipp_async("uac_call", helpline.target, service="09000767", pause_ms=300))\
            .assert_ok()  # fmt: skip


def _connect(host: str, port: int, source: str = FLOODER) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
    sock.settimeout(5)
    return sock


def _closed_by_peer(sock: socket.socket, timeout: float = 5) -> bool:
    """Whether the other side closed (or reset) the connection within `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


OPTIONS = (
    "OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/TCP {me}:{myport};branch=z9hG4bKo{n}\r\n"
    "From: <sip:probe@{me}>;tag=o{n}\r\nTo: <sip:{host}>\r\nCall-ID: tcp-o{n}\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _options(sock: socket.socket, n: int) -> str:
    host, port = sock.getpeername()
    me, myport = sock.getsockname()
    text = OPTIONS.format(host=host, port=port, me=me, myport=myport, n=n)
    sock.sendall(text.encode())
    sock.settimeout(5)
    return sock.recv(65535).decode()


async def test_tcp_connections_per_address_are_capped(make_helpline: MakeHelpline) -> None:
    async with make_helpline(max_connections_per_source=3) as helpline:
        host, port = helpline.host, helpline.port
        kept = [await asyncio.to_thread(_connect, host, port) for _ in range(3)]
        extra: list[socket.socket] = []
        try:
            for i, sock in enumerate(kept):  # the first three are served
                assert (await asyncio.to_thread(_options, sock, i)).startswith("SIP/2.0 200")
            extra.append(await asyncio.to_thread(_connect, host, port))
            assert await asyncio.to_thread(_closed_by_peer, extra[-1])  # the fourth is not
            transports = helpline.service.stack.transports
            assert transports.connection_count == 3
            assert helpline.service.admission.stats.dropped["connection_cap"] == 1
            # another address has its own allowance (the trunk has none)
            extra.append(await asyncio.to_thread(_connect, host, port, "127.0.0.1"))
            assert (await asyncio.to_thread(_options, extra[-1], 10)).startswith("SIP/2.0 200")
            # a closed connection frees its place
            kept.pop().close()
            await until(lambda: transports.connection_count == 3)
            kept.append(await asyncio.to_thread(_connect, host, port))
            assert (await asyncio.to_thread(_options, kept[-1], 11)).startswith("SIP/2.0 200")
        finally:
            for sock in kept + extra:
                sock.close()


async def test_a_tls_handshake_that_never_ends_is_cut_off(make_helpline: MakeHelpline) -> None:
    async with make_helpline(tls_handshake_timeout=1.0) as helpline:
        tls_port = helpline.service.stack.port(TransportKind.TLS)
        silent = await asyncio.to_thread(_connect, helpline.host, tls_port)
        try:  # connected, but no ClientHello: the service gives up after the timeout
            began = time.monotonic()
            assert await asyncio.to_thread(_closed_by_peer, silent, 5)
            assert time.monotonic() - began < 4
        finally:
            silent.close()


async def test_connection_without_registration_is_closed_early_but_a_handsets_stays(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(
        unregistered_connection_timeout=1.0, digest_algorithms=["MD5"]
    ) as helpline:
        await helpline.add_volunteer("tess", "pass-word-tcp")
        host, port = helpline.host, helpline.port
        idle = await asyncio.to_thread(_connect, host, port)
        reg = await asyncio.to_thread(_connect, host, port)
        try:
            # a registered handset's connection: REGISTER over TCP with digest, 200
            final = await asyncio.to_thread(_register_tcp, reg, "tess", "pass-word-tcp")
            assert final.startswith("SIP/2.0 200"), final
            # one that only asks OPTIONS is answered, then closed after the timeout
            assert (await asyncio.to_thread(_options, idle, 1)).startswith("SIP/2.0 200")
            assert await asyncio.to_thread(_closed_by_peer, idle, 4)
            assert not await asyncio.to_thread(_closed_by_peer, reg, 1.5)
            assert (await asyncio.to_thread(_options, reg, 2)).startswith("SIP/2.0 200")
            stats = helpline.service.stack.transports.stats
            assert stats.connections_closed_unregistered == 1
        finally:
            idle.close()
            reg.close()


def _register_tcp(sock: socket.socket, user: str, password: str) -> str:
    """RawHandset's REGISTER (its digest arithmetic) carried over a TCP connection."""

    class OverTcp(RawHandset):
        def __init__(self) -> None:
            self.host, self.port = sock.getsockname()

        def send(self, text: str, target: tuple[str, int]) -> None:
            data = text.replace("\n", "\r\n").replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            sock.sendall(data.encode())

        def recv(self, timeout: float = 5) -> str:
            sock.settimeout(timeout)
            return sock.recv(65535).decode("utf-8", "replace")

    peer = sock.getpeername()
    return OverTcp().register(peer, user, password, contact_port=sock.getsockname()[1])


INVITE = (
    "INVITE sip:09000767@{host}:{port} SIP/2.0\n"
    "Via: SIP/2.0/UDP {me}:{myport};branch=z9hG4bKemfile1;rport\n"
    "From: <sip:0612345678@{me}>;tag=e1\nTo: <sip:09000767@{host}>\n"
    "Call-ID: emfile-1@{me}\nCSeq: 1 INVITE\nContact: <sip:c@{me}:{myport}>\n"
    "Max-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {length}\n\n{sdp}"
)
SDP = (
    "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio 41000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
)


def _first_free_descriptor() -> int:
    n = 0
    while True:
        try:
            os.fstat(n)
        except OSError:
            return n
        n += 1


async def test_out_of_descriptors_refuses_cleanly_and_recovers(make_helpline: MakeHelpline) -> None:
    """No descriptor left: a call is refused with 503, a TCP connection waits in the backlog
    (accept is retried a second later) and nothing raises; with descriptors back, both work."""
    async with make_helpline(call_flow="ivr") as helpline:
        host, port = helpline.host, helpline.port
        caller = RawHandset()  # the trunk; its socket is made before descriptors run out
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.bind((FLOODER, 0))
        client.settimeout(5)
        transports = helpline.service.stack.transports
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        await asyncio.to_thread(lambda: None)  # the thread pool exists before files run out
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (_first_free_descriptor(), hard))
            await asyncio.to_thread(client.connect, (host, port))  # the kernel completes it
            await until(lambda: transports.stats.accept_failures >= 1, timeout=5)
            sdp = SDP.replace("\n", "\r\n")
            caller.send(
                INVITE.format(host=host, port=port, me=caller.host, myport=caller.port,
                              length=len(sdp), sdp=SDP),
                (host, port),
            )  # fmt: skip
            final = await asyncio.to_thread(caller.recv_until, "SIP/2.0 5", 5)
            assert final.startswith("SIP/2.0 503"), final
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            caller.close()
        try:
            # descriptors are back: the waiting connection is accepted and served
            assert (await asyncio.to_thread(_options, client, 1)).startswith("SIP/2.0 200")
        finally:
            client.close()
