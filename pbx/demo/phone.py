"""A simulated phone on the project's own SIP stack: places calls (with digest when challenged),
answers calls, and streams G.711 silence and RFC 4733 key presses over RTP. Loopback only."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.media.dtmf import dtmf_packets
from pbx.media.rtp import RtpSender
from pbx.media.sdp import SessionDescription
from pbx.sip.address import parse_address
from pbx.sip.client_auth import ClientCredentials, authorize
from pbx.sip.dialog import Dialog, new_call_id, new_tag
from pbx.sip.headers import Headers
from pbx.sip.message import Request, Response
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.stack import IncomingRequest, RequestHandlers, SipStack
from pbx.sip.transport import SipTransports
from pbx.sip.uri import parse_uri

PCMU = 0
EVENT_PT = 101
SILENCE = b"\xff" * 160  # 20 ms of PCMU silence
# What each kind of simulated phone "says" (a constant frame no prompt or tone contains), so that
# whoever hears it knows who they are connected to: a caller hearing VOICE was answered by a
# volunteer, a volunteer hearing CALLER is connected to its caller, BACKLINE is 113 speaking.
VOICE = b"\x2a" * 160
BACKLINE = b"\x3b" * 160
CALLER = b"\x4c" * 160


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0
        self.voice = 0  # packets carrying a simulated volunteer's voice
        self.heard_voice = asyncio.Event()  # a volunteer (only ever relayed once bridged)
        self.heard_backline = asyncio.Event()  # the simulated 113
        self.heard_caller = asyncio.Event()  # a caller (a volunteer's call is bridged)
        self._heard = {VOICE: self.heard_voice, BACKLINE: self.heard_backline,
                       CALLER: self.heard_caller}  # fmt: skip

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        heard = self._heard.get(data[-160:]) if len(data) >= 12 + 160 else None
        if heard is not None:
            if heard is self.heard_voice:
                self.voice += 1
            heard.set()


@dataclass
class Media:
    """One call's RTP: silence every 20 ms, key presses as RFC 4733 events."""

    transport: asyncio.DatagramTransport
    protocol: _Rtp
    remote: tuple[str, int] | None = None
    payload: bytes = SILENCE
    sender: RtpSender = field(default_factory=RtpSender)
    _task: asyncio.Task[None] | None = None
    _keys: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, host: str, payload: bytes = SILENCE) -> Media:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(_Rtp, local_addr=(host, 0))
        return cls(transport, protocol, payload=payload)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def sdp(self, host: str) -> bytes:
        sid = secrets.randbelow(10**9)
        return (
            f"v=0\r\no=- {sid} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {self.port} RTP/AVP {PCMU} {EVENT_PT}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:{EVENT_PT} telephone-event/8000\r\na=fmtp:{EVENT_PT} 0-16\r\n"
            "a=ptime:20\r\na=sendrecv\r\n"
        ).encode()

    def start(self, answer: bytes) -> None:
        try:
            sdp = SessionDescription.parse(answer)
        except ValueError:
            return
        if not sdp.media:
            return
        m = sdp.media[0]
        host = m.connection or sdp.connection
        if host is None or m.port == 0:
            return
        self.remote = (host, m.port)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def press(self, keys: str) -> None:
        self._keys.extend(keys)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self.remote is not None and not self.transport.is_closing():
            if self._keys:
                for packet in dtmf_packets(self._keys.pop(0), self.sender, EVENT_PT):
                    self.transport.sendto(packet.to_bytes(), self.remote)
                    next_at += 0.02
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                continue
            self.transport.sendto(
                self.sender.packet_bytes(self.payload, PCMU, 160, False), self.remote
            )
            next_at += 0.02
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.transport.close()


@dataclass
class Call:
    """One call's dialog as seen by a simulated phone."""

    dialog: Dialog
    media: Media
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ended_by_us: bool = False
    invite: IncomingRequest | None = None  # for an incoming call not yet answered


IncomingHandler = Callable[["SimPhone", Call], None]


class SimPhone:
    """A phone bound to `host` (an address in 127.0.0.0/8) talking to the service at `server`."""

    def __init__(
        self,
        host: str,
        server: tuple[str, int],
        *,
        user: str = "demo",
        password: str = "",
        on_incoming: IncomingHandler | None = None,
        voice: bytes = VOICE,
        port: int = 0,
    ) -> None:
        if not host.startswith("127."):
            raise ValueError("the demo's phones talk over loopback only")
        self.host = host
        self.server = Peer(TransportKind.UDP, server[0], server[1])
        self.user = user
        self.password = password
        self.on_incoming = on_incoming
        self.voice = voice  # what this phone sends once it answers a call
        self.bind_port = port  # 0: any free port
        self.stack = SipStack(SipTransports(), public_host=host)
        self.calls: dict[str, Call] = {}  # by Call-ID

    async def start(self) -> None:
        await self.stack.start(RequestHandlers(self._on_request), self.host, self.bind_port)

    async def close(self) -> None:
        for call in list(self.calls.values()):
            call.media.close()
        await self.stack.close()

    @property
    def port(self) -> int:
        return self.stack.port(TransportKind.UDP)

    def _contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.port}>"

    async def _send(self, request: Request) -> Response:
        """Send, answering one digest challenge with this phone's credentials."""
        response = await self.stack.request(request, self.server)
        if response.status in (401, 407) and self.password:
            credentials = ClientCredentials(self.user, self.password)
            answer = authorize(response, request.method, str(request.uri), credentials)
            if answer is None:
                return response
            request.headers.remove("Via")
            request.headers.remove("Authorization")
            request.headers.remove("Proxy-Authorization")
            cseq = request.cseq
            request.headers.set("CSeq", f"{cseq.number + 1} {cseq.method}")
            request.headers.add(*answer)
            response = await self.stack.request(request, self.server)
        return response

    async def register(self, expires: int = 600) -> int:
        server = f"{self.server.host}:{self.server.port}"
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{self.user}@{server}>;tag={new_tag()}")
        headers.add("To", f"<sip:{self.user}@{server}>")
        headers.add("Call-ID", new_call_id(self.host))
        headers.add("CSeq", "1 REGISTER")
        headers.add("Contact", self._contact())
        headers.add("Expires", str(expires))
        response = await self._send(Request("REGISTER", parse_uri(f"sip:{server}"), headers))
        return response.status

    async def dial(
        self, number: str, ringing: Callable[[], None] | None = None, payload: bytes = SILENCE
    ) -> Call | None:
        """INVITE `number` (then send `payload` frames); the established call, or None when
        refused."""
        server = f"{self.server.host}:{self.server.port}"
        media = await Media.open(self.host, payload)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{self.user}@{self.host}>;tag={new_tag()}")
        headers.add("To", f"<sip:{number}@{server}>")
        call_id = new_call_id(self.host)
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._contact())
        headers.add("Content-Type", "application/sdp")
        invite = Request(
            "INVITE", parse_uri(f"sip:{number}@{server}"), headers, media.sdp(self.host)
        )
        response = await self._send(invite)
        if response.status >= 300 or response.status < 200:
            media.close()
            return None
        dialog = Dialog.as_uac(invite, response, self.server)
        call = Call(dialog, media)
        self.calls[call_id] = call
        self.stack.send_stateless(dialog.ack(invite.cseq.number), self.server)
        media.start(response.body)
        return call

    async def hang_up(self, call: Call) -> None:
        if call.ended.is_set():
            return
        call.ended_by_us = True
        self._end(call)
        await self.stack.request(call.dialog.request("BYE"), call.dialog.peer)

    def answer(self, call: Call) -> None:
        incoming = call.invite
        if incoming is None or not incoming.unanswered:
            return
        call.dialog.state = call.dialog.state.CONFIRMED
        incoming.respond(
            200, to_tag=call.dialog.local_tag, headers=[("Contact", self._contact())],
            body=call.media.sdp(self.host), content_type="application/sdp",
        )  # fmt: skip
        call.media.start(incoming.request.body)

    def ring(self, call: Call) -> None:
        if call.invite is not None and call.invite.unanswered:
            call.invite.respond(180, to_tag=call.dialog.local_tag)

    def decline(self, call: Call) -> None:
        if call.invite is not None and call.invite.unanswered:
            call.invite.respond(486, to_tag=call.dialog.local_tag)
        self._end(call)

    def _end(self, call: Call) -> None:
        call.ended.set()
        call.media.close()
        self.calls.pop(call.dialog.call_id, None)

    def _on_request(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        call = self.calls.get(request.call_id)
        if request.method == "INVITE" and call is None:
            if self.on_incoming is None:
                incoming.respond(480, to_tag=new_tag())
                return
            incoming.respond(100)
            asyncio.get_running_loop().create_task(self._incoming(incoming))
        elif request.method == "INVITE" and call is not None:  # a re-INVITE: same media
            incoming.respond(
                200, to_tag=call.dialog.local_tag, headers=[("Contact", self._contact())],
                body=call.media.sdp(self.host), content_type="application/sdp",
            )  # fmt: skip
            call.media.start(request.body)
        elif request.method == "ACK":
            return
        elif request.method == "BYE" or request.method == "CANCEL":
            incoming.respond(200)
            if call is not None:
                self._end(call)
            invite = call.invite if call is not None and request.method == "CANCEL" else None
            if call is not None and invite is not None and invite.unanswered:
                invite.respond(487, to_tag=call.dialog.local_tag)  # RFC 3261 section 9.2
        elif request.method in ("OPTIONS", "NOTIFY", "INFO", "UPDATE"):
            incoming.respond(200)
        else:
            incoming.respond(405)

    async def _incoming(self, incoming: IncomingRequest) -> None:
        media = await Media.open(self.host, self.voice)
        dialog = Dialog.as_uas(incoming.request, new_tag(), incoming.source)
        call = Call(dialog, media, invite=incoming)
        self.calls[dialog.call_id] = call
        assert self.on_incoming is not None
        self.on_incoming(self, call)


def address_user(value: str) -> str:
    return getattr(parse_address(value).uri, "user", "") or ""
